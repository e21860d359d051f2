"""Window arithmetic of scheduled access (issue 22 §2): how far ahead a grant may start,
the fixed window of a request asked for later, and what an approval grants of it.

Pure functions of (times, limits): the core applies them (hostd/core/scheduled.py,
hostd/core/requests.py). Times are UTC epoch seconds; a window is [start, end).
"""

from __future__ import annotations

from hostd.errors import JitError
from hostd.policy.durations import compact_duration


def is_scheduled(not_before: int, now: int) -> bool:
    """A verified grant waits (pending) while its start is ahead on this host's clock:
    the host, not the issuer, decides the second it begins."""
    return not_before > now


def check_lead(start: int, now: float, max_lead: int, leeway: int, role: str) -> None:
    """A start further ahead than the role's max_lead_time (plus the clock leeway) is
    refused as not_yet_valid, with both figures."""
    ahead = start - now
    if ahead > max_lead + leeway:
        raise JitError("not_yet_valid",
                       f"grant starts in {compact_duration(int(ahead))}; role {role} lets a "
                       f"grant be scheduled at most {compact_duration(max_lead)} ahead")


def request_window(start: int, duration: int, now: int, max_lead: int, max_ttl: int,
                   leeway: int, role: str) -> tuple[int, int, bool]:
    """The window a request fixes when it is made: (start, end, capped). A start in the
    past (beyond the leeway) is refused: nobody can be granted time already gone; one
    within the leeway starts now. The length is capped at max_ttl as for any request."""
    if duration <= 0:
        raise JitError("bad_request", "duration must be positive")
    if start < now - leeway:
        raise JitError("bad_request", "the start is in the past")
    start = max(start, now)
    check_lead(start, now, max_lead, leeway, role)
    length = min(duration, max_ttl)
    return start, start + length, length < duration


def granted_window(start: int, end: int, now: int) -> tuple[int, int] | None:
    """What an approval at `now` grants of [start, end): all of it before the start,
    what is left after it (the end never moves), nothing once it is over (None)."""
    if now >= end:
        return None
    return max(start, now), end
