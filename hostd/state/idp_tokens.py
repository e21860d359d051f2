"""ID tokens already used on this host (store migration 6): an identity provider's token
activates a role once (issue 21 item 4), whether it became a grant or a request.

A token is known by (issuer, its jti, or sha256 of the token when it has none) and kept
until it could no longer verify anyway (`keep_until`: the later of its exp and its iat
plus max_token_age, plus the leeway), then pruned.
"""

from __future__ import annotations

import sqlite3

from hostd.state.store import Store


def use(store: Store, issuer: str, token_id: str, keep_until: int, used_for: str) -> bool:
    """Record the token's use; False when it was used before (replayed)."""
    try:
        with store.transaction() as db:
            db.execute("INSERT INTO idp_tokens (issuer, token_id, keep_until, used_for) "
                       "VALUES (?, ?, ?, ?)", (issuer, token_id, keep_until, used_for))
    except sqlite3.IntegrityError:
        return False
    return True


def set_used_for(store: Store, issuer: str, token_id: str, used_for: str) -> None:
    store.db.execute("UPDATE idp_tokens SET used_for = ? WHERE issuer = ? AND token_id = ?",
                     (used_for, issuer, token_id))


def forget(store: Store, issuer: str, token_id: str) -> None:
    """The activation it was recorded for failed: nothing was given, it may be used."""
    store.db.execute("DELETE FROM idp_tokens WHERE issuer = ? AND token_id = ?",
                     (issuer, token_id))


def used_for(store: Store, issuer: str, token_id: str) -> str | None:
    row = store.db.execute("SELECT used_for FROM idp_tokens WHERE issuer = ? AND "
                           "token_id = ?", (issuer, token_id)).fetchone()
    return None if row is None else row[0]


def prune(store: Store, now: int) -> int:
    """Forget tokens that can no longer verify; how many."""
    return store.db.execute("DELETE FROM idp_tokens WHERE keep_until < ?", (now,)).rowcount
