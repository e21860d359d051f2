"""The login-session registry in the store (migration 3)."""

from __future__ import annotations

from hostd.state.store import Store

GRANT = {"id": "0123456789ab", "jti": "j1", "issuer": "corp", "user": "alice", "uid": 1001,
         "role": "console", "groups": ["docker"], "not_before": 0, "exp": 2_000_000_000,
         "state": "active", "activated_at": 1, "approved_by": [], "hosts": []}


def row(pid: int, user: str = "alice", sid: str | None = "3", opened: int = 100) -> dict:
    return {"sid": sid, "uid": 1001, "user": user, "pid": pid, "tty": "tty1",
            "service": "login", "opened": opened}


def test_sessions_of_grant_open_close_and_listing(tmp_path):
    store = Store(tmp_path / "state.db")
    store.insert_grant(GRANT, [("docker", False)])
    store.open_login_session(row(10), [GRANT["id"]])
    store.open_login_session(row(11, sid=None), [])
    assert [s["pid"] for s in store.sessions_of_grant(GRANT["id"])] == [10]
    assert store.sessions_of_grant(GRANT["id"])[0] == {
        "id": "3", "uid": 1001, "user": "alice", "pid": 10, "tty": "tty1", "opened": 100,
        "closed": None}
    assert store.close_login_session("bob", 10, 150) is None  # another user's pid
    assert store.close_login_session("alice", 10, 150)["closed"] == 150
    assert store.close_login_session("alice", 10, 160) is None  # already closed
    assert store.sessions_of_grant(GRANT["id"])[0]["closed"] == 150
    listed = store.login_sessions()
    assert [(s["pid"], s["id"], s["grants"]) for s in listed] == [(11, None, [])]
    assert [s["pid"] for s in store.login_sessions(open_only=False)] == [10, 11]
    assert store.login_sessions(user="bob") == []
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again


def test_sessions_of_gone_processes_are_closed(tmp_path):
    store = Store(tmp_path / "state.db")
    store.open_login_session(row(20), [])
    store.open_login_session(row(21), [])
    gone = store.close_gone_sessions(lambda pid: pid == 21, 300)
    assert [(g["pid"], g["closed"]) for g in gone] == [(20, 300)]
    assert [s["pid"] for s in store.login_sessions()] == [21]
    assert store.close_gone_sessions(lambda pid: True, 400) == []


def test_at_once_commits_skip_the_checkpoint_and_the_sweep_does_it(tmp_path):
    store = Store(tmp_path / "state.db")
    wal = tmp_path / "state.db-wal"

    def register(pids: range) -> None:
        for pid in pids:
            with store.at_once():
                store.open_login_session(row(pid), [])

    register(range(2000, 2600))  # ~1,200 WAL pages: past the automatic 1,000
    grown = wal.stat().st_size
    assert grown > 1000 * 4096, "no automatic checkpoint inside at_once"
    assert store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
    store.checkpoint()  # what the periodic sweep does
    register(range(3000, 3600))  # the WAL is written again from its start
    assert wal.stat().st_size <= grown * 1.1, "checkpointed: the WAL did not double"
    assert len(store.login_sessions()) == 1200
