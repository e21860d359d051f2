"""The store commits durably before hostd touches /etc/group (DESIGN §13, State)."""

from __future__ import annotations

from hostd.state.store import Store


def test_commits_are_synchronous_full(tmp_path):
    """Regression: with synchronous=NORMAL in WAL mode a power cut could lose an intent
    row whose gpasswd change survived, leaving a membership that never expires."""
    store = Store(tmp_path / "state.db")
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


def test_reopened_store_is_full_too(tmp_path):
    Store(tmp_path / "state.db").close()
    store = Store(tmp_path / "state.db")
    try:
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store.close()
