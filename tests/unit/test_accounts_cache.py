"""hostd/state/accounts_cache.py: the loop's name look-ups, cached for a short TTL and
looked up in a pool of their own; never hiding a change hostd made itself."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fakes import FakeAccounts
from test_core import World
from test_server import FakeTimers, line

from hostd.server.connections import Server
from hostd.server.ops import Caller
from hostd.state.accounts_cache import AccountsCache


class Counting(FakeAccounts):
    """FakeAccounts that counts look-ups and can hold them until released."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, object]] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def groups_of(self, user: str) -> set[str]:
        self.asked.append(("groups_of", user))
        self.entered.set()
        self.threads.add(threading.current_thread().name)
        self.release.wait(10)
        return super().groups_of(user)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def cache():
    accounts, clock = Counting(), Clock()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-nss") as pool:
        yield AccountsCache(accounts, pool, ttl=5.0, max_entries=3, clock=clock)


def test_a_miss_is_looked_up_in_the_pool_and_kept_for_the_ttl(cache):
    async def go() -> tuple:
        first = await cache.groups_of("alice")
        again = await cache.groups_of("alice")
        cache.clock.t += 5.0
        later = await cache.groups_of("alice")
        return first, again, later
    first, again, later = asyncio.run(go())
    assert first == again == later == frozenset({"alice"})
    assert cache.accounts.asked == [("groups_of", "alice")] * 2, "once per TTL"
    assert all(n.startswith("test-nss") for n in cache.accounts.threads), "never the loop"


def test_concurrent_misses_share_one_look_up(cache):
    cache.accounts.release.clear()

    async def go() -> list:
        asks = [asyncio.ensure_future(cache.groups_of("alice")) for _ in range(5)]
        await asyncio.sleep(0)
        cache.accounts.release.set()
        return await asyncio.gather(*asks)
    assert len(set(asyncio.run(go()))) == 1
    assert cache.accounts.asked == [("groups_of", "alice")]


def test_invalidate_forgets_and_keeps_no_answer_that_was_in_flight(cache):
    """A look-up under way while hostd changes a group may predate the change: its
    caller gets it (it asked before), nobody after the change does."""
    cache.accounts.release.clear()

    async def go() -> tuple:
        before = asyncio.ensure_future(cache.groups_of("alice"))
        await asyncio.sleep(0)
        cache.accounts.members["docker"].add("alice")  # gpasswd ran...
        cache.invalidate()  # ...and the worker's job is done
        cache.accounts.release.set()
        await before
        return await cache.groups_of("alice")
    assert "docker" in asyncio.run(go())
    assert len(cache.accounts.asked) == 2


def test_the_cache_is_bounded(cache):
    async def go() -> None:
        for user in ("root", "alice", "bob", "carol"):
            await cache.groups_of(user)
        await cache.groups_of("root")  # the oldest went first
    asyncio.run(go())
    assert [u for _, u in cache.accounts.asked] == ["root", "alice", "bob", "carol", "root"]


def test_a_failed_look_up_is_not_kept(cache):
    calls = []

    def broken(user: str) -> set[str]:
        calls.append(user)
        raise OSError("sssd went away")

    cache.accounts.groups_of = broken

    async def go() -> None:
        for _ in range(2):
            with pytest.raises(OSError):
                await cache.groups_of("alice")
    asyncio.run(go())
    assert calls == ["alice", "alice"]


def test_a_group_hostd_adds_is_seen_by_the_next_check(tmp_path, config, host, mint):
    """Root-facing: the server's own gpasswd (through the worker) is never hidden by a
    cached answer, even within the TTL."""
    world = World(tmp_path, config, host, mint)
    srv = Server(world.core, FakeTimers(), names_ttl=3600)

    async def go() -> tuple:
        before = await srv.names.groups_of("alice")
        answer = (await srv.dispatch(line("grant.activate", token=world.token()),
                                     Caller(1000, 1, 1000)))[1]
        after = await srv.names.groups_of("alice")
        await srv.effects.settled()
        return before, answer, after
    before, answer, after = asyncio.run(go())
    srv.close()
    world.store.close()
    assert answer["ok"] and "docker" not in before and "docker" in after


def test_status_answers_while_a_name_look_up_hangs(tmp_path, config, host, mint):
    """A directory that does not answer holds up the look-up, never the loop."""
    world = World(tmp_path, config, host, mint)
    world.accounts = Counting()
    world.core.accounts = world.accounts
    srv = Server(world.core, FakeTimers())
    world.accounts.release.clear()

    async def go() -> tuple:
        login = asyncio.create_task(srv.dispatch(line("pam.account", user="alice"),
                                                 Caller(0, 1, 0)))
        await asyncio.get_running_loop().run_in_executor(None, world.accounts.entered.wait,
                                                         10)
        status = (await srv.dispatch(line("status"), Caller(1000, 1, 1000)))[1]
        stuck = not login.done()
        world.accounts.release.set()
        return status, stuck, (await login)[1]
    status, stuck, login = asyncio.run(go())
    srv.close()
    world.store.close()
    assert status["ok"] and stuck and login["ok"], login
