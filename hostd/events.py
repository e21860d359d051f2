"""hostd's event vocabulary (DESIGN.md §10): the event types, the JIT_* fields each
carries, and how a value is made inert. Pure: the journald writer that sends events
(and mirrors them under --root) is hostd/state/journal.py; `jit audit` reads the same
schema back (audit/export.py, audit/report.py).

One MESSAGE_ID per event type (listed in systemd/jitaccess.catalog, which a test keeps
in step with EVENT_TYPES). Values that come from users are escaped when an entry is
built, once, so no caller can forget: a command line or a reason can never forge a
second journal line or what an approver sees.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

# The JIT_* fields of DESIGN.md §10 (JIT_NAME in the journal, `name` as a keyword).
FIELDS = (
    "user", "uid", "role", "grant_id", "issuer", "not_after", "groups", "command", "runas",
    "decision", "reason", "request_id", "approver", "session_id", "recording",
    "recording_sha256", "code", "ticket", "count", "tty", "guardrail",
    "pids", "processes",
    "masked",  # secrets masked in a command line, per rule (hostd/masking/text.py)
    "path", "mode",  # privilege_residue of a setgid file (hostd/server/setgid_walks.py);
    # mode is also a watcher's: observer or moderator (session_watch_*, issue 23)
    "idp_subject", "matched",  # an identity provider's token: its sub, the claims that
    # matched claims_to_roles (hostd/core/idp.py, issue 21)
    "not_before",  # when a scheduled grant starts (hostd/core/scheduled.py)
    "revocation_list", "revocation_entry",  # issuer#seq and kind=value (docs/REVOCATIONS.md)
)

# What an event says about its subject: a grant, a request, a sudo command, a recorded
# session, a grant's ending. Declared once; an event type names the groups it carries.
GRANT = ("user", "uid", "role", "grant_id", "issuer", "not_after", "groups", "reason",
         "ticket")
REQUEST = ("user", "uid", "role", "request_id", "reason", "ticket")
SUDO = ("user", "uid", "role", "grant_id", "command", "runas", "tty", "guardrail", "masked")
RECORDING = ("user", "uid", "role", "grant_id", "command", "runas", "tty", "recording",
             "session_id", "masked")
ENDING = ("user", "uid", "role", "grant_id", "groups", "reason")


@dataclass(frozen=True)
class EventType:
    """One event type: its journald identity, its catalog summary and the JIT_* fields
    it may carry (a field outside them is a bug: the entry is refused)."""

    name: str
    family: str  # what it is about: grant, request, sudo, login, session, recording,
    # residue or hostd (the audit page draws each family on its own track)
    message_id: str
    priority: int  # syslog PRIORITY
    summary: str  # the catalog's Subject
    fields: tuple[str, ...]
    refusal: bool = False  # a user was refused: limited per uid, drawn as a refusal

    def __post_init__(self) -> None:
        unknown = [f for f in self.fields if f not in FIELDS]
        if unknown:
            raise ValueError(f"{self.name}: unknown event fields {unknown}")
        object.__setattr__(self, "fields", tuple(dict.fromkeys(self.fields)))


EVENT_TYPES: dict[str, EventType] = {t.name: t for t in (
    EventType("grant_activated", "grant", "c07ff955bacb4885ae61f0027dc174aa", 5,
              "A grant was activated",
              (*GRANT, "decision", "request_id", "idp_subject", "matched")),
    EventType("grant_scheduled", "grant", "3bdea38e0ea241549d150f46dda9bf2e", 5,
              "A grant was scheduled to start later",
              (*GRANT, "not_before", "decision", "request_id")),
    EventType("grant_dropped", "grant", "5519b2539b0c46d2a7d109bb5668b60e", 4,
              "A scheduled grant was dropped at its start",
              (*GRANT, "not_before", "code", "decision")),
    EventType("grant_refused", "grant", "f008f1fa8a924a50a8b116da8159dc35", 4,
              "A grant was refused",
              ("user", "uid", "code", "decision", "reason", "issuer"),
              refusal=True),
    EventType("grant_expired", "grant", "b39f91203ec24f77ae64e0b6554e1de0", 5,
              "A grant expired and was revoked",
              (*GRANT, "decision")),
    EventType("grant_revoked", "grant", "7416bcc08ff24304a7217b398b203c45", 5,
              "A grant was revoked before expiry",
              (*GRANT, "decision", "approver", "not_before", "revocation_list",
               "revocation_entry")),
    EventType("membership_added", "grant", "3621ad6a42a94bfc8908bfb5286808ab", 5,
              "Temporary group membership added",
              (*GRANT,)),
    EventType("membership_removed", "grant", "dfff782f1c734168b810ca94901c54fe", 5,
              "Temporary group membership removed",
              (*GRANT,)),
    EventType("config_error", "hostd", "ed27619c9da940eb8523fe3d47fc891f", 3,
              "jitaccess configuration error",
              (*GRANT,)),
    EventType("hostd_started", "hostd", "e5d5ea939cb74ced871f9ba18409ad72", 6,
              "jit-hostd started and reconciled",
              ("reason",)),
    EventType("revocations_loaded", "hostd", "9bf40d10697d4bc89a6e0341b5bdca1b", 5,
              "A revocation list was accepted",
              ("issuer", "count", "path", "revocation_list")),
    EventType("revocations_refused", "hostd", "84bc768844a542ecb82662f471d63464", 4,
              "A revocation list was refused",
              ("issuer", "code", "reason", "path")),
    EventType("revocations_stale", "hostd", "f2326d7d932f4a1c96d1aa5d62dd819d", 4,
              "A revocation list is stale",
              ("issuer", "mode", "revocation_list")),
    EventType("timer_failed", "hostd", "9c6671b290e64f74b6eb88e4b2090b98", 3,
              "An expiry timer could not be armed",
              ("grant_id",)),
    EventType("request_created", "request", "17d858f6a8704905b13370864327915f", 5,
              "An access request was made",
              (*REQUEST, "decision", "issuer", "idp_subject", "matched")),
    EventType("request_approved", "request", "7cb90cdf38d8406f9971eb41cb8f55a6", 5,
              "An approver approved a request",
              (*REQUEST, "approver", "decision")),
    EventType("request_denied", "request", "a42a0f12632c48ecb04d5c645180ad56", 5,
              "An approver denied a request",
              (*REQUEST, "approver", "decision")),
    EventType("request_expired", "request", "eb5c1537956b4df9b67f80a5bc5e253f", 5,
              "An access request expired unanswered",
              (*REQUEST, "decision")),
    EventType("breakglass", "request", "49db911c183842d6b9f555aae89921ff", 2,
              "Self-service break-glass access was taken",
              (*REQUEST, "grant_id", "decision")),
    EventType("notify_failed", "hostd", "4c2cf68098734e03bd7585cbcc1c7598", 4,
              "An approver notification failed",
              ("user", "role", "request_id")),
    EventType("sudo_allowed", "sudo", "522d89f209324a34a41c7b69b4f4b974", 5,
              "sudo allowed a command",
              (*SUDO, "decision", "request_id")),
    EventType("sudo_denied", "sudo", "e992777deb0e4195bb4aa4e214c4f628", 4,
              "sudo denied a command",
              (*SUDO, "decision", "code", "reason"), refusal=True),
    EventType("sudo_pending", "sudo", "11e70d0f024846bfb564c42ee8e0f93a", 5,
              "sudo paused a command for approval",
              (*SUDO, "decision", "request_id")),
    EventType("login_refused", "login", "661ebdc1a5344f91863fb7f80cfe0c85", 4,
              "A login was refused",
              ("user", "uid", "tty", "decision", "code", "reason"), refusal=True),
    EventType("session_opened", "session", "9f0336d389ef46ca94d4fc76185d1b4c", 6,
              "A login session was registered",
              ("user", "uid", "session_id", "tty", "grant_id")),
    EventType("session_closed", "session", "e03b8fc2ec354b33aa83f3029b1f230a", 6,
              "A login session ended",
              ("user", "uid", "session_id", "tty", "reason")),
    EventType("session_terminated", "session", "a601c2c42c7842d9a006608e03f31ee7", 5,
              "A session was ended at grant expiry, or by an approver",
              (*ENDING, *RECORDING, "decision", "count", "pids", "processes", "approver")),
    EventType("session_watch_started", "session", "54923bc190e84a8c93023c3a2763e741", 5,
              "Someone started watching a live recorded session",
              (*RECORDING, "approver", "mode")),
    EventType("session_watch_ended", "session", "b4eedfea66874ba19063f082695174cf", 5,
              "Someone stopped watching a live recorded session",
              (*RECORDING, "approver", "mode", "reason")),
    EventType("session_paused", "session", "e8811a2468294779913468c62a032da7", 5,
              "A moderated session was paused: too few moderators",
              (*RECORDING, "reason")),
    EventType("session_resumed", "session", "efdac5677d3e48da92411ab5ee39aeae", 5,
              "A moderated session went on: its moderators are back",
              (*RECORDING, "reason")),
    EventType("privilege_residue", "residue", "e0981b68452e472b9e8190cc445531da", 4,
              "Processes kept a group after the grant that gave it ended",
              (*ENDING, "decision", "count", "pids", "processes", "masked", "path", "mode")),
    EventType("recording_closed", "recording", "2172f8a1707f4e31ad3c1cffefbcdb6e", 5,
              "A session recording was closed",
              (*RECORDING, "decision", "recording_sha256")),
    EventType("recording_started", "recording", "143c0ef8d5844e15b9f530372def91aa", 6,
              "A session recording was started",
              (*RECORDING,)),
    EventType("recording_failed", "recording", "3d6190a5e50a4bee81da0b49a7682c2f", 3,
              "A session recording ended abnormally",
              (*RECORDING, "reason", "recording_sha256")),
    EventType("recording_removed", "recording", "11bddced35fd4983a048f16208abb73d", 5,
              "A session recording was removed by retention",
              ("recording", "reason")),
    EventType("refusals_suppressed", "hostd", "88745e31de5946f6889e5db6a3fe3443", 4,
              "Repeated refusals of one user were not logged one by one",
              ("user", "uid", "count", "decision")),
    # the fetcher (hostd/fetch, run by jit-idp-refresh*.service and
    # jit-revocations-fetch.service, never by hostd)
    EventType("idp_refreshed", "hostd", "42f03a4b990c4930a71156e748920fb5", 6,
              "An identity provider's keys were refreshed", ("issuer", "count")),
    EventType("idp_refresh_failed", "hostd", "1da71a37cb6c44e8bf1c309bb0ab16c0", 4,
              "An identity provider's keys could not be refreshed", ("issuer", "reason")),
    EventType("revocations_fetch_failed", "hostd", "3fa367c6dfb745bfbf4f15a584dd4794", 4,
              "A revocation list could not be pulled from its URL", ("issuer", "reason")),
)}
NAME_OF_ID = {t.message_id: name for name, t in EVENT_TYPES.items()}

MAX_VALUE = 4096


_UNSAFE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
_NAMED = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _char(ch: str) -> str:
    """One control, format, surrogate, private, unassigned or separator character as a
    visible escape; any other character as itself."""
    if ch in _NAMED:
        return _NAMED[ch]
    if unicodedata.category(ch) not in _UNSAFE:
        return ch
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (
        f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")


def escape(value: object, *, logged: bool = False) -> str:
    r"""Render any value as one inert line: control, format and separator characters
    become visible escapes (\n, \x1b, \u2028), backslashes are doubled, and overlong
    values are cut with a marker. The result can be shown on a terminal or logged.

    `logged=True` is for text read back from the journal (`jit audit`, its HTML page),
    where hostd escaped its values already: backslashes stay single and nothing is cut,
    so hostd's own text shows as it was logged (escape(escape(v), logged=True) ==
    escape(v)) and only what another writer left raw is made visible."""
    text = value if isinstance(value, str) else str(value)
    if logged:
        if text.isprintable():  # false for every unsafe character (and \n, \t, \r)
            return text
        return "".join(ch if ch == "\\" else _char(ch) for ch in text)
    if text.isprintable() and "\\" not in text:  # the common case: nothing to escape
        result = text
    else:
        result = "".join(_char(ch) for ch in text)
    if len(result) > MAX_VALUE:
        result = result[:MAX_VALUE] + "...[truncated]"
    return result


_WHITESPACE = re.compile(r"\s+")


def columns(ch: str) -> int:
    """Terminal cells a character may take: wide, fullwidth and ambiguous ones count two
    (a CJK terminal draws ambiguous ones wide), so a width computed here never falls short."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F", "A") else 1


