"""The journald writer: hostd's events (the vocabulary of hostd/events.py) sent to
journald, and under --root also mirrored as JSON lines in DIR/var/log/jit/events.jsonl,
which is how the integration tests read them back. Refusals a user causes go through a
per-uid rate limiter so one user cannot push hostd's other events past journald's limit.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hostd.events import entry


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


# The CODE_* fields of every event: python-systemd's send() fills them in from
# traceback.extract_stack(), which stats and reads source files, when none is given:
# the same file and function every time (this module's send call), at ~0.1 ms of CPU
# on every login and sudo. Given here (CODE_LINE left out: it would only go stale).
_CODE = {"CODE_FILE": __file__, "CODE_FUNC": "_emit"}


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
        record = entry(event, message, **fields)
        if self._journal_send is not None:
            try:  # CODE_*: what python-systemd would find by walking the stack (~0.1 ms)
                self._journal_send(**record, **_CODE)
            except OSError:
                pass  # journald gone: the mirror (if any) still has it; never block a decision
        if self.mirror is not None:
            line = dict(record, __REALTIME_TIMESTAMP=str(time.time_ns() // 1000))
            data = (json.dumps(line, sort_keys=True) + "\n").encode()
            with open_private(self.mirror) as fh:  # one O_APPEND write: whole lines even
                fh.buffer.raw.write(data)          # when several threads emit at once
        return record


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


def _masked(message: str, fields: dict) -> tuple[str, dict]:
    """Command lines masked with the host's rules, in their fields and in the message
    that quotes them, and JIT_MASKED (counts per rule, never the values): one masker
    for every sink (hostd/masking/text.py)."""
    if not any(fields.get(k) for k in ("command", "processes")):
        return message, fields
    from hostd.masking.text import mask_event

    return mask_event(message, fields)

