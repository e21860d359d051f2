"""An ending survives hostd being killed: the core records the EndSessions it states
in the same transaction as the grant's end (pending_endings, migration 4); the server
deletes the row once it has carried the ending out; at start, every row left by a
killed hostd is carried out the same way, and one from an earlier boot is dropped."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace

import pytest
from fakes import FakeTimers
from test_core import HOUR, World
from test_residue import put, status

from hostd.core.effects import EndSessions
from hostd.paths import Paths
from hostd.server import residue
from hostd.server.connections import Server
from hostd.state.store import MIGRATIONS, Store

DOCKER = 2003  # FakeAccounts.gid_of("docker"): 2000 + its place in name order


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    world.core.boot_id = "this-boot"
    world.server = Server(world.core, FakeTimers(), paths=Paths.for_root(tmp_path))
    yield world
    world.server.close()
    world.store.close()


def rows(w) -> list[dict]:
    return w.store.pending_endings()


def ends(w) -> list[EndSessions]:
    return [e for e in w.core.take_effects() if isinstance(e, EndSessions)]


def keep_sessions(w, make_config) -> None:
    cfg = make_config()
    cfg.roles["docker"] = replace(cfg.roles["docker"], on_expiry="keep-sessions")
    w.core.config = cfg


def carry(w, effects: list) -> None:
    """What the server does with effects, waiting for the background endings."""
    async def go() -> None:
        await w.server.carry_out(effects)
        while w.server.ending._ending_tasks:
            await asyncio.gather(*w.server.ending._ending_tasks)
    asyncio.run(go())


# --- the store ---------------------------------------------------------------------------

def test_a_version_3_database_gains_the_table_and_keeps_its_grants(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO grants (id, jti, issuer, user, uid, role, groups, not_before, "
               "exp, state, activated_at) VALUES ('g1', 'j', 'corp', 'alice', 1000, "
               "'docker', '[\"docker\"]', 1, 2, 'active', 1)")
    db.close()
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS) >= 4
        assert store.pending_endings() == []
        assert store.get_grant("g1")["state"] == "active"
    finally:
        store.close()


# --- written with the grant's end ----------------------------------------------------------

def test_expiry_records_the_ending_with_everything_it_needs(w):
    g = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.core.take_effects()
    w.clock.t += HOUR
    assert w.core.expire(g["id"])
    (e,) = ends(w)
    ended = w.store.get_grant(g["id"])
    assert rows(w) == [{"grant_id": g["id"], "uid": 1000, "user": "alice", "role": "ops",
                        "gids": e.gids, "mode": "terminate-sessions", "reason": "expired",
                        "ended_by": "hostd", "ended_at": ended["ended_at"],
                        "boot_id": "this-boot"}]
    assert [x.grant_id for x in w.core.pending_endings()] == [g["id"]]
    assert w.core.pending_endings() == [e], "the row gives back the very effect"


def test_revocation_and_a_policy_change_record_theirs_too(w, make_config):
    a = w.activate(role="docker", exp=w.mint.now + HOUR)
    b = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.core.revoke(a["id"], 1000, "done")
    cfg = make_config()
    cfg.roles.pop("ops")
    w.core.config = cfg
    w.core.end_unsupported()
    got = {r["grant_id"]: (r["reason"], r["ended_by"]) for r in rows(w)}
    assert got == {a["id"]: ("revoked", "alice"), b["id"]: ("policy changed", "hostd")}
    def by_id(effects: list[EndSessions]) -> list[EndSessions]:
        return sorted(effects, key=lambda e: e.grant_id)
    assert by_id(w.core.pending_endings()) == by_id(ends(w))


def test_a_failed_activation_records_no_ending(w, monkeypatch):
    def broken(user: str, group: str) -> None:
        raise RuntimeError("gpasswd broke")
    monkeypatch.setattr(w.accounts, "add", broken)
    with pytest.raises(RuntimeError):
        w.activate(role="docker", exp=w.mint.now + HOUR)
    assert [g["state"] for g in w.store.grants(state=None)] == ["failed"]
    assert rows(w) == []


def test_the_row_and_the_end_are_one_transaction(w):
    """If the ending cannot be recorded, the grant does not end either (it stays active,
    its group in place, and the next sweep tries again): never an end without its row."""
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON pending_endings "
                       "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    w.clock.t += HOUR
    with pytest.raises(sqlite3.IntegrityError):
        w.core.expire(g["id"])
    assert w.store.get_grant(g["id"])["state"] == "active"
    assert "alice" in w.accounts.members["docker"]
    w.store.db.execute("DROP TRIGGER refuse")
    w.core.take_effects()
    assert w.core.sweep() == [g["id"]]
    assert [r["grant_id"] for r in rows(w)] == [g["id"]]


# --- deleted once carried out ---------------------------------------------------------------

def test_the_row_is_gone_once_the_ending_is_carried_out(w, make_config, tmp_path):
    assert w.accounts.gid_of("docker") == DOCKER
    keep_sessions(w, make_config)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    put(tmp_path / "proc", 300, status(1000, (1000, DOCKER)), b"sleep\x00300\x00")
    w.clock.t += HOUR

    async def go() -> None:
        assert await w.server.worker.run(w.core.expire, g["id"])
        assert [r["grant_id"] for r in rows(w)] == [g["id"]], "recorded before carried out"
        await asyncio.gather(*w.server.ending._ending_tasks)
    asyncio.run(go())
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_PIDS"] == "300"
    assert rows(w) == []


def test_a_failed_carry_out_leaves_the_row_for_the_next_start(w, monkeypatch):
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.clock.t += HOUR
    w.core.expire(g["id"])

    async def broken(e: EndSessions) -> None:
        raise OSError("no /proc")
    monkeypatch.setattr(w.server.ending, "_end", broken)
    carry(w, w.core.take_effects())
    assert [r["grant_id"] for r in rows(w)] == [g["id"]]


# --- carried out at start -------------------------------------------------------------------

def test_what_a_killed_hostd_left_is_carried_out_at_start(w, make_config, tmp_path):
    keep_sessions(w, make_config)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.clock.t += HOUR
    w.core.expire(g["id"])
    w.core.take_effects()  # hostd killed here: the effect was lost with it
    put(tmp_path / "proc", 300, status(1000, (1000, DOCKER)), b"sleep\x00300\x00")
    put(tmp_path / "proc", 301, status(1000, (1000,)), b"bash\x00")
    w.server.close()
    w.server = Server(w.core, FakeTimers(), paths=Paths.for_root(tmp_path))  # the next start
    pending = w.core.pending_endings()
    assert [e.grant_id for e in pending] == [g["id"]]
    carry(w, pending)
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_PIDS"] == "300"
    assert ev["JIT_REASON"] == "expired"
    assert rows(w) == [] and w.core.pending_endings() == []


def test_a_group_given_back_since_is_rechecked_at_start_too(w, make_config, tmp_path):
    """alice holds docker again through a live grant: her processes hold it rightly."""
    keep_sessions(w, make_config)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.clock.t += HOUR
    w.core.expire(g["id"])
    w.activate(role="docker", exp=w.mint.now + 3 * HOUR)
    w.core.take_effects()
    put(tmp_path / "proc", 300, status(1000, (DOCKER,)), b"sleep\x00")
    carry(w, w.core.pending_endings())
    assert w.events("privilege_residue") == []
    assert rows(w) == []


def test_a_row_of_an_earlier_boot_is_dropped_and_an_unknown_boot_kept(w):
    a = w.activate(role="docker", exp=w.mint.now + HOUR)
    b = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.core.boot_id = "old-boot"
    w.core.revoke(a["id"], 0)
    w.core.boot_id = ""  # a sandbox without /proc: unknown, so carried out
    w.core.revoke(b["id"], 0)
    w.core.take_effects()
    w.core.boot_id = "this-boot"
    assert [e.grant_id for e in w.core.pending_endings()] == [b["id"]]
    assert [r["grant_id"] for r in rows(w)] == [b["id"]]


def test_boot_id_is_read_under_the_proc_root(tmp_path):
    assert residue.boot_id(tmp_path / "proc") == ""
    f = tmp_path / "proc" / "sys" / "kernel" / "random" / "boot_id"
    f.parent.mkdir(parents=True)
    f.write_text("6f1c0d6e-6a4e-4b8e-9f51-0c5d3f6f2a10\n")
    assert residue.boot_id(tmp_path / "proc") == "6f1c0d6e-6a4e-4b8e-9f51-0c5d3f6f2a10"
