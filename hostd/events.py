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
import re
import stat
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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
    "login_refused": ("661ebdc1a5344f91863fb7f80cfe0c85", 4, "A login was refused"),
    "session_opened": ("9f0336d389ef46ca94d4fc76185d1b4c", 6, "A login session was registered"),
    "session_closed": ("e03b8fc2ec354b33aa83f3029b1f230a", 6, "A login session ended"),
    "session_terminated": ("a601c2c42c7842d9a006608e03f31ee7", 5,
                           "A session was ended at grant expiry"),
    "privilege_residue": ("e0981b68452e472b9e8190cc445531da", 4,
                          "Processes kept a group after the grant that gave it ended"),
    "recording_closed": ("2172f8a1707f4e31ad3c1cffefbcdb6e", 5, "A session recording was closed"),
    "recording_started": ("143c0ef8d5844e15b9f530372def91aa", 6, "A session recording was started"),
    "recording_failed": ("3d6190a5e50a4bee81da0b49a7682c2f", 3,
                         "A session recording ended abnormally"),
    "recording_removed": ("11bddced35fd4983a048f16208abb73d", 5,
                          "A session recording was removed by retention"),
    "refusals_suppressed": ("88745e31de5946f6889e5db6a3fe3443", 4,
                            "Repeated refusals of one user were not logged one by one"),
}

