"""The ordered worker: every change hostd makes runs here, one at a time, in order.

gpasswd and SQLite writes never race and never hold up the event loop. A job returns
what the core says must follow (effects: timers, notices, endings), handed to
`carry_out` on the loop once the job is done. A job that wrote to the store wakes the
waiters on `changed` (access.wait, sudo.wait), which read again; SQLite's
total_changes tells, so a job that changed nothing wakes nobody.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hostd.core.effects import Effect
from hostd.core.lifecycle import Core


class Worker:
    def __init__(self, core: Core, carry_out: Callable[[list[Effect]], Awaitable[None]],
                 after_job: Callable[[], None] = lambda: None) -> None:
        """`after_job`: called on the loop after every job, before its effects (the
        accounts cache forgets what a gpasswd may have changed)."""
        self.core = core
        self.carry_out = carry_out
        self.after_job = after_job
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-changes")
        self._changed = asyncio.Event()
        self.in_flight = 0  # jobs handed to the thread and not finished (the loop's count)

    @property
    def changed(self) -> asyncio.Event:
        """Set once the store changes; take it *before* reading, so no wake-up is lost."""
        return self._changed

    async def run(self, fn: Callable[..., Any], *args: object) -> Any:
        """Call fn in the worker, then carry out what it said must follow."""
        return await self._run(fn, args, True)

    async def run_store(self, fn: Callable[..., Any], *args: object) -> Any:
        """`run` for a short job that writes hostd's store and nothing else (the login
        session registry): it cannot have changed a name or a group, so `after_job`
        (the accounts cache's invalidation) is skipped, and the next login's look-ups
        stay answered from the cache instead of a thread each. When no job is in
        flight it runs here on the loop, still one at a time and in order, unless the
        database is being written by another connection: a login then does not pay
        two thread hand-overs (~0.2 ms of pam.open_session's ~0.6 ms)."""
        if self.in_flight == 0:
            done, value = self._at_once(fn, args)
            if done:
                await self.carry_out(self.core.take_effects())  # a store job's: none
                return value
        return await self._run(fn, args, False)

    def _at_once(self, fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
        """(True, its value), or (False, None) when the database was busy and nothing
        changed (the worker then runs it, waiting for the lock as every job does)."""
        store = self.core.store
        before = store.db.total_changes
        try:
            with store.at_once():
                value = fn(*args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False, None  # (extended codes keep the primary in the low byte)
            raise
        if store.db.total_changes != before:
            self._changed.set()
            self._changed = asyncio.Event()
        return True, value

    async def _run(self, fn: Callable[..., Any], args: tuple, after: bool) -> Any:
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            failure, value, effects, wrote = await loop.run_in_executor(
                self.pool, self._job, fn, args)
        finally:
            self.in_flight -= 1
        if after:
            self.after_job()
        if wrote:
            self._changed.set()
            self._changed = asyncio.Event()
        await self.carry_out(effects)
        if failure is not None:
            raise failure
        return value

    def _job(self, fn: Callable[..., Any], args: tuple) -> tuple[BaseException | None, Any,
                                                                 list[Effect], bool]:
        before = self.core.store.db.total_changes
        try:
            value, failure = fn(*args), None
        except Exception as exc:
            value, failure = None, exc
        wrote = self.core.store.db.total_changes != before
        return failure, value, self.core.take_effects(), wrote

    def close(self) -> None:
        """Let the job under way finish (a gpasswd is never cut in half)."""
        self.pool.shutdown(wait=True)
