"""Events to journald in the fixed schema of DESIGN.md §10.

One MESSAGE_ID per event type (listed in systemd/jitaccess.catalog, which a test keeps
in step with EVENT_TYPES). Values that come from users are escaped here, once, so no
caller can forget: a command line or a reason can never forge a second journal line or
what an approver sees. Under --root every event is also a JSON line in
DIR/var/log/jit/events.jsonl, which is how the integration tests read them back.
"""

from __future__ import annotations

import json
import os
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path

# event type -> (MESSAGE_ID, syslog PRIORITY, summary for the catalog)
EVENT_TYPES: dict[str, tuple[str, int, str]] = {
    "grant_activated": ("c07ff955bacb4885ae61f0027dc174aa", 5, "A grant was activated"),
    "grant_refused": ("f008f1fa8a924a50a8b116da8159dc35", 4, "A grant was refused"),
    "grant_expired": ("b39f91203ec24f77ae64e0b6554e1de0", 5, "A grant expired and was revoked"),
    "grant_revoked": ("7416bcc08ff24304a7217b398b203c45", 5, "A grant was revoked before expiry"),
    "membership_added": ("3621ad6a42a94bfc8908bfb5286808ab", 5, "Temporary group membership added"),
    "membership_removed": ("dfff782f1c734168b810ca94901c54fe", 5,
                           "Temporary group membership removed"),
    "config_error": ("ed27619c9da940eb8523fe3d47fc891f", 3, "jitaccess configuration error"),
    "hostd_started": ("e5d5ea939cb74ced871f9ba18409ad72", 6, "jit-hostd started and reconciled"),
    "timer_failed": ("9c6671b290e64f74b6eb88e4b2090b98", 3, "An expiry timer could not be armed"),
    "request_created": ("17d858f6a8704905b13370864327915f", 5, "An access request was made"),
    "request_approved": ("7cb90cdf38d8406f9971eb41cb8f55a6", 5, "An approver approved a request"),
    "request_denied": ("a42a0f12632c48ecb04d5c645180ad56", 5, "An approver denied a request"),
    "request_expired": ("eb5c1537956b4df9b67f80a5bc5e253f", 5,
                        "An access request expired unanswered"),
    "breakglass": ("49db911c183842d6b9f555aae89921ff", 2,
                   "Self-service break-glass access was taken"),
    "notify_failed": ("4c2cf68098734e03bd7585cbcc1c7598", 4, "An approver notification failed"),
    "sudo_allowed": ("522d89f209324a34a41c7b69b4f4b974", 5, "sudo allowed a command"),
    "sudo_denied": ("e992777deb0e4195bb4aa4e214c4f628", 4, "sudo denied a command"),
    "sudo_pending": ("11e70d0f024846bfb564c42ee8e0f93a", 5, "sudo paused a command for approval"),
    "login_denied": ("661ebdc1a5344f91863fb7f80cfe0c85", 4, "A login was denied"),
    "session_opened": ("9f0336d389ef46ca94d4fc76185d1b4c", 6, "A login session was registered"),
    "session_closed": ("e03b8fc2ec354b33aa83f3029b1f230a", 6, "A login session ended"),
    "session_terminated": ("a601c2c42c7842d9a006608e03f31ee7", 5,
                           "A session was ended at grant expiry"),
    "recording_closed": ("2172f8a1707f4e31ad3c1cffefbcdb6e", 5, "A session recording was closed"),
}

# The JIT_* fields of DESIGN.md §10, as keyword names accepted by Events.emit.
FIELDS = (
    "user", "uid", "role", "grant_id", "issuer", "not_after", "groups", "command", "runas",
    "decision", "reason", "request_id", "approver", "session_id", "recording",
    "recording_sha256", "code", "ticket",
)

MAX_VALUE = 4096


def escape(value: object) -> str:
    r"""Render any value as one inert line: control, format and separator characters
    become visible escapes (\n, \x1b, \u2028), backslashes are doubled, and overlong
    values are cut with a marker. The result can be shown on a terminal or logged."""
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(ch)
            if code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        else:
            out.append(ch)
    result = "".join(out)
    if len(result) > MAX_VALUE:
        result = result[:MAX_VALUE] + "...[truncated]"
    return result


def _field_value(value: object) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(escape(v) for v in value)
    return escape(value)


class Events:
    """Sends events to journald; under a sandbox root also mirrors them as JSON lines."""

    def __init__(self, mirror: Path | None = None, journal: bool = True) -> None:
        self.mirror = mirror
        self._journal_send = None
        if journal:
            try:
                from systemd import journal as _journal

                if os.path.exists("/run/systemd/journal/socket"):
                    self._journal_send = _journal.send
            except ImportError:  # pragma: no cover - python3-systemd is a Depends
                self._journal_send = None

    def emit(self, event: str, message: str, **fields: object) -> dict[str, str]:
        """Log one event. `message` is hostd's own sentence; field values are escaped."""
        message_id, priority, _ = EVENT_TYPES[event]
        record: dict[str, str] = {
            "MESSAGE": escape(message),
            "MESSAGE_ID": message_id,
            "PRIORITY": str(priority),
            "SYSLOG_IDENTIFIER": "jit-hostd",
            "JIT_EVENT": event,
        }
        for key, value in fields.items():
            if key not in FIELDS:
                raise ValueError(f"unknown event field {key}")  # a bug, not input
            if value is None or value == "" or value == []:
                continue
            record["JIT_" + key.upper()] = _field_value(value)
        if self._journal_send is not None:
            try:
                self._journal_send(**record)
            except OSError:
                pass  # journald gone: the mirror (if any) still has it; never block a decision
        if self.mirror is not None:
            line = dict(record, __REALTIME_TIMESTAMP=str(time.time_ns() // 1000))
            with open(self.mirror, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
        return record


def read_mirror(path: Path) -> Iterable[dict[str, str]]:
    """Read back events.jsonl (tests, `jit audit` under a sandbox root)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
