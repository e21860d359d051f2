"""The ordered worker (hostd/server/worker.py): which jobs forget the accounts cache."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from types import SimpleNamespace

import pytest

from hostd.server.worker import Worker
from hostd.state.store import Store


class Core:
    """What the worker needs of the core: the store's connection (and its at_once, the
    real one) and the effects."""

    def __init__(self, path: str = ":memory:") -> None:
        self.store = SimpleNamespace(db=sqlite3.connect(path, check_same_thread=False,
                                                        isolation_level=None))
        self.store.at_once = lambda: Store.at_once(self.store)
        self.store.db.execute("CREATE TABLE t (x)")
        self.effects: list[str] = []

    def take_effects(self) -> list[str]:
        out, self.effects = self.effects, []
        return out


def test_run_forgets_accounts_and_run_store_keeps_them():
    core, forgotten, carried = Core(), [], []

    async def carry_out(effects):
        carried.extend(effects)

    def write(x):
        core.store.db.execute("INSERT INTO t VALUES (?)", (x,))
        core.effects.append(f"after {x}")
        return x

    async def main():
        w = Worker(core, carry_out, after_job=lambda: forgotten.append(1))
        try:
            changed = w.changed
            assert await w.run(write, 1) == 1  # any job may have run gpasswd
            assert forgotten == [1] and changed.is_set()
            changed = w.changed
            assert await w.run_store(write, 2) == 2  # the store only: the cache stays
            assert forgotten == [1] and changed.is_set()  # waiters still woken
            assert carried == ["after 1", "after 2"]

            def broken():
                raise ValueError("no")
            with pytest.raises(ValueError):
                await w.run_store(broken)
        finally:
            w.close()

    asyncio.run(main())


async def nothing_to_carry_out(effects) -> None:
    pass


def writer(core: Core, threads: list[int]):
    """A store job inserting x, noting which thread ran it."""
    def write(x):
        threads.append(threading.get_ident())
        core.store.db.execute("INSERT INTO t VALUES (?)", (x,))
        return x
    return write


def test_run_store_runs_on_the_loop_when_idle_and_in_order_behind_a_job():
    core, threads = Core(), []
    carry_out, write = nothing_to_carry_out, writer(core, threads)

    def slow(x):
        threading.Event().wait(0.2)
        return write(x)

    async def main():
        w = Worker(core, carry_out)
        try:
            assert await w.run_store(write, 1) == 1
            assert threads == [threading.get_ident()], "idle: no hand-over to the thread"
            first = asyncio.create_task(w.run(slow, 2))
            await asyncio.sleep(0.05)
            assert w.in_flight == 1
            assert await w.run_store(write, 3) == 3  # behind the job in flight: in turn
            await first
            assert threads[2] != threading.get_ident() and w.in_flight == 0
        finally:
            w.close()
        rows = [r[0] for r in core.store.db.execute("SELECT x FROM t ORDER BY rowid")]
        assert rows == [1, 2, 3]

    asyncio.run(main())


def test_run_store_waits_in_the_worker_while_another_connection_writes(tmp_path):
    path = str(tmp_path / "t.db")
    core = Core(path)
    core.store.db.execute("PRAGMA journal_mode=WAL")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another writer (the setgid walks' connection)
    threads: list[int] = []
    carry_out, write = nothing_to_carry_out, writer(core, threads)

    async def main():
        w = Worker(core, carry_out)
        try:
            asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
            assert await w.run_store(write, 7) == 7
            assert threads and threads[-1] != threading.get_ident(), "busy: the worker"
        finally:
            w.close()
        assert [r[0] for r in core.store.db.execute("SELECT x FROM t")] == [7]
        busy = core.store.db.execute("PRAGMA busy_timeout").fetchone()[0]
        assert busy == 5000, "the wait for the lock is back for every other job"

    asyncio.run(main())