# The JIT_* fields of DESIGN.md §10, as keyword names accepted by Events.emit.
FIELDS = (
    "user", "uid", "role", "grant_id", "issuer", "not_after", "groups", "command", "runas",
    "decision", "reason", "request_id", "approver", "session_id", "recording",
    "recording_sha256", "code", "ticket", "count", "tty", "guardrail",
    "pids", "processes", "masked",
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


def _field_value(value: object) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(escape(v) for v in value)
    return escape(value)


@dataclass
class _Bucket:
    """One uid's token bucket and what it held back since its last summary."""

    tokens: float
    at: float
    user: str = ""
    suppressed: Counter = field(default_factory=Counter)
    since: float = 0.0  # when the first refusal held back since the last summary came


OTHER_UIDS = -1  # the shared bucket of uids that found the table full


class RefusalLimiter:
    """Per-uid token bucket for refusal events (grant_refused; later sudo_denied,
    login_refused): `burst` at once, then `rate` a second. Whatever is held back is counted
    and summed up in one `refusals_suppressed` event per uid once `interval` has passed,
    so one user hammering hostd cannot push its real events (expiries, activations) past
    journald's rate limit, and nothing goes uncounted.

    Memory is bounded: at most `max_uids` buckets. Buckets that have refilled and hold
    nothing back are dropped first (recreating one gives the same full bucket); past that,
    new uids share one bucket (OTHER_UIDS). Since a bucket lets through at most
    burst + rate*T in any T seconds, dropped or not, all refusals logged in T are at most
    (max_uids + 1) * (burst + rate*T): with the defaults 257 * (20 + 30) = 12,850 per 30 s.
    """

    def __init__(self, burst: int = 20, rate: float = 1.0, interval: float = 30.0,
                 max_uids: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate, self.interval, self.max_uids = burst, rate, interval, max_uids
        self.clock = clock
        self._buckets: dict[int, _Bucket] = {}
        self._lock = threading.Lock()  # the webhook worker thread also emits events
        self._next_due = float("inf")

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, event: str, uid: int, user: str = "") -> bool:
        """Take a token for one refusal of `uid`; False (and counted) when none is left."""
        now = self.clock()
        with self._lock:
            bucket = self._bucket(uid, now)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if user:
                bucket.user = user
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return True
            if not bucket.suppressed:
                bucket.since = now
                self._next_due = min(self._next_due, now + self.interval)
            bucket.suppressed[event] += 1
            return False

    def _bucket(self, uid: int, now: float) -> _Bucket:
        bucket = self._buckets.get(uid)
        if bucket is not None:
            return bucket
        if len(self._buckets) >= self.max_uids:
            self._drop_idle(now)
        if len(self._buckets) >= self.max_uids:
            uid = OTHER_UIDS
            bucket = self._buckets.get(uid)
            if bucket is not None:
                return bucket
        bucket = self._buckets[uid] = _Bucket(tokens=float(self.burst), at=now)
        return bucket

    def _drop_idle(self, now: float) -> None:
        """Forget buckets that are full again and owe no summary: nothing is lost."""
        for uid in [u for u, b in self._buckets.items() if not b.suppressed
                    and b.tokens + (now - b.at) * self.rate >= self.burst]:
            del self._buckets[uid]

    def due(self) -> list[tuple[int, str, Counter]]:
        """(uid, user, held back per event type) of every bucket whose summary is due,
        reset so each refusal is summed up once. Cheap when nothing is due."""
        now = self.clock()
        if now < self._next_due:
            return []
        out = []
        with self._lock:
            self._next_due = float("inf")
            for uid, bucket in self._buckets.items():
                if not bucket.suppressed:
                    continue
                if now - bucket.since >= self.interval:
                    out.append((uid, "" if uid == OTHER_UIDS else bucket.user,
                                bucket.suppressed))
                    bucket.suppressed = Counter()
                else:
                    self._next_due = min(self._next_due, bucket.since + self.interval)
            self._drop_idle(now)
        return out


def summary_message(uid: int, user: str, held: Counter) -> str:
    """`N refusals suppressed for uid U (user)`, with the count of each event type."""
    kinds = ", ".join(f"{event} {n}" for event, n in sorted(held.items()))
    who = "other uids (too many to track one by one)" if uid == OTHER_UIDS else (
        f"uid {uid}" + (f" ({user})" if user else ""))
    return f"{sum(held.values())} refusals suppressed for {who}: {kinds}"


class Events:
    """Sends events to journald; under a sandbox root also mirrors them as JSON lines."""

    def __init__(self, mirror: Path | None = None, journal: bool = True,
                 limiter: RefusalLimiter | None = None) -> None:
        self.mirror = mirror
        self.limiter = limiter if limiter is not None else RefusalLimiter()
        self._journal_send = None
        if journal:
            try:
                from systemd import journal as _journal

                if os.path.exists("/run/systemd/journal/socket"):
                    self._journal_send = _journal.send
            except ImportError:  # pragma: no cover - python3-systemd is a Depends
                self._journal_send = None

    def emit(self, event: str, message: str, **fields: object) -> dict[str, str]:
        """Log one event, never rate-limited. `message` is hostd's own sentence; field
        values are escaped. Summaries of held-back refusals that fell due go out first."""
        self.flush_refusals()
        return self._emit(event, message, **fields)

    def refusal(self, event: str, message: str, *, uid: int,
                **fields: object) -> dict[str, str] | None:
        """Log a refusal caused by a user, limited per uid (RefusalLimiter). Returns the
        record, or None when it was held back (counted for the next summary)."""
        self.flush_refusals()
        user = fields.get("user")
        if not self.limiter.allow(event, uid, user if isinstance(user, str) else ""):
            return None
        return self._emit(event, message, uid=uid, **fields)

    def flush_refusals(self) -> list[dict[str, str]]:
        """Write the summaries that are due: from the sweep (every 30 s) and before any
        event, so a summary is never much later than its window."""
        return [self._emit("refusals_suppressed", summary_message(uid, user, held),
                           uid=None if uid == OTHER_UIDS else uid, user=user,
                           count=sum(held.values()), decision="suppressed")
                for uid, user, held in self.limiter.due()]

    def _emit(self, event: str, message: str, **fields: object) -> dict[str, str]:
        message, fields = _masked(message, fields)
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
            data = (json.dumps(line, sort_keys=True) + "\n").encode()
            with open_private(self.mirror) as fh:  # one O_APPEND write: whole lines even
                fh.buffer.raw.write(data)          # when several threads emit at once
        return record


def _masked(message: str, fields: dict) -> tuple[str, dict]:
    """Command lines masked with the host's rules, in their fields and in the message
    that quotes them, and JIT_MASKED (counts per rule, never the values): one masker
    for every sink (hostd.record.textmask)."""
    if not any(fields.get(k) for k in ("command", "processes")):
        return message, fields
    from hostd.record.textmask import mask_event

    return mask_event(message, fields)


def open_private(path: Path):
    """Open for appending, readable by the owner only: created 0600, and an existing file
    put back to 0600 (the mirror holds what users asked for and why)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def read_mirror(path: Path) -> Iterable[dict[str, str]]:
    """Read back events.jsonl (tests, `jit audit` under a sandbox root)."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
