"""hostd's events as an auditor reads them: grants (how each ended), requests (who
decided, which grant they caused), from journal entries shaped like `journalctl -o json`
lines. Pure: no I/O, the period's end is passed in. Used by the HTML report
(report.py). Which event types are a request's is read from the event schema
(hostd/events.py, family "request")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from hostd.events import EVENT_TYPES

REQUEST_EVENTS = frozenset(n for n, k in EVENT_TYPES.items() if k.family == "request")
LINK_SECONDS = 10.0  # an approval and the grant it caused are logged within this


def parse_rfc3339(text: str | None) -> float | None:
    """JIT_NOT_AFTER as epoch seconds (naive means UTC); None if absent or garbled."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class Event:
    """One journal entry: its place in the input, its time, its fields; `get("user")`
    is JIT_USER."""

    __slots__ = ("f", "idx", "jit", "kind", "t")

    def __init__(self, idx: int, t: float | None, f: dict[str, str]) -> None:
        self.idx, self.t, self.f = idx, t, f
        self.jit = {k[4:].lower(): v for k, v in f.items() if k.startswith("JIT_")}
        self.kind = self.jit.get("event") or "?"

    def get(self, name: str) -> str:
        return self.jit.get(name, "")


@dataclass
class Grant:
    id: str
    user: str = ""
    role: str = ""
    start: float | None = None
    end: float | None = None
    ending: str = "open"
    not_after: float | None = None
    events: list[Event] = field(default_factory=list)
    breakglass: bool = False
    ended_by: str = ""
    reason: str = ""
    request: Request | None = None
    lane: int = 0


@dataclass
class Request:
    id: str
    user: str = ""
    role: str = ""
    created: float | None = None
    decisions: list[Event] = field(default_factory=list)
    outcome: str = "pending"
    reason: str = ""
    grant_id: str = ""
    first: Event | None = None


def _timestamp(raw: dict) -> float | None:
    try:
        return int(str(raw.get("__REALTIME_TIMESTAMP", ""))) / 1e6
    except ValueError:
        return None


def to_event(idx: int, raw: dict) -> Event:
    """An entry as given (values are strings; anything else is shown as its str())."""
    fields = {str(k): v if isinstance(v, str) else str(v) for k, v in raw.items()}
    return Event(idx, _timestamp(raw), fields)


def _never_held(g: Grant) -> bool:
    """A scheduled grant that never started (issue 22 §2) was never held: it is not
    drawn as a grant bar (`jit audit --held-at` lists it as pending)."""
    kinds = {e.kind for e in g.events}
    return ("grant_scheduled" in kinds and "grant_activated" not in kinds
            and "membership_added" not in kinds)


def build_grants(evs: list[Event], ref: float) -> dict[str, Grant]:
    """Grants by id, from their own events; `ref` is the end of the period (a grant with
    no end event whose not_after lies beyond it is still live)."""
    grants: dict[str, Grant] = {}
    for ev in evs:
        gid = ev.get("grant_id")
        if not gid:
            continue
        g = grants.setdefault(gid, Grant(gid))
        g.events.append(ev)
        g.user = g.user or ev.get("user")
        g.role = g.role or ev.get("role")
        g.not_after = g.not_after or parse_rfc3339(ev.get("not_after"))
        g.reason = g.reason or ev.get("reason")
        if ev.kind == "grant_activated":
            g.start = ev.t
        elif ev.kind == "breakglass":
            g.breakglass = True
        elif ev.kind in ("grant_expired", "grant_revoked"):
            g.end, g.ending = ev.t, ev.kind.removeprefix("grant_")
            if ev.kind == "grant_revoked":
                g.ended_by = ev.get("approver")
                g.reason = ev.get("reason") or g.reason
    for gid in [gid for gid, g in grants.items() if _never_held(g)]:
        del grants[gid]  # scheduled, then cancelled, dropped or still pending: no bar
    for g in grants.values():
        if g.ending in ("expired", "revoked"):
            continue
        activated = any(e.kind == "grant_activated" for e in g.events)
        tried = any(e.kind == "membership_added" for e in g.events)
        if tried and not activated:  # memberships added, then undone: activation failed
            g.ending = "failed"
            times = [e.t for e in g.events if e.t is not None]
            g.start, g.end = (min(times), max(times)) if times else (None, None)
        elif g.not_after is None or g.not_after > ref:
            g.ending = "live"
        else:
            g.ending, g.end = "open", g.not_after
    return grants


def build_requests(evs: list[Event], grants: dict[str, Grant]) -> dict[str, Request]:
    """Requests by id with their decisions; each linked to the grant it caused (named by
    break-glass or by the grant's activation, JIT_REQUEST_ID; for older events, the
    next `host` grant of the same user and role just after the last approval)."""
    reqs: dict[str, Request] = {}
    for ev in evs:
        rid = ev.get("request_id")
        if not rid or ev.kind not in REQUEST_EVENTS:
            continue
        r = reqs.setdefault(rid, Request(rid))
        r.user = r.user or ev.get("user")
        r.role = r.role or ev.get("role")
        if ev.kind in ("request_created", "breakglass"):
            r.created, r.reason, r.first = ev.t, ev.get("reason"), ev
            if ev.kind == "breakglass":
                r.outcome, r.grant_id = "break-glass", ev.get("grant_id")
            continue
        r.decisions.append(ev)
        r.outcome = {"request_approved": "approved", "request_denied": "denied"}.get(
            ev.kind, ev.get("decision") or "expired")
    named = {e.get("request_id"): g.id for g in grants.values() for e in g.events
             if e.kind == "grant_activated" and e.get("request_id")}
    taken: set[str] = set()
    for r in reqs.values():
        r.grant_id = r.grant_id or named.get(r.id, "")
        if not r.grant_id:  # events before grant_activated named its request
            approvals = [d.t for d in r.decisions
                         if d.kind == "request_approved" and d.t is not None]
            if approvals:
                last = max(approvals)
                fits = [g for g in grants.values() if g.id not in taken and g.start is not None
                        and g.user == r.user and g.role == r.role
                        and any(e.get("issuer") == "host" for e in g.events)
                        and 0 <= g.start - last <= LINK_SECONDS]
                if fits:
                    r.grant_id = min(fits, key=lambda g: g.start or 0).id
        if r.grant_id in grants:
            grants[r.grant_id].request = r
            taken.add(r.grant_id)
    return reqs


