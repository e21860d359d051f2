"""Moderated roles (issue 23): a recorded session of such a role runs only while
enough moderators watch it. Pure: the rule as a state machine; hostd's watch ops
(hostd/server/watch.py) feed it the moderators present and carry out its action.

States: `waiting` (the command has not started), `running`, `paused` (output held,
input blocked, the command stopped), `ended`. Only moderators count, never
observers (an observer leaving must not end anything: Teleport's T#25667).
"""

from __future__ import annotations

from dataclasses import dataclass

WAITING, RUNNING, PAUSED, ENDED = "waiting", "running", "paused", "ended"
START, PAUSE, RESUME, TERMINATE = "start", "pause", "resume", "terminate"
ON_LEAVE = ("pause", "terminate")
GONE_AFTER = 5.0  # seconds without a frame from a moderator: its connection is gone


@dataclass(frozen=True)
class Moderation:
    """A role's `moderation = { watchers, on_leave, join_timeout }`."""

    watchers: int = 1
    on_leave: str = "pause"
    join_timeout: int = 300  # seconds: waiting, or paused, at most this long


def parse(t) -> Moderation:
    """The table read with config._Table's reader (`t`), checked."""
    watchers = t.get("watchers", int, 1)
    if not 1 <= watchers <= 10:
        raise t.fail("watchers", "must be between 1 and 10")
    m = Moderation(watchers=watchers, on_leave=t.choice("on_leave", ON_LEAVE, "pause"),
                   join_timeout=t.duration("join_timeout", 300))
    if m.join_timeout < 1:
        raise t.fail("join_timeout", "must be at least 1s")
    t.finish()
    return m


def step(m: Moderation, state: str, moderators: int, since: float,
         now: float) -> tuple[str, str | None, str]:
    """(next state, action or None, why) given the moderators watching now; `since`
    is when the current state began (a wait's or a pause's start)."""
    enough = moderators >= m.watchers
    if state == WAITING:
        if enough:
            return RUNNING, START, "a moderator joined"
        if now - since >= m.join_timeout:
            return ENDED, TERMINATE, f"no moderator joined within {m.join_timeout}s"
        return WAITING, None, ""
    if state == RUNNING:
        if enough:
            return RUNNING, None, ""
        if m.on_leave == "pause":
            return PAUSED, PAUSE, "the moderator left"
        return ENDED, TERMINATE, "the moderator left"
    if state == PAUSED:
        if enough:
            return RUNNING, RESUME, "a moderator returned"
        if now - since >= m.join_timeout:
            return ENDED, TERMINATE, f"no moderator returned within {m.join_timeout}s"
        return PAUSED, None, ""
    return ENDED, None, ""
