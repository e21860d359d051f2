"""Name look-ups for the event loop: a bounded cache with a short TTL, filled off the loop.

sudo.check, pam.account, grant.list and login.list are answered on hostd's loop, and
each needs a user's name, uid or groups. Through NSS (sssd, LDAP) one look-up can take
seconds, and a loop that waits on it holds up every other client. So the loop never
calls NSS: it asks this cache, whose misses run in a small thread pool of their own
(not the ordered worker, which must not queue changes behind a slow directory, and not
the loop), and concurrent misses for the same key share one look-up.

TTL: TTL seconds (5). Long enough to absorb a burst (one sudo invocation asks for the
same user three or four times: check, password, intercepted commands; a login asks
pam.account and then pam.open_session), short enough to add nothing that matters to
what sssd (entry_cache_timeout 5400 s) and nscd (group positive TTL 3600 s) already
keep. An expired entry is a miss: a stale answer is never served while a fresh one is
looked up, since these answers decide who may sudo and log in.

Changes hostd makes itself are never hidden: the worker calls `invalidate()` after each
job it runs (any job may have run gpasswd), before the op that asked for it answers,
and a look-up that was in flight while the change ran is returned to its caller but
not kept (the generation it started in is gone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from hostd.state.accounts import Account, Accounts

TTL = 5.0  # seconds an answer is reused
MAX_ENTRIES = 4096  # answers kept; the oldest goes first


class AccountsCache:
    """The look-ups of `Accounts` that the loop needs, as coroutines."""

    def __init__(self, accounts: Accounts, pool: Executor, ttl: float = TTL,
                 max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.accounts = accounts
        self.pool = pool
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[tuple, tuple[float, Any]] = {}  # key -> (fresh until, answer)
        self._inflight: dict[tuple, asyncio.Future] = {}  # (generation, *key) -> look-up
        self._generation = 0

    async def user_by_uid(self, uid: int) -> str | None:
        return await self._get(("user_by_uid", uid), self.accounts.user_by_uid, uid)

    async def uid_of(self, user: str) -> int | None:
        return await self._get(("uid_of", user), self.accounts.uid_of, user)

    async def groups_of(self, user: str) -> frozenset[str]:
        return await self._get(("groups_of", user), _frozen(self.accounts.groups_of), user)

    async def account(self, spec: str) -> Account | None:
        return await self._get(("account", spec), self.accounts.account, spec)

    def invalidate(self) -> None:
        """Forget every answer, and keep none of the look-ups in flight now."""
        self._entries.clear()
        self._generation += 1

    async def _get(self, key: tuple, lookup: Callable[[Any], Any], arg: Any) -> Any:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > self.clock():
            return entry[1]
        flight = (self._generation, *key)
        future = self._inflight.get(flight)
        if future is None:
            future = asyncio.get_running_loop().run_in_executor(self.pool, lookup, arg)
            self._inflight[flight] = future
            future.add_done_callback(lambda f: self._settle(flight, key, f))
        return await asyncio.shield(future)

    def _settle(self, flight: tuple, key: tuple, future: asyncio.Future) -> None:
        self._inflight.pop(flight, None)
        if future.cancelled() or future.exception() is not None:
            return  # a failure is not an answer: the next caller asks again
        if flight[0] != self._generation:
            return  # hostd changed accounts meanwhile: the answer may predate it
        self._entries.pop(key, None)  # re-inserted last: the oldest stay first
        self._entries[key] = (self.clock() + self.ttl, future.result())
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]


def _frozen(fn: Callable[[str], set[str]]) -> Callable[[str], frozenset[str]]:
    """Shared answers must not be changed by one of their callers."""
    return lambda user: frozenset(fn(user))
