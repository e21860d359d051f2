"""`jit idp refresh [NAME]`: fetch one or every OIDC issuer's discovery document and JWKS,
check them (hostd/fetch/jwks.py) and write the cache (hostd/fetch/cache.py). A failure of
any step keeps the last good keys, records the error in state.json and logs an event."""

from __future__ import annotations

import time
from collections.abc import Callable

from hostd.errors import JitError
from hostd.fetch import cache, http, jwks
from hostd.fetch.issuers import FetchedIssuer
from hostd.paths import Paths
from hostd.state.journal import Events


def fetch_keys(issuer: FetchedIssuer) -> tuple[dict, dict, int]:
    """(discovery, checked JWKS, seconds fresh) from the network, or FetchError."""
    discovery, _ = http.get_json(issuer.discovery_url)
    jwks.check_discovery(discovery, issuer.issuer)
    doc, answer = http.get_json(discovery["jwks_uri"])
    checked = jwks.check_jwks(doc, list(issuer.algorithms))
    return discovery, checked, jwks.max_age(answer.headers.get("cache-control"))


def refresh_issuer(paths: Paths, issuer: FetchedIssuer, events: Events,
                   clock: Callable[[], float] = time.time) -> dict:
    """Refresh one issuer; the answer says what happened (never raises for the network:
    a failure is written to state.json and logged, the old keys stay)."""
    now = clock()
    try:
        discovery, keys, ttl = fetch_keys(issuer)
    except JitError as exc:
        state = cache.store_failure(paths, issuer.name, exc.message, now)
        events.emit("idp_refresh_failed",
                    f"IdP issuer {issuer.name} keys not refreshed (last good keys kept): "
                    f"{exc.message}", issuer=issuer.name, reason=exc.message)
        return {"issuer": issuer.name, "ok": False, "error": exc.message, **state}
    state = cache.store_success(paths, issuer.name, discovery, keys, now, ttl)
    cache.store_public(paths, issuer.name, issuer.issuer, issuer.client_id, discovery)
    kids = [str(k.get("kid", "")) for k in keys["keys"]]
    events.emit("idp_refreshed",
                f"IdP issuer {issuer.name} keys refreshed: {len(kids)} key(s) "
                f"{', '.join(kids)}; fresh for {ttl} s", issuer=issuer.name, count=len(kids))
    return {"issuer": issuer.name, "ok": True, "keys": kids, **state}


def due(paths: Paths, issuer: FetchedIssuer, now: float) -> bool:
    """Never fetched, past expires_at, or the last attempt failed: the timer's pick."""
    state = cache.read_state(paths, issuer.name)
    expires = state["expires_at"]
    return (not isinstance(expires, (int, float)) or now >= expires
            or state["last_error"] is not None)


def status(paths: Paths, issuer: FetchedIssuer, now: float) -> dict:
    """What `jit idp status` shows of one issuer: cache age, keys, expiry, last error."""
    state = cache.read_state(paths, issuer.name)
    doc = cache.read_json(cache.issuer_dir(paths, issuer.name) / "jwks.json") or {}
    keys = [k for k in doc.get("keys", []) if isinstance(k, dict)]
    fetched = state["fetched_at"]
    return {"issuer": issuer.name, "url": issuer.issuer,
            "age": None if fetched is None else round(now - fetched, 1),
            "keys": [{"kid": k.get("kid"),
                      "algorithms": [a for a in issuer.algorithms if jwks.usable_for(k, a)]}
                     for k in keys],
            "expired": state["expires_at"] is not None and now >= state["expires_at"],
            **state}
