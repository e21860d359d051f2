"""Durable state: SQLite in WAL mode, a versioned schema with forward-only migrations.

Intent is written here before /etc/group is touched, so a crash at any point leaves a
record that the reconcile at start can finish or undo. Only hostd opens this file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hostd.state.migrations import MIGRATIONS

__all__ = ["GRANT_COLUMNS", "MIGRATIONS", "Store"]

BUSY_TIMEOUT = 5.0  # seconds a write waits for another connection's (the setgid walks')

GRANT_COLUMNS = (
    "id", "jti", "issuer", "user", "uid", "role", "groups", "not_before", "exp", "reason",
    "ticket", "approved_by", "hosts", "state", "activated_at", "ended_at", "end_reason",
    "ended_by", "kid",
)
_JSON_COLUMNS = ("groups", "approved_by", "hosts")


class Store:
    """A thin, synchronous wrapper: hostd is single-threaded, so one connection serves."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        new = not path.exists()
        if new:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # hostd's ordered worker thread uses this connection after start; one thread at a
        # time, never two (the loop reads through its own read-only connection).
        self.db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT,
                                  check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is on disk before hostd touches /etc/group. With NORMAL a
        # power cut could lose an intent row whose gpasswd change survived: a membership
        # nothing would ever expire. Measured cost: ~0.5 ms per activation (3 commits,
        # each an fsync of the WAL; benchmarks/store_sync.py).
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    @classmethod
    def reader(cls, path: Path) -> Store:
        """A read-only connection for the event loop: WAL lets it read while the worker
        writes, so listings never wait behind a change."""
        store = cls.__new__(cls)
        store.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                   timeout=5.0)
        store.db.row_factory = sqlite3.Row
        return store

    def close(self) -> None:
        self.db.close()

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def migrate(self) -> None:
        """Apply pending migrations, each in its own transaction with the version bump."""
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise RuntimeError(f"state.db schema {version} is newer than this hostd")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # grants ---------------------------------------------------------------------------

    @staticmethod
    def _grant(row: sqlite3.Row | None) -> dict | None:
        if row is None:
            return None
        out = dict(row)
        for col in _JSON_COLUMNS:
            out[col] = json.loads(out[col])
        return out

    def insert_grant(self, grant: dict, memberships: list[tuple[str, bool]]) -> None:
        """Record a grant, its token id and the memberships it intends, atomically.
        sqlite3.IntegrityError on a token id already seen (the caller maps it to replayed)."""
        row = dict(grant)
        for col in _JSON_COLUMNS:
            row[col] = json.dumps(list(row[col]))
        cols = [c for c in GRANT_COLUMNS if c in row]
        with self.transaction() as db:
            db.execute("INSERT INTO seen_tokens (issuer, jti, exp, grant_id) VALUES (?, ?, ?, ?)",
                       (row["issuer"], row["jti"], row["exp"], row["id"]))
            db.execute(f"INSERT INTO grants ({', '.join(cols)}) "  # noqa: S608 - fixed names
                       f"VALUES ({', '.join('?' for _ in cols)})", [row[c] for c in cols])
            db.executemany(
                "INSERT INTO memberships (grant_id, user, grp, standing, state) "
                "VALUES (?, ?, ?, ?, 'pending')",
                [(row["id"], row["user"], grp, int(standing)) for grp, standing in memberships],
            )

    def get_grant(self, grant_id: str) -> dict | None:
        return self._grant(self.db.execute("SELECT * FROM grants WHERE id = ?",
                                           (grant_id,)).fetchone())

    def grants(self, state: str | None = "active", user: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM grants WHERE 1=1", []
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        return [self._grant(r) for r in self.db.execute(sql + " ORDER BY exp, id", args)]

    def due_grants(self, now: int) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT id FROM grants WHERE state = 'active' AND exp <= ? ORDER BY exp", (now,))]

    def count_live(self) -> int:
        return self.db.execute("SELECT count(*) FROM grants WHERE state = 'active'").fetchone()[0]

    def live_grants(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self.db.execute(
            "SELECT id, exp FROM grants WHERE state = 'active' ORDER BY exp")]

    def end_grant(self, grant_id: str, state: str, now: int, reason: str, by: str,
                  ending: dict | None = None) -> bool:
        """Mark a grant ended (intent first); False if it had already ended. `ending`
        (the columns of pending_endings but grant_id and ended_at) is recorded in the
        same transaction: what the end must still do is never lost once it is over."""
        sql = ("UPDATE grants SET state = ?, ended_at = ?, end_reason = ?, ended_by = ? "
               "WHERE id = ? AND state = 'active'")
        if ending is None:
            return self.db.execute(sql, (state, now, reason, by, grant_id)).rowcount == 1
        with self.transaction() as db:
            if db.execute(sql, (state, now, reason, by, grant_id)).rowcount != 1:
                return False
            db.execute(
                "INSERT OR REPLACE INTO pending_endings (grant_id, uid, user, role, gids, "
                "mode, reason, ended_by, ended_at, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)", (grant_id, ending["uid"], ending["user"], ending["role"],
                          json.dumps([list(g) for g in ending["gids"]]), ending["mode"],
                          ending["reason"], ending["ended_by"], now, ending.get("boot_id", "")))
            if ending["gids"]:  # a group grant: the setgid walk is owed too
                db.execute(
                    "INSERT OR REPLACE INTO setgid_walks (grant_id, uid, user, gids, since, "
                    "ended_at) SELECT id, ?, ?, ?, activated_at, ? FROM grants WHERE id = ?",
                    (ending["uid"], ending["user"],
                     json.dumps([list(g) for g in ending["gids"]]), now, grant_id))
        return True

    def pending_endings(self) -> list[dict]:
        """Endings stated and not yet carried out, oldest first; `gids` as (name, gid)."""
        out = []
        for r in self.db.execute("SELECT * FROM pending_endings ORDER BY ended_at, grant_id"):
            row = dict(r)
            row["gids"] = tuple((str(n), int(g)) for n, g in json.loads(row["gids"]))
            out.append(row)
        return out

    def forget_ending(self, grant_id: str) -> None:
        """The ending was carried out: nothing is left to do at the next start."""
        self.db.execute("DELETE FROM pending_endings WHERE grant_id = ?", (grant_id,))

    def setgid_walks(self) -> list[dict]:
        """Setgid walks owed, oldest end first; `gids` as (name, gid), `position` as the
        (mount point, top-level name) walked so far, ("", "") for none."""
        out = []
        for r in self.db.execute("SELECT * FROM setgid_walks ORDER BY ended_at, grant_id"):
            row = dict(r)
            row["gids"] = tuple((str(n), int(g)) for n, g in json.loads(row["gids"]))
            pos = json.loads(row["position"])
            row["position"] = (str(pos[0]), str(pos[1])) if len(pos) == 2 else ("", "")
            out.append(row)
        return out

    def walk_progress(self, grant_ids: list[str], position: tuple[str, str]) -> None:
        self.db.executemany("UPDATE setgid_walks SET position = ? WHERE grant_id = ?",
                            [(json.dumps(list(position)), g) for g in grant_ids])

    def forget_walk(self, grant_id: str) -> None:
        self.db.execute("DELETE FROM setgid_walks WHERE grant_id = ?", (grant_id,))

    def grant_of_token(self, issuer: str, jti: str) -> str | None:
        row = self.db.execute("SELECT grant_id FROM seen_tokens WHERE issuer = ? AND jti = ?",
                              (issuer, jti)).fetchone()
        return row[0] if row else None

    def forget_token(self, issuer: str, jti: str) -> None:
        """Undo a failed activation's token record so the same grant may be retried."""
        self.db.execute("DELETE FROM seen_tokens WHERE issuer = ? AND jti = ?", (issuer, jti))

    def prune_seen(self, before: int) -> None:
        """Token ids of grants long expired cannot be replayed anyway (exp is checked)."""
        self.db.execute("DELETE FROM seen_tokens WHERE exp < ?", (before,))

    # memberships ----------------------------------------------------------------------

    def memberships(self, grant_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM memberships WHERE grant_id = ? ORDER BY grp", (grant_id,))]

    def set_membership(self, grant_id: str, grp: str, state: str) -> None:
        self.db.execute("UPDATE memberships SET state = ? WHERE grant_id = ? AND grp = ?",
                        (state, grant_id, grp))

    def live_holders(self, user: str, grp: str, exclude: str = "") -> list[dict]:
        """Membership rows of the user's active grants for a group (other than `exclude`)."""
        return [dict(r) for r in self.db.execute(
            "SELECT m.* FROM memberships m JOIN grants g ON g.id = m.grant_id "
            "WHERE m.user = ? AND m.grp = ? AND g.state = 'active' AND m.grant_id != ?",
            (user, grp, exclude))]

    def leftovers(self, user: str, grp: str) -> list[dict]:
        """Memberships ended grants added and could not take back yet (failed gpasswd -d):
        they are not the user's own, whatever /etc/group says."""
        return [dict(r) for r in self.db.execute(
            "SELECT m.* FROM memberships m JOIN grants g ON g.id = m.grant_id "
            "WHERE m.user = ? AND m.grp = ? AND g.state != 'active' AND m.standing = 0 "
            "AND m.state IN ('applied', 'pending')", (user, grp))]

    def unfinished(self) -> list[dict]:
        """Rows a crash may have left: pending ones, and applied ones of ended grants."""
        return [dict(r) for r in self.db.execute(
            "SELECT m.*, g.state AS grant_state FROM memberships m "
            "JOIN grants g ON g.id = m.grant_id "
            "WHERE m.state = 'pending' OR (m.state = 'applied' AND g.state != 'active')")]

    def active_memberships(self) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT m.* FROM memberships m JOIN grants g ON g.id = m.grant_id "
            "WHERE g.state = 'active' AND m.state = 'applied'")]

    # requests and approvals -----------------------------------------------------------

    def insert_request(self, req: dict) -> None:
        cols = list(req)
        self.db.execute(f"INSERT INTO requests ({', '.join(cols)}) "  # noqa: S608 - fixed names
                        f"VALUES ({', '.join('?' for _ in cols)})", [req[c] for c in cols])

    def get_request(self, request_id: str) -> dict | None:
        row = self.db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        return dict(row) if row else None

    def requests(self, states: tuple[str, ...] | None = None, since: int = 0) -> list[dict]:
        sql, args = "SELECT * FROM requests WHERE created >= ?", [since]
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args += list(states)
        return [dict(r) for r in self.db.execute(sql + " ORDER BY created, id", args)]

    def add_decision(self, request_id: str, approver: str, uid: int, decision: str,
                     comment: str, now: int) -> None:
        """sqlite3.IntegrityError if this approver already decided: one voice each."""
        self.db.execute("INSERT INTO approvals (request_id, approver, uid, decision, comment, at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (request_id, approver, uid, decision, comment, now))

    def decisions(self, request_id: str) -> list[dict]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM approvals WHERE request_id = ? ORDER BY at, approver", (request_id,))]

    def set_request_state(self, request_id: str, state: str, now: int, *, expect: str,
                          grant_id: str = "", outcome: str = "") -> bool:
        """Move a request from `expect` to `state`; False if someone got there first."""
        cur = self.db.execute(
            "UPDATE requests SET state = ?, decided_at = ?, grant_id = ?, outcome = ? "
            "WHERE id = ? AND state = ?", (state, now, grant_id, outcome, request_id, expect))
        return cur.rowcount == 1

    # login sessions (pam.open_session / pam.close_session) ------------------------------

    def checkpoint(self) -> None:
        """Copy the WAL back into the database without waiting for anyone (PASSIVE):
        the commits of at_once jobs skip the automatic checkpoint, so the periodic
        sweep does it for them and the WAL stays small."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """No wait for the write lock and no automatic checkpoint (which copies the WAL
        and fsyncs): for a short job run on hostd's event loop (Worker.run_store), which
        must never block. A database another connection is writing raises
        sqlite3.OperationalError ("database is locked") before anything changed."""
        self.db.execute("PRAGMA busy_timeout=0")
        self.db.execute("PRAGMA wal_autocheckpoint=0")
        try:
            yield
        finally:
            self.db.execute("PRAGMA wal_autocheckpoint=1000")
            self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")

    @contextmanager
    def _relaxed(self) -> Iterator[None]:
        """Commits without an fsync each (synchronous=NORMAL; WAL stays consistent): a
        login session ends with the machine, so a power cut can only lose rows about
        sessions that no longer exist. Saves an fsync (~5 ms) per login and logout."""
        self.db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous=FULL")

    def open_login_session(self, row: dict, grant_ids: list[str]) -> int:
        """Register a session and the grants live as it opened, atomically; its key."""
        with self._relaxed(), self.transaction() as db:
            cur = db.execute(
                "INSERT INTO login_sessions (sid, uid, user, pid, tty, service, rhost, opened) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (row.get("sid"), row["uid"], row["user"], row["pid"], row.get("tty", ""),
                 row.get("service", ""), row.get("rhost", ""), row["opened"]))
            key = int(cur.lastrowid)
            db.executemany("INSERT INTO login_session_grants (session_key, grant_id) "
                           "VALUES (?, ?)", [(key, g) for g in grant_ids])
        return key

    def close_login_session(self, user: str, pid: int, now: int) -> dict | None:
        """Mark the newest open session of `user` opened by `pid` closed; None if none.
        PAM opens and closes a session in the same process (login, sshd, su)."""
        row = self.db.execute(
            "SELECT * FROM login_sessions WHERE user = ? AND pid = ? AND closed IS NULL "
            "ORDER BY key DESC LIMIT 1", (user, pid)).fetchone()
        if row is None:
            return None
        with self._relaxed():
            self.db.execute("UPDATE login_sessions SET closed = ? WHERE key = ?",
                            (now, row["key"]))
        return dict(row, closed=now)

    def has_open_session(self, user: str, pid: int) -> bool:
        """Whether `pid` holds an open session of `user` (close_login_session's row)."""
        return self.db.execute("SELECT 1 FROM login_sessions WHERE user = ? AND pid = ? AND "
                               "closed IS NULL LIMIT 1", (user, pid)).fetchone() is not None

    def close_gone_sessions(self, alive, now: int) -> list[dict]:
        """Close open sessions whose PAM process is gone without a close (a crash, a
        power cut): `alive(pid)` says whether it still runs. The closed rows."""
        gone = [dict(r) for r in self.db.execute(
            "SELECT * FROM login_sessions WHERE closed IS NULL ORDER BY key")
            if not alive(r["pid"])]
        if gone:
            with self._relaxed(), self.transaction() as db:
                db.executemany("UPDATE login_sessions SET closed = ? WHERE key = ?",
                               [(now, r["key"]) for r in gone])
        return [dict(r, closed=now) for r in gone]

    @staticmethod
    def _session(row: sqlite3.Row) -> dict:
        return {"id": row["sid"], "uid": row["uid"], "user": row["user"], "pid": row["pid"],
                "tty": row["tty"], "opened": row["opened"], "closed": row["closed"]}

    def sessions_of_grant(self, grant_id: str) -> list[dict]:
        """Sessions registered while the grant was live (id, uid, user, pid, tty, opened,
        closed); `id` is the logind session id, None when the session had none."""
        return [self._session(r) for r in self.db.execute(
            "SELECT s.* FROM login_sessions s JOIN login_session_grants l "
            "ON l.session_key = s.key WHERE l.grant_id = ? ORDER BY s.key", (grant_id,))]

    def login_sessions(self, user: str | None = None, open_only: bool = True) -> list[dict]:
        """Registered sessions, newest last, each with service, rhost and its grant ids."""
        sql, args = "SELECT * FROM login_sessions WHERE 1=1", []
        if open_only:
            sql += " AND closed IS NULL"
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        out = []
        for r in self.db.execute(sql + " ORDER BY key", args).fetchall():
            grants = [g[0] for g in self.db.execute(
                "SELECT grant_id FROM login_session_grants WHERE session_key = ? "
                "ORDER BY grant_id", (r["key"],))]
            out.append(dict(self._session(r), service=r["service"], rhost=r["rhost"],
                            grants=grants))
        return out
