"""`jit audit --held-at T` and scheduled grants (issue 22 §2): a grant scheduled by T
whose start had not come (or had, but it was not yet applied) was pending at T, not
held. Read from the same journal events: grant_scheduled, then grant_activated,
grant_revoked (a cancellation) or grant_dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from hostd.events import escape

SCHEDULE_EVENTS = ("grant_scheduled", "grant_dropped")
_ENDS = ("grant_activated", "grant_revoked", "grant_dropped")


@dataclass
class Pending:
    """A grant scheduled at `scheduled`, to run from `not_before` to `not_after`."""

    grant_id: str
    user: str
    role: str
    groups: str
    issuer: str
    scheduled: float
    not_before: str
    not_after: str

    def as_dict(self) -> dict[str, object]:
        return {"grant_id": self.grant_id, "user": self.user, "role": self.role,
                "groups": self.groups, "issuer": self.issuer, "state": "pending",
                "scheduled": _iso(self.scheduled), "not_before": self.not_before,
                "not_after": self.not_after}


def inert(value: str) -> str:
    """As audit/journal.inert: what reached the journal, made inert for a terminal."""
    return escape(value, logged=True)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pending_at(events: Iterable[dict[str, str]], at: float) -> list[Pending]:
    """Grants scheduled by `at` whose activation, cancellation or drop came after it."""
    scheduled: dict[str, Pending] = {}
    ended: dict[str, float] = {}
    for e in events:
        name, gid = e.get("JIT_EVENT", ""), e.get("JIT_GRANT_ID", "")
        when = int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        if not gid:
            continue
        if name == "grant_scheduled" and gid not in scheduled:
            scheduled[gid] = Pending(gid, e.get("JIT_USER", ""), e.get("JIT_ROLE", ""),
                                     e.get("JIT_GROUPS", ""), e.get("JIT_ISSUER", ""), when,
                                     e.get("JIT_NOT_BEFORE", ""), e.get("JIT_NOT_AFTER", ""))
        elif name in _ENDS:
            ended[gid] = min(when, ended.get(gid, when))
    out = [p for gid, p in scheduled.items()
           if p.scheduled <= at and (gid not in ended or ended[gid] > at)]
    return sorted(out, key=lambda p: (p.user, p.role, p.scheduled))


def pending_lines(pending: list[Pending]) -> Iterator[str]:
    """After the held table: what was scheduled but not yet held."""
    if not pending:
        return
    yield "pending (scheduled, not yet held):"
    for p in pending:
        yield (f"  {inert(p.user)}  role {inert(p.role)}  groups {inert(p.groups) or '-'}"
               f"  grant {inert(p.grant_id)}  from {inert(p.not_before)} until "
               f"{inert(p.not_after)}  (scheduled {_iso(p.scheduled)})")