def shown(value: object, width: int) -> str:
    """User text as people see it (notices, webhook text, `jit requests`): escaped, every
    run of whitespace one space, `"` as `\\"` so it cannot close the quotes it is shown
    in, and at most `width` terminal columns, cut with `…`. The caller puts it after a
    fixed prefix on a line of its own; with the prefix no longer than 80 - width columns
    it never wraps, so no attacker text reaches column 0 of an 80-column terminal."""
    return cut(_WHITESPACE.sub(" ", escape(value)).strip().replace('"', '\\"'), width)


def cut(text: str, width: int) -> str:
    """`text` in at most `width` terminal columns, cut with `…` when it is wider."""
    if sum(columns(ch) for ch in text) <= width:
        return text
    out, used = [], columns("…")
    for ch in text:
        used += columns(ch)
        if used > width:
            break
        out.append(ch)
    return "".join(out) + "…"


def framed(label: str, value: object, width: int = 80) -> str:
    """`    label: "value"`: user text on a line of its own, quoted after a fixed prefix,
    the whole line at most `width` columns; what follows a wrap is never user text."""
    prefix = f'    {label}: "'
    return f'{prefix}{shown(value, width - len(prefix) - 1)}"'


def value(value: object) -> str:
    """A field's journal text: escaped, list items each escaped and joined by commas."""
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(escape(v) for v in value)
    return escape(value)


