"""The ordered worker (hostd/server/worker.py): which jobs forget the accounts cache."""

from __future__ import annotations

import asyncio
import sqlite3
from types import SimpleNamespace

import pytest

from hostd.server.worker import Worker


class Core:
    """What the worker needs of the core: the store's connection and the effects."""

    def __init__(self) -> None:
        self.store = SimpleNamespace(db=sqlite3.connect(":memory:", check_same_thread=False))
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
