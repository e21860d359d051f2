"""Carrying out what the core says must follow a change: timers, warnings, endings,
notices (hostd/core/effects.py).

Nothing here holds up the op that made the change. Expiry timers are armed and
cancelled in the background, in order per grant (an arm then a cancel of the same
grant never swap); a failure becomes the `timer_failed` event, and the sweep is the
backstop, so an activation answers without waiting for systemd. Endings run in the
background too (SessionEnding); notices go to the side thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any

from hostd.core.effects import ArmTimer, CancelTimer, Effect, EndSessions, Notify
from hostd.core.lifecycle import Core
from hostd.server.sessions import SessionEnding
from hostd.state.timers import ExpiryTimers

log = logging.getLogger("jit-hostd")
MAX_NOTICES = 1024  # notice futures kept for access.request answers


class Effects:
    def __init__(self, core: Core, timers: ExpiryTimers, ending: SessionEnding,
                 notifier: Callable[[str, dict, list[str]], object] | None,
                 side: Executor) -> None:
        self.core, self.timers, self.ending = core, timers, ending
        self.notifier, self.side = notifier, side
        self._timer_tasks: dict[str, asyncio.Task] = {}  # grant id -> its last timer call
        # role request id -> how many approver terminals its notice reached (a future the
        # access.request handler takes, hostd/server/grants.py)
        self.notices: dict[str, asyncio.Future] = {}

    async def carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, ArmTimer):
                if effect.warn:  # not for a pending grant's start
                    self.ending.schedule_warnings(effect.grant_id, effect.exp)
                self._in_order(effect.grant_id, self._arm, effect.grant_id, effect.exp)
            elif isinstance(effect, CancelTimer):
                self.ending.cancel_warnings(effect.grant_id)
                self._in_order(effect.grant_id, self._cancel, effect.grant_id)
            elif isinstance(effect, EndSessions):
                self.ending.end_sessions(effect)
            elif isinstance(effect, Notify) and self.notifier is not None:
                told = asyncio.get_running_loop().run_in_executor(
                    self.side, self.notifier, effect.kind, effect.request,
                    list(effect.recipients))
                if effect.kind == "created" and effect.request.get("kind") == "role":
                    self._keep_notice(effect.request["id"], told)

    def _keep_notice(self, request_id: str, told: asyncio.Future) -> None:
        """Kept for access.request's answer; bounded: answered or abandoned ones go."""
        if len(self.notices) >= MAX_NOTICES:
            for rid in [r for r, f in self.notices.items() if f.done()]:
                del self.notices[rid]
        if len(self.notices) < MAX_NOTICES:
            self.notices[request_id] = told

    def _in_order(self, grant_id: str, fn: Callable[..., Coroutine[Any, Any, None]],
                  *args: Any) -> asyncio.Task:
        """Run fn(*args) in the background once the grant's previous timer call is done."""
        before = self._timer_tasks.get(grant_id)

        async def step() -> None:
            if before is not None:
                await asyncio.wait({before})
            await fn(*args)

        task = asyncio.get_running_loop().create_task(step())
        self._timer_tasks[grant_id] = task

        def done(t: asyncio.Task) -> None:
            if self._timer_tasks.get(grant_id) is t:
                del self._timer_tasks[grant_id]

        task.add_done_callback(done)
        return task

    async def settled(self) -> None:
        """Once every timer call asked for so far is done (for shutdown and tests)."""
        while self._timer_tasks:
            await asyncio.wait(set(self._timer_tasks.values()))

    async def _arm(self, grant_id: str, exp: int) -> None:
        try:
            await self.timers.arm(grant_id, exp)
        except Exception as exc:  # the sweep is the backstop; never fail an activation
            self.core.events.emit("timer_failed", f"could not arm expiry timer: {exc}",
                                  grant_id=grant_id)

    async def _cancel(self, grant_id: str) -> None:
        try:
            await self.timers.cancel(grant_id)
        except Exception as exc:  # a stale timer only asks for an expiry that changes nothing
            log.warning("could not cancel the expiry timer of %s: %s", grant_id, exc)

    async def arm_missing(self, live: list[tuple[str, int]]) -> None:
        """At start: warnings for every live grant, and a timer for each that has none,
        one at a time, soonest first (the order `live` comes in)."""
        for grant_id, exp in live:  # warnings live in this process: every start sets them
            self.ending.schedule_warnings(grant_id, exp)
        armed = await self.timers.armed()
        for grant_id, exp in live:
            if grant_id not in armed:
                await self._in_order(grant_id, self._arm, grant_id, exp)

    def close(self) -> None:
        for task in self._timer_tasks.values():
            task.cancel()