def carried(event: str, *subjects: object, **values: object) -> dict[str, object]:
    """The one builder of an event's fields: for each field `event` declares, the value
    given by keyword, else the first subject that has it (a mapping's key or an object's
    attribute; None subjects are skipped). A subject's other keys are not carried, so a
    whole grant row, request row or recorded session can be given; a keyword the type
    does not declare is a bug (ValueError)."""
    kind = EVENT_TYPES[event]
    stray = [k for k in values if k not in kind.fields]
    if stray:
        raise ValueError(f"{event} carries no field {', '.join(stray)}")
    out: dict[str, object] = {}
    for name in kind.fields:
        if name in values:
            out[name] = values[name]
            continue
        for subject in subjects:
            if isinstance(subject, Mapping):
                if name in subject:
                    out[name] = subject[name]
                    break
            elif subject is not None and hasattr(subject, name):
                out[name] = getattr(subject, name)
                break
    return out


def entry(event: str, message: str, **fields: object) -> dict[str, str]:
    """The journald entry of one event: MESSAGE (escaped), MESSAGE_ID, PRIORITY,
    SYSLOG_IDENTIFIER, JIT_EVENT and a JIT_* field for each non-empty value, escaped.
    A field the type does not declare raises ValueError (a bug, not input)."""
    kind = EVENT_TYPES[event]
    record: dict[str, str] = {
        "MESSAGE": escape(message),
        "MESSAGE_ID": kind.message_id,
        "PRIORITY": str(kind.priority),
        "SYSLOG_IDENTIFIER": "jit-hostd",
        "JIT_EVENT": event,
    }
    for key, val in fields.items():
        if key not in kind.fields:
            what = "unknown event field" if key not in FIELDS else "undeclared event field"
            raise ValueError(f"{what} {key} for {event}")
        if val is None or val == "" or val == []:
            continue
        record["JIT_" + key.upper()] = value(val)
    return record
