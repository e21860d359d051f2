"""store: versioned schema, WAL, intent records, replay refused at the database."""

from __future__ import annotations

import sqlite3
import stat

import pytest

from hostd.state.store import MIGRATIONS, Store

NOW = 1_800_000_000


def grant_row(gid: str = "g1", jti: str = "j1", issuer: str = "corp", user: str = "alice",
              exp: int = NOW + 3600, **extra) -> dict:
    row = {"id": gid, "jti": jti, "issuer": issuer, "user": user, "uid": 1000,
           "role": "docker", "groups": ["docker"], "not_before": NOW, "exp": exp,
           "reason": "deploy", "ticket": "T-1", "approved_by": ["bob"], "hosts": ["web-*"],
           "state": "active", "activated_at": NOW}
    row.update(extra)
    return row


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "var/lib/jit/state.db"


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


def tables(store: Store) -> set[str]:
    return {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_new_database_has_the_latest_schema(store, db_path):
    assert store.schema_version == len(MIGRATIONS)
    assert {"grants", "seen_tokens", "memberships"} <= tables(store)
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_wal_mode(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopen_is_idempotent_and_keeps_data(store, db_path):
    store.insert_grant(grant_row(), [("docker", False)])
    store.close()
    again = Store(db_path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert again.get_grant("g1")["groups"] == ["docker"]
        again.migrate()  # nothing left to apply
        assert again.schema_version == len(MIGRATIONS)
    finally:
        again.close()


def test_newer_schema_is_refused(store, db_path):
    store.db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    store.close()
    with pytest.raises(RuntimeError, match="newer"):
        Store(db_path)


def test_insert_and_read_back(store):
    store.insert_grant(grant_row(), [("docker", False), ("adm", True)])
    g = store.get_grant("g1")
    assert (g["state"], g["approved_by"], g["hosts"], g["ended_at"]) == (
        "active", ["bob"], ["web-*"], None)
    assert [(m["grp"], m["standing"], m["state"]) for m in store.memberships("g1")] == [
        ("adm", 1, "pending"), ("docker", 0, "pending")]


REPLAYS = [
    ("same-issuer-same-jti", {"gid": "g2"}, True),
    ("other-issuer-same-jti", {"gid": "g2", "issuer": "other"}, False),
    ("same-issuer-other-jti", {"gid": "g2", "jti": "j2"}, False),
]


@pytest.mark.parametrize("second,replay", [r[1:] for r in REPLAYS], ids=[r[0] for r in REPLAYS])
def test_token_id_is_unique_per_issuer(second, replay, store):
    store.insert_grant(grant_row(), [("docker", False)])
    if replay:
        with pytest.raises(sqlite3.IntegrityError):
            store.insert_grant(grant_row(**second), [("docker", False)])
        # nothing of the refused grant was written
        assert store.get_grant("g2") is None
        assert store.memberships("g2") == []
    else:
        store.insert_grant(grant_row(**second), [("docker", False)])
        assert store.get_grant("g2")["state"] == "active"


def test_forget_token_allows_a_retry(store):
    store.insert_grant(grant_row(), [])
    store.end_grant("g1", "failed", NOW, "activation failed", "hostd")
    store.forget_token("corp", "j1")
    store.insert_grant(grant_row(gid="g2"), [])
    assert [g["id"] for g in store.grants("active")] == ["g2"]


def test_end_grant_only_once(store):
    store.insert_grant(grant_row(), [])
    assert store.end_grant("g1", "revoked", NOW + 5, "done", "alice") is True
    assert store.end_grant("g1", "expired", NOW + 9, "expired", "hostd") is False
    g = store.get_grant("g1")
    assert (g["state"], g["ended_at"], g["end_reason"], g["ended_by"]) == (
        "revoked", NOW + 5, "done", "alice")


def test_invalid_states_refused_by_the_schema(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.insert_grant(grant_row(state="bogus"), [])
    store.insert_grant(grant_row(gid="g2", jti="j2"), [("docker", False)])
    with pytest.raises(sqlite3.IntegrityError):
        store.set_membership("g2", "docker", "bogus")


def test_due_and_live_grants(store):
    store.insert_grant(grant_row("early", "j1", exp=NOW + 10), [])
    store.insert_grant(grant_row("late", "j2", exp=NOW + 20), [])
    store.insert_grant(grant_row("ended", "j3", exp=NOW + 5), [])
    store.end_grant("ended", "revoked", NOW, "", "root")
    assert store.due_grants(NOW + 9) == []
    assert store.due_grants(NOW + 10) == ["early"]
    assert store.live_grants() == [("early", NOW + 10), ("late", NOW + 20)]


def test_live_holders_and_unfinished(store):
    store.insert_grant(grant_row("a", "j1"), [("docker", False)])
    store.insert_grant(grant_row("b", "j2"), [("docker", False)])
    store.set_membership("a", "docker", "applied")
    assert [h["grant_id"] for h in store.live_holders("alice", "docker")] == ["a", "b"]
    assert [h["grant_id"] for h in store.live_holders("alice", "docker", exclude="a")] == ["b"]
    assert store.live_holders("bob", "docker") == []
    # b is still pending (a crash mid-activation); a is applied and live: finished
    assert [m["grant_id"] for m in store.unfinished()] == ["b"]
    store.set_membership("b", "docker", "applied")
    store.end_grant("a", "expired", NOW, "expired", "hostd")
    # a ended with its membership still applied: reconcile must release it
    assert [(m["grant_id"], m["grant_state"]) for m in store.unfinished()] == [("a", "expired")]
    assert [m["grant_id"] for m in store.active_memberships()] == ["b"]


def test_prune_seen(store):
    store.insert_grant(grant_row("a", "j1", exp=NOW - 100), [])
    store.insert_grant(grant_row("b", "j2", exp=NOW + 100), [])
    store.prune_seen(NOW)
    seen = [r[0] for r in store.db.execute("SELECT jti FROM seen_tokens ORDER BY jti")]
    assert seen == ["j2"]


def test_transaction_rolls_back_on_error(store):
    with pytest.raises(ZeroDivisionError), store.transaction() as db:
        db.execute("INSERT INTO seen_tokens VALUES ('corp', 'jx', 1, 'gx')")
        raise ZeroDivisionError
    assert store.db.execute("SELECT count(*) FROM seen_tokens").fetchone()[0] == 0
