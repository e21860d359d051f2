"""Scheduled grants in the store: verified now, started later (issue 22 §2).

A grant whose `nbf` lies ahead is kept in `scheduled_grants` until its start; its token
id goes into `seen_tokens` when it is scheduled, so the same token cannot be activated
a second time while it waits. At the start `promote` moves it into `grants` in ONE
transaction (the row marked started, the grant and its intended memberships written),
keeping the pending grant's id: `jit revoke ID`, the timer and the events all name one
id from scheduling to expiry. Requests carry their fixed window (`starts`, `ends`; 0:
none) from the same migration.

This module owns the SQL; the Store (hostd/state/store.py) appends MIGRATION to its
list. It does not import the store (the store imports it), so it is typed against the
two things it uses.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import AbstractContextManager
from typing import Protocol

MIGRATION = """
    CREATE TABLE scheduled_grants (
        id TEXT PRIMARY KEY,
        jti TEXT NOT NULL,
        issuer TEXT NOT NULL,
        user TEXT NOT NULL,
        uid INTEGER NOT NULL,
        role TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        exp INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        ticket TEXT NOT NULL DEFAULT '',
        approved_by TEXT NOT NULL DEFAULT '[]',
        hosts TEXT NOT NULL DEFAULT '[]',
        kid TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'started', 'cancelled', 'dropped')),
        scheduled_at INTEGER NOT NULL,
        ended_at INTEGER,
        end_reason TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX scheduled_state_start ON scheduled_grants (state, not_before);
    ALTER TABLE requests ADD COLUMN starts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE requests ADD COLUMN ends INTEGER NOT NULL DEFAULT 0
"""

COLUMNS = ("id", "jti", "issuer", "user", "uid", "role", "not_before", "exp", "reason",
           "ticket", "approved_by", "hosts", "kid", "state", "scheduled_at")
_JSON = ("approved_by", "hosts")


class _Store(Protocol):
    db: sqlite3.Connection

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


def _row(row: sqlite3.Row | None) -> dict | None:
    if row is None:
        return None
    out = dict(row)
    for col in _JSON:
        out[col] = json.loads(out[col])
    return out


def add(store: _Store, row: dict) -> None:
    """Keep a verified grant until its start, with its token id (so it is used once).
    sqlite3.IntegrityError when the token id was seen already (the caller: replayed)."""
    values = {c: row[c] for c in COLUMNS if c in row}
    for col in _JSON:
        values[col] = json.dumps(list(values[col]))
    cols = list(values)
    with store.transaction() as db:
        db.execute("INSERT INTO seen_tokens (issuer, jti, exp, grant_id) VALUES (?, ?, ?, ?)",
                   (row["issuer"], row["jti"], row["exp"], row["id"]))
        db.execute(f"INSERT INTO scheduled_grants ({', '.join(cols)}) "  # noqa: S608 - fixed
                   f"VALUES ({', '.join('?' for _ in cols)})", [values[c] for c in cols])


def get(store: _Store, grant_id: str) -> dict | None:
    return _row(store.db.execute("SELECT * FROM scheduled_grants WHERE id = ?",
                                 (grant_id,)).fetchone())


def pending(store: _Store, user: str | None = None) -> list[dict]:
    """Grants waiting for their start, soonest first (a user's own, or all)."""
    sql, args = "SELECT * FROM scheduled_grants WHERE state = 'pending'", []
    if user is not None:
        sql += " AND user = ?"
        args.append(user)
    return [_row(r) for r in store.db.execute(sql + " ORDER BY not_before, id", args)]


def due(store: _Store, now: int) -> list[str]:
    return [r[0] for r in store.db.execute(
        "SELECT id FROM scheduled_grants WHERE state = 'pending' AND not_before <= ? "
        "ORDER BY not_before", (now,))]


def starts(store: _Store) -> list[tuple[str, int]]:
    """(id, not_before) of every pending grant: the timers to arm at start-up."""
    return [(r[0], r[1]) for r in store.db.execute(
        "SELECT id, not_before FROM scheduled_grants WHERE state = 'pending' "
        "ORDER BY not_before")]


def finish(store: _Store, grant_id: str, state: str, now: int, reason: str) -> bool:
    """Cancelled or dropped: True if it was still pending (once only)."""
    with store.transaction() as db:
        return db.execute(
            "UPDATE scheduled_grants SET state = ?, ended_at = ?, end_reason = ? "
            "WHERE id = ? AND state = 'pending'", (state, now, reason, grant_id)).rowcount == 1


def promote(store: _Store, grant_id: str, grant: dict, memberships: list[tuple[str, bool]],
            columns: tuple[str, ...]) -> None:
    """The start, atomically: the pending row marked started, the grant written with its
    intended memberships (as Store.insert_grant does; the token id is already seen).
    sqlite3.IntegrityError if it started already."""
    row = dict(grant)
    for col in ("groups", *_JSON):
        row[col] = json.dumps(list(row[col]))
    cols = [c for c in columns if c in row]
    with store.transaction() as db:
        if db.execute("UPDATE scheduled_grants SET state = 'started', ended_at = ? "
                      "WHERE id = ? AND state = 'pending'",
                      (row["activated_at"], grant_id)).rowcount != 1:
            raise sqlite3.IntegrityError(f"scheduled grant {grant_id} is not pending")
        db.execute(f"INSERT INTO grants ({', '.join(cols)}) "  # noqa: S608 - fixed names
                   f"VALUES ({', '.join('?' for _ in cols)})", [row[c] for c in cols])
        db.executemany(
            "INSERT INTO memberships (grant_id, user, grp, standing, state) "
            "VALUES (?, ?, ?, ?, 'pending')",
            [(grant_id, row["user"], grp, int(standing)) for grp, standing in memberships])

