"""The state database's schema: forward-only migrations, one per schema version, applied
in order by Store.migrate (each in its own transaction with the version bump). A
migration is never edited once released; a change is a new one appended here."""

from __future__ import annotations

from hostd.state import schedule

MIGRATIONS: list[str] = [
    # 1: grants, memberships applied, seen token ids
    """
    CREATE TABLE grants (
        id TEXT PRIMARY KEY,
        jti TEXT NOT NULL,
        issuer TEXT NOT NULL,
        user TEXT NOT NULL,
        uid INTEGER NOT NULL,
        role TEXT NOT NULL,
        groups TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        exp INTEGER NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        ticket TEXT NOT NULL DEFAULT '',
        approved_by TEXT NOT NULL DEFAULT '[]',
        hosts TEXT NOT NULL DEFAULT '[]',
        state TEXT NOT NULL CHECK (state IN ('active', 'expired', 'revoked', 'failed')),
        activated_at INTEGER NOT NULL,
        ended_at INTEGER,
        end_reason TEXT NOT NULL DEFAULT '',
        ended_by TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX grants_state_exp ON grants (state, exp);
    CREATE INDEX grants_user_state ON grants (user, state);
    CREATE TABLE seen_tokens (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        exp INTEGER NOT NULL,
        grant_id TEXT NOT NULL,
        PRIMARY KEY (issuer, jti)
    );
    CREATE TABLE memberships (
        grant_id TEXT NOT NULL REFERENCES grants (id),
        user TEXT NOT NULL,
        grp TEXT NOT NULL,
        standing INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'removed', 'kept')),
        PRIMARY KEY (grant_id, grp)
    );
    CREATE INDEX memberships_user_grp ON memberships (user, grp, state);
    """,
    # 2: access requests and approvals (roles now; sudo commands later, bound to a subject)
    """
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('role', 'command')),
        user TEXT NOT NULL,
        uid INTEGER NOT NULL,
        role TEXT NOT NULL,
        duration INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL,
        ticket TEXT NOT NULL DEFAULT '',
        subject TEXT NOT NULL DEFAULT '',
        subject_digest TEXT NOT NULL DEFAULT '',
        needed INTEGER NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used', 'failed')),
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL,
        decided_at INTEGER,
        grant_id TEXT NOT NULL DEFAULT '',
        outcome TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX requests_state ON requests (state, expires);
    CREATE TABLE approvals (
        request_id TEXT NOT NULL REFERENCES requests (id),
        approver TEXT NOT NULL,
        uid INTEGER NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('approve', 'deny')),
        comment TEXT NOT NULL DEFAULT '',
        at INTEGER NOT NULL,
        PRIMARY KEY (request_id, approver)
    );
    """,
    # 3: login sessions the PAM module registered, and the grants live when each opened
    """
    CREATE TABLE login_sessions (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        sid TEXT,
        uid INTEGER NOT NULL,
        user TEXT NOT NULL,
        pid INTEGER NOT NULL,
        tty TEXT NOT NULL DEFAULT '',
        service TEXT NOT NULL DEFAULT '',
        rhost TEXT NOT NULL DEFAULT '',
        opened INTEGER NOT NULL,
        closed INTEGER
    );
    CREATE INDEX login_sessions_open ON login_sessions (closed, pid);
    CREATE TABLE login_session_grants (
        session_key INTEGER NOT NULL REFERENCES login_sessions (key),
        grant_id TEXT NOT NULL REFERENCES grants (id),
        PRIMARY KEY (grant_id, session_key)
    );
    """,
    # 4: endings stated but not yet carried out (EndSessions), written with the grant's
    # end, deleted once carried out: a hostd killed in between finishes them at start
    """
    CREATE TABLE pending_endings (
        grant_id TEXT PRIMARY KEY REFERENCES grants (id),
        uid INTEGER NOT NULL,
        user TEXT NOT NULL,
        role TEXT NOT NULL,
        gids TEXT NOT NULL,
        mode TEXT NOT NULL,
        reason TEXT NOT NULL,
        ended_by TEXT NOT NULL,
        ended_at INTEGER NOT NULL,
        boot_id TEXT NOT NULL DEFAULT ''
    );
    """,
    # 5: setgid walks owed by ended group grants (hostd/server/setgid_walks.py), written
    # with the grant's end, their progress as they go, deleted once walked. No boot id:
    # files, unlike processes, outlive a reboot.
    """
    CREATE TABLE setgid_walks (
        grant_id TEXT PRIMARY KEY REFERENCES grants (id),
        uid INTEGER NOT NULL,
        user TEXT NOT NULL,
        gids TEXT NOT NULL,
        since INTEGER NOT NULL,
        ended_at INTEGER NOT NULL,
        position TEXT NOT NULL DEFAULT '[]'
    );
    """,
    # 6: identity providers' ID tokens used (hostd/state/idp_tokens.py): once each
    "CREATE TABLE idp_tokens (issuer TEXT NOT NULL, token_id TEXT NOT NULL, keep_until "
    "INTEGER NOT NULL, used_for TEXT NOT NULL, PRIMARY KEY (issuer, token_id))",
    # 7: each grant's verifying kid, the last revocation list per issuer (revstore.py)
    "ALTER TABLE grants ADD COLUMN kid TEXT NOT NULL DEFAULT ''; CREATE TABLE revocation_lists "
    "(issuer TEXT PRIMARY KEY, seq INTEGER NOT NULL, token TEXT NOT NULL, accepted_at INTEGER "
    "NOT NULL);",
    schedule.MIGRATION,  # 8: scheduled grants, request windows (schedule.py)
]
