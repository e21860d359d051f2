"""`jit audit --format ocsf|ecs`: each journal event as an OCSF 1.8.0 event or an ECS
9.4.0 document, so a SIEM files it under its own classes without custom parsing.

The tables below are the mapping of docs/AUDIT.md, one row per event type, by name.
Event names not listed (a newer hostd, another writer) still export: by their prefix
(`sudo_*`, `login_*`, `session_*`, `recording_*`) or else as an OCSF Base Event / an
ECS event without category, so an export never fails and never guesses wrongly.
Every JIT_* field also goes out unchanged (OCSF `unmapped`, ECS `labels`), so nothing
the journal knew is lost. Tests validate every exported event of every type against the
OCSF schema of the `ocsf-json-schema` package and the ECS definitions of `@elastic/ecs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from hostd import __version__
from hostd.events import EVENT_TYPES, NAME_OF_ID

OCSF_VERSION = "1.8.0"
ECS_VERSION = "9.4.0"

# OCSF classes used: uid -> (class name, category uid, category name)
OCSF_CLASSES: dict[int, tuple[str, int, str]] = {
    0: ("Base Event", 0, "Uncategorized"),
    1001: ("File System Activity", 1, "System Activity"),
    3002: ("Authentication", 3, "Identity & Access Management"),
    3003: ("Authorize Session", 3, "Identity & Access Management"),
    3005: ("User Access Management", 3, "Identity & Access Management"),
    3006: ("Group Management", 3, "Identity & Access Management"),
    6002: ("Application Lifecycle", 6, "Application Activity"),
    6008: ("Application Error", 6, "Application Activity"),
}
# (class uid, activity id) -> activity name, as the schema names them (99: ours)
OCSF_ACTIVITIES: dict[tuple[int, int], str] = {
    (3003, 1): "Assign Privileges",
    (3005, 1): "Assign Privileges", (3005, 2): "Revoke Privileges",
    (3006, 3): "Add User", (3006, 4): "Remove User",
    (3002, 1): "Logon", (3002, 2): "Logoff",
    (1001, 1): "Create", (1001, 4): "Delete",
    (6002, 3): "Start",
    (6008, 1): "General Error",
}
STATUS = {"success": (1, "Success"), "failure": (2, "Failure"), "unknown": (0, "Unknown")}


@dataclass(frozen=True)
class OcsfMap:
    class_uid: int
    activity_id: int
    status: str  # success | failure | unknown | anything else: Other (99) with that text
    activity: str = ""  # the name of an `Other` (99) activity


@dataclass(frozen=True)
class EcsMap:
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: str  # success | failure | unknown


OCSF_MAP: dict[str, OcsfMap] = {
    "grant_activated": OcsfMap(3005, 1, "success"),
    "grant_refused": OcsfMap(3005, 1, "failure"),
    "grant_scheduled": OcsfMap(3005, 99, "scheduled", "Schedule"),
    "grant_dropped": OcsfMap(3005, 1, "failure"),
    "grant_expired": OcsfMap(3005, 2, "success"),
    "grant_revoked": OcsfMap(3005, 2, "success"),
    "privilege_residue": OcsfMap(3005, 2, "failure"),
    "breakglass": OcsfMap(3005, 1, "success"),
    "request_created": OcsfMap(3005, 99, "pending", "Request"),
    "request_approved": OcsfMap(3005, 99, "success", "Approve Request"),
    "request_denied": OcsfMap(3005, 99, "failure", "Deny Request"),
    "request_expired": OcsfMap(3005, 99, "failure", "Request Expired"),
    "membership_added": OcsfMap(3006, 3, "success"),
    "membership_removed": OcsfMap(3006, 4, "success"),
    "sudo_allowed": OcsfMap(3003, 1, "success"),
    "sudo_denied": OcsfMap(3003, 1, "failure"),
    "sudo_pending": OcsfMap(3003, 1, "pending approval"),
    "login_denied": OcsfMap(3003, 1, "failure"),
    "login_refused": OcsfMap(3003, 1, "failure"),
    "session_opened": OcsfMap(3003, 1, "success"),
    "session_closed": OcsfMap(3002, 2, "success"),
    "session_terminated": OcsfMap(3002, 2, "success"),
    "session_watch_started": OcsfMap(3003, 99, "success", "Watch Start"),
    "session_watch_ended": OcsfMap(3003, 99, "success", "Watch End"),
    "session_paused": OcsfMap(3003, 99, "success", "Pause"),
    "session_resumed": OcsfMap(3003, 99, "success", "Resume"),
    "recording_started": OcsfMap(1001, 1, "success"),
    "recording_closed": OcsfMap(1001, 99, "success", "Close"),
    "recording_failed": OcsfMap(1001, 99, "failure", "Close"),
    "recording_removed": OcsfMap(1001, 4, "success"),
    "hostd_started": OcsfMap(6002, 3, "success"),
    "config_error": OcsfMap(6008, 1, "failure"),
    "timer_failed": OcsfMap(6008, 1, "failure"),
    "revocations_loaded": OcsfMap(6008, 99, "success", "Revocation List Loaded"),
    "revocations_refused": OcsfMap(6008, 99, "failure", "Revocation List Refused"),
    "revocations_stale": OcsfMap(6008, 99, "failure", "Revocation List Stale"),
    "notify_failed": OcsfMap(6008, 1, "failure"),
    "refusals_suppressed": OcsfMap(0, 99, "failure", "Refusals Suppressed"),
    "idp_refreshed": OcsfMap(6002, 99, "success", "Refresh Keys"),
    "idp_refresh_failed": OcsfMap(6008, 1, "failure"),
    "revocations_fetch_failed": OcsfMap(6008, 1, "failure"),
}
# name prefix -> mapping, for event types added after this table
OCSF_PREFIXES: tuple[tuple[str, OcsfMap], ...] = (
    ("sudo_", OcsfMap(3003, 99, "other", "sudo")),
    ("login_", OcsfMap(3003, 1, "failure")),
    ("session_", OcsfMap(3003, 99, "other", "Session")),
    ("recording_", OcsfMap(1001, 99, "other", "Recording")),
)
OCSF_FALLBACK = OcsfMap(0, 99, "other")

ECS_MAP: dict[str, EcsMap] = {
    "grant_activated": EcsMap(("iam",), ("user", "change"), "success"),
    "grant_refused": EcsMap(("iam",), ("user", "info"), "failure"),
    "grant_scheduled": EcsMap(("iam",), ("user", "info"), "unknown"),
    "grant_dropped": EcsMap(("iam",), ("user", "info"), "failure"),
    "grant_expired": EcsMap(("iam",), ("user", "change"), "success"),
    "grant_revoked": EcsMap(("iam",), ("user", "change"), "success"),
    "privilege_residue": EcsMap(("iam",), ("user", "info"), "failure"),
    "breakglass": EcsMap(("iam",), ("user", "change"), "success"),
    "request_created": EcsMap(("iam",), ("user", "info"), "unknown"),
    "request_approved": EcsMap(("iam",), ("user", "admin"), "success"),
    "request_denied": EcsMap(("iam",), ("user", "admin"), "failure"),
    "request_expired": EcsMap(("iam",), ("user", "info"), "failure"),
    "membership_added": EcsMap(("iam",), ("group", "change"), "success"),
    "membership_removed": EcsMap(("iam",), ("group", "change"), "success"),
    "sudo_allowed": EcsMap(("process",), ("start",), "success"),
    "sudo_denied": EcsMap(("process",), ("start",), "failure"),
    "sudo_pending": EcsMap(("process",), ("info",), "unknown"),
    "login_denied": EcsMap(("session",), ("start",), "failure"),
    "login_refused": EcsMap(("session",), ("start",), "failure"),
    "session_opened": EcsMap(("session",), ("start",), "success"),
    "session_closed": EcsMap(("session",), ("end",), "success"),
    "session_terminated": EcsMap(("session",), ("end",), "success"),
    "session_watch_started": EcsMap(("session",), ("info",), "success"),
    "session_watch_ended": EcsMap(("session",), ("info",), "success"),
    "session_paused": EcsMap(("session",), ("info",), "success"),
    "session_resumed": EcsMap(("session",), ("info",), "success"),
    "recording_started": EcsMap(("file",), ("creation",), "success"),
    "recording_closed": EcsMap(("file",), ("info",), "success"),
    "recording_failed": EcsMap(("file",), ("info",), "failure"),
    "recording_removed": EcsMap(("file",), ("deletion",), "success"),
    "hostd_started": EcsMap(("process",), ("start",), "success"),
    "config_error": EcsMap(("configuration",), ("info",), "failure"),
    "timer_failed": EcsMap(("process",), ("info",), "failure"),
    "revocations_loaded": EcsMap(("configuration",), ("change",), "success"),
    "revocations_refused": EcsMap(("configuration",), ("info",), "failure"),
    "revocations_stale": EcsMap(("configuration",), ("info",), "failure"),
    "notify_failed": EcsMap(("iam",), ("info",), "failure"),
    "refusals_suppressed": EcsMap(("iam",), ("info",), "failure"),
    "idp_refreshed": EcsMap(("configuration",), ("change",), "success"),
    "idp_refresh_failed": EcsMap(("configuration",), ("info",), "failure"),
    "revocations_fetch_failed": EcsMap(("configuration",), ("info",), "failure"),
}
ECS_PREFIXES: tuple[tuple[str, EcsMap], ...] = (
    ("sudo_", EcsMap(("process",), ("info",), "unknown")),
    ("login_", EcsMap(("session",), ("start",), "failure")),
    ("session_", EcsMap(("session",), ("info",), "unknown")),
    ("recording_", EcsMap(("file",), ("info",), "unknown")),
)
ECS_FALLBACK = EcsMap((), (), "unknown")

# syslog PRIORITY -> OCSF severity id and caption
SEVERITY = {0: (6, "Fatal"), 1: (5, "Critical"), 2: (5, "Critical"), 3: (4, "High"),
            4: (3, "Medium"), 5: (2, "Low"), 6: (1, "Informational"), 7: (1, "Informational")}


def event_name(e: dict[str, str]) -> str:
    return e.get("JIT_EVENT") or NAME_OF_ID.get(e.get("MESSAGE_ID", ""), "unknown")


def _pick(name: str, table: dict, prefixes: tuple, fallback):
    if name in table:
        return table[name]
    for prefix, mapped in prefixes:
        if name.startswith(prefix):
            return mapped
    return fallback


def ocsf_map(name: str) -> OcsfMap:
    return _pick(name, OCSF_MAP, OCSF_PREFIXES, OCSF_FALLBACK)


def ecs_map(name: str) -> EcsMap:
    return _pick(name, ECS_MAP, ECS_PREFIXES, ECS_FALLBACK)


def _priority(e: dict[str, str], name: str) -> int:
    try:
        return int(e["PRIORITY"])
    except (KeyError, ValueError):
        return EVENT_TYPES[name].priority if name in EVENT_TYPES else 6


def _usec(e: dict[str, str]) -> int:
    try:
        return int(e.get("__REALTIME_TIMESTAMP", "0"))
    except ValueError:
        return 0


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _split(text: str | None) -> list[str]:
    return [p for p in (text or "").split(",") if p]


def _jit(e: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in e.items() if k.startswith("JIT_")}


# OCSF ---------------------------------------------------------------------------------------

def to_ocsf(e: dict[str, str]) -> dict:
    """One journal event as an OCSF 1.8.0 event of the class its type maps to."""
    name = event_name(e)
    m = ocsf_map(name)
    class_name, category_uid, category_name = OCSF_CLASSES[m.class_uid]
    activity = OCSF_ACTIVITIES.get((m.class_uid, m.activity_id)) or m.activity or name
    severity_id, severity = SEVERITY.get(_priority(e, name), (1, "Informational"))
    out: dict = {
        "class_uid": m.class_uid, "class_name": class_name,
        "category_uid": category_uid, "category_name": category_name,
        "activity_id": m.activity_id, "activity_name": activity,
        "type_uid": m.class_uid * 100 + m.activity_id,
        "type_name": f"{class_name}: {activity}",
        "time": _usec(e) // 1000,
        "severity_id": severity_id, "severity": severity,
    }
    status_id, status = STATUS.get(m.status, (99, m.status))
    out["status_id"], out["status"] = status_id, status
    if e.get("JIT_CODE"):
        out["status_code"] = e["JIT_CODE"]
    if e.get("JIT_DECISION"):
        out["status_detail"] = e["JIT_DECISION"]
    if e.get("MESSAGE"):
        out["message"] = e["MESSAGE"]
    metadata: dict = {
        "version": OCSF_VERSION,
        "product": {"name": "jitaccess", "vendor_name": "jitaccess", "version": __version__},
        "log_name": "journal", "log_provider": e.get("SYSLOG_IDENTIFIER", "jit-hostd"),
        "event_code": name,
    }
    if e.get("MESSAGE_ID"):
        metadata["uid"] = f"{e['MESSAGE_ID']}-{_usec(e)}"
    correlation = e.get("JIT_GRANT_ID") or e.get("JIT_REQUEST_ID") or e.get("JIT_SESSION_ID")
    if correlation:
        metadata["correlation_uid"] = correlation
    if e.get("_HOSTNAME"):
        out["device"] = {"hostname": e["_HOSTNAME"], "type_id": 0, "type": "Unknown"}
        metadata["profiles"] = ["host"]
    out["metadata"] = metadata
    user = {k: v for k, v in (("name", e.get("JIT_USER")), ("uid", e.get("JIT_UID"))) if v}
    iam = category_uid == 3  # only IAM classes have a `user`; elsewhere it stays unmapped
    if user and iam:
        out["user"] = user
    approver = e.get("JIT_APPROVER")
    if approver and iam:
        out["actor"] = {"user": {"name": approver}}
    count = _int(e.get("JIT_COUNT"))
    if count is not None:
        out["count"] = count
    _OCSF_CLASS_FIELDS.get(m.class_uid, _none)(out, e, name)
    out["unmapped"] = _jit(e)
    return out


def _none(out: dict, e: dict[str, str], name: str) -> None:
    return None


def _privileges(e: dict[str, str]) -> list[str]:
    return ([f"role:{e['JIT_ROLE']}"] if e.get("JIT_ROLE") else []) + [
        f"group:{g}" for g in _split(e.get("JIT_GROUPS"))]


def _user_access(out: dict, e: dict[str, str], name: str) -> None:
    out.setdefault("user", {"name": "unknown"})
    out["privileges"] = _privileges(e) or ["unknown"]


def _authorize_session(out: dict, e: dict[str, str], name: str) -> None:
    out.setdefault("user", {"name": "unknown"})
    if e.get("JIT_RUNAS"):
        out["privileges"] = [f"runas:{e['JIT_RUNAS']}", *_privileges(e)]
    else:
        out["privileges"] = _privileges(e) or ["login"]
    session = _session(e)
    if session:
        out["session"] = session


def _session(e: dict[str, str]) -> dict:
    return {k: v for k, v in (("uid", e.get("JIT_SESSION_ID")), ("terminal", e.get("JIT_TTY")))
            if v}


def _authentication(out: dict, e: dict[str, str], name: str) -> None:
    out.setdefault("user", {"name": "unknown"})
    out["service"] = {"name": "jitaccess"}
    session = _session(e)
    if session:
        out["session"] = session


def _group_management(out: dict, e: dict[str, str], name: str) -> None:
    groups = _split(e.get("JIT_GROUPS"))
    out["group"] = {"name": groups[0] if len(groups) == 1 else ",".join(groups) or "unknown"}


def _file_activity(out: dict, e: dict[str, str], name: str) -> None:
    path = e.get("JIT_RECORDING") or "unknown"
    file: dict = {"name": path.rsplit("/", 1)[-1] or path, "type_id": 1, "type": "Regular File"}
    if "/" in path:
        file["path"] = path
    if e.get("JIT_RECORDING_SHA256"):
        file["hashes"] = [{"algorithm_id": 3, "algorithm": "SHA-256",
                           "value": e["JIT_RECORDING_SHA256"]}]
    out["file"] = file
    out["actor"] = {"user": {"name": e.get("JIT_USER") or "unknown"}}
    out.setdefault("device", {"hostname": e.get("_HOSTNAME") or "unknown", "type_id": 0,
                              "type": "Unknown"})
    out["metadata"]["profiles"] = ["host"]


def _application_lifecycle(out: dict, e: dict[str, str], name: str) -> None:
    out["app"] = {"name": e.get("SYSLOG_IDENTIFIER", "jit-hostd"), "vendor_name": "jitaccess",
                  "version": __version__}


_OCSF_CLASS_FIELDS = {3005: _user_access, 3003: _authorize_session, 3002: _authentication,
                      3006: _group_management, 1001: _file_activity,
                      6002: _application_lifecycle}


# ECS ----------------------------------------------------------------------------------------

# JIT_* fields that ECS has a field for; every other one goes to labels.
_ECS_TAKEN = frozenset({"JIT_EVENT", "JIT_USER", "JIT_UID", "JIT_ROLE", "JIT_GROUPS",
                        "JIT_COMMAND", "JIT_RUNAS", "JIT_CODE", "JIT_REASON", "JIT_GUARDRAIL",
                        "JIT_RECORDING", "JIT_RECORDING_SHA256"})


def _timestamp(usec: int) -> str:
    at = datetime.fromtimestamp(usec // 1_000_000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S") + f".{usec % 1_000_000:06d}Z"


def to_ecs(e: dict[str, str]) -> dict:
    """One journal event as an ECS 9.4.0 document (nested objects, as Elasticsearch
    stores them)."""
    name = event_name(e)
    m = ecs_map(name)
    event: dict = {"kind": "event", "outcome": m.outcome, "action": name,
                   "provider": e.get("SYSLOG_IDENTIFIER", "jit-hostd"),
                   "module": "jitaccess", "dataset": "jitaccess.audit",
                   "severity": _priority(e, name)}
    if m.category:
        event["category"] = list(m.category)
        event["type"] = list(m.type)
    if e.get("MESSAGE_ID"):
        event["code"] = e["MESSAGE_ID"]
    if e.get("JIT_REASON"):
        event["reason"] = e["JIT_REASON"]
    doc: dict = {"@timestamp": _timestamp(_usec(e)), "ecs": {"version": ECS_VERSION},
                 "event": event, "tags": ["jitaccess"]}
    if e.get("MESSAGE"):
        doc["message"] = e["MESSAGE"]
    if e.get("_HOSTNAME"):
        doc["host"] = {"name": e["_HOSTNAME"]}
    user: dict = {}
    if e.get("JIT_USER"):
        user["name"] = e["JIT_USER"]
    if e.get("JIT_UID"):
        user["id"] = e["JIT_UID"]
    if e.get("JIT_ROLE"):
        user["roles"] = [e["JIT_ROLE"]]
    if e.get("JIT_RUNAS"):
        user["effective"] = {"name": e["JIT_RUNAS"]}
    if user:
        doc["user"] = user
    groups = _split(e.get("JIT_GROUPS"))
    if groups:
        doc["group"] = {"name": groups[0] if len(groups) == 1 else groups}
    if e.get("JIT_COMMAND"):
        doc["process"] = {"command_line": e["JIT_COMMAND"]}
    if e.get("JIT_CODE"):
        doc["error"] = {"code": e["JIT_CODE"]}
    if e.get("JIT_GUARDRAIL"):
        doc["rule"] = {"id": e["JIT_GUARDRAIL"]}
    if e.get("JIT_RECORDING"):
        doc["file"] = {"path": e["JIT_RECORDING"]}
        if e.get("JIT_RECORDING_SHA256"):
            doc["file"]["hash"] = {"sha256": e["JIT_RECORDING_SHA256"]}
    related = sorted({v for v in (e.get("JIT_USER"), e.get("JIT_APPROVER"), e.get("JIT_RUNAS"))
                      if v})
    if related:
        doc["related"] = {"user": related}
    labels = {k[4:].lower(): v for k, v in e.items()
              if k.startswith("JIT_") and k not in _ECS_TAKEN}
    if labels:
        doc["labels"] = labels
    return doc


FORMATS = {"ocsf": to_ocsf, "ecs": to_ecs}


def export(events, fmt: str) -> Iterator[dict]:
    convert = FORMATS[fmt]
    for e in events:
        yield convert(e)
