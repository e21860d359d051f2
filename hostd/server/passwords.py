"""Password checks, fair per user: one user's wrong passwords stop nobody else's sudo.

PAM checks run in hostd's auth threads (four). Before, each wrong password held a
thread for pam_unix's ~2 s fail delay, so one user sending ten wrong passwords a second
filled all four and everyone's sudo waited behind them until the plugin gave up
(10 s: "cannot reach the access daemon"). Now:

- a user holds at most one check at a time: their other checks wait behind their own
  (a per-uid lock on the loop), never in the shared pool;
- the fail delay is not slept in a thread: libpam hands it back (state/pamauth.py) and
  it is applied here, to that caller's answer, while the user's turn is still held, so
  a user's guesses stay one per fail delay however many sudo processes they start;
- a check whose sudo has gone (its connection closed) is dropped before it runs, and
  its delay is cut short;
- a check that waits too long behind the user's own (QUEUE_WAIT, under the plugin's
  10 s answer bound), or finds QUEUE_DEPTH already waiting, is refused with a message
  that says why (`busy`), instead of timing out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

from hostd.errors import JitError
from hostd.state.pamauth import Verdict

QUEUE_WAIT = 8.0  # seconds behind one's own checks; the plugin waits 10 s for an answer
QUEUE_DEPTH = 8  # checks of one user waiting at once


class Gone(Exception):
    """The sudo that asked has closed its connection: nobody reads the answer."""


class PasswordChecks:
    """Per-user turns in front of the auth pool."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self._turns: dict[int, asyncio.Lock] = {}
        self._waiting: dict[int, int] = {}

    def waiting(self, uid: int) -> int:
        """Checks of this user queued or running now (for tests and the benchmark)."""
        return self._waiting.get(uid, 0)

    async def check(self, uid: int, run: Callable[[], Verdict],
                    gone: asyncio.Future | None = None) -> Verdict:
        """`run` (PAM, in the pool) in this user's turn; its fail delay applied before
        the answer, inside the turn. Gone if `gone` completes first (sudo left)."""
        if self._waiting.get(uid, 0) >= QUEUE_DEPTH:
            raise JitError("busy", f"{QUEUE_DEPTH} password checks of yours are already "
                                   "waiting (each wrong password costs a delay); try "
                                   "again in a few seconds")
        turn = self._turns.setdefault(uid, asyncio.Lock())
        self._waiting[uid] = self._waiting.get(uid, 0) + 1
        try:
            await self._take(turn, gone)
            try:
                verdict = await asyncio.get_running_loop().run_in_executor(self.pool, run)
                if not verdict.ok and verdict.delay > 0:
                    await _until(asyncio.sleep(verdict.delay), gone)
                return verdict
            finally:
                turn.release()
        finally:
            self._waiting[uid] -= 1
            if not self._waiting[uid]:
                del self._waiting[uid]
                if not turn.locked():
                    self._turns.pop(uid, None)

    @staticmethod
    async def _take(turn: asyncio.Lock, gone: asyncio.Future | None) -> None:
        """The user's turn, within QUEUE_WAIT and while the sudo is still there."""
        acquire = asyncio.ensure_future(turn.acquire())
        waits = {acquire} | ({gone} if gone is not None else set())
        await asyncio.wait(waits, timeout=QUEUE_WAIT, return_when=asyncio.FIRST_COMPLETED)
        if acquire.done() and not acquire.cancelled():
            if gone is not None and gone.done():
                turn.release()
                raise Gone()
            return
        acquire.cancel()
        if gone is not None and gone.done():
            raise Gone()
        raise JitError("busy", "your earlier password checks are still running (each "
                               "wrong password costs a delay); try again in a few seconds")


async def _until(work, gone: asyncio.Future | None) -> None:
    """`work`, cut short when the sudo goes."""
    task = asyncio.ensure_future(work)
    waits = {task} | ({gone} if gone is not None else set())
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
