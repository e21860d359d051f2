"""The last revocation list accepted per issuer (store migration 7), kept so a restart
neither forgets a lock nor accepts an older list (a rollback) than the one it had."""

from __future__ import annotations

from hostd.state.store import Store


def accepted(store: Store) -> dict[str, tuple[int, str, int]]:
    """issuer -> (seq, token, accepted_at) of every list accepted so far."""
    rows = store.db.execute("SELECT issuer, seq, token, accepted_at FROM revocation_lists")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def save(store: Store, issuer: str, seq: int, token: str, now: int) -> None:
    """Replace the issuer's list; the caller checked seq is not lower."""
    with store.transaction() as db:
        db.execute("INSERT INTO revocation_lists (issuer, seq, token, accepted_at) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT (issuer) DO UPDATE SET seq = "
                   "excluded.seq, token = excluded.token, accepted_at = excluded.accepted_at",
                   (issuer, seq, token, now))


def live_claims(store: Store) -> list[dict]:
    """What matching needs of every active grant, without decoding whole rows: the
    sweep asks this of up to 10,000 grants (store.grants took ~10x as long)."""
    rows = store.db.execute("SELECT id, issuer, jti, user, role, kid FROM grants "
                            "WHERE state = 'active'")
    return [dict(zip(("id", "issuer", "jti", "user", "role", "kid"), r, strict=True))
            for r in rows]
