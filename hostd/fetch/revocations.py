"""`jit revocations fetch`: pull each issuer's [revocation] url (CONTRACTS §C) with
If-None-Match, write a changed body atomically to `<state>/revocations/NAME.jwt` (not
verified here: hostd verifies the list), its ETag to NAME.etag and the outcome to
NAME.fetch.json. A 304 leaves the list alone; a failure keeps the last list."""

from __future__ import annotations

import time
from collections.abc import Callable

from hostd.errors import JitError
from hostd.fetch import cache, http
from hostd.fetch.issuers import FetchedIssuer
from hostd.paths import Paths
from hostd.state.journal import Events

MAX_LIST_BYTES = 1 << 20


def _status(paths: Paths, name: str) -> dict:
    doc = cache.read_json(paths.revocations_fetch_dir / f"{name}.fetch.json") or {}
    return {k: doc.get(k) for k in ("fetched_at", "last_attempt_at", "last_error",
                                    "last_error_at", "changed_at")}


def due(paths: Paths, issuer: FetchedIssuer, now: float) -> bool:
    """Whether `refresh` has passed since the last attempt (the timer runs more often)."""
    last = _status(paths, issuer.name)["last_attempt_at"]
    return not isinstance(last, (int, float)) or now - last >= issuer.revocation_refresh - 2


def _etag(paths: Paths, name: str) -> str | None:
    try:
        tag = (paths.revocations_fetch_dir / f"{name}.etag").read_text().strip()
    except OSError:
        return None
    return tag if tag and tag.isprintable() else None


def pull(paths: Paths, issuer: FetchedIssuer, events: Events,
         clock: Callable[[], float] = time.time) -> dict:
    """Pull one issuer's list; the answer says whether it changed (never raises for
    the network: a failure is recorded and logged, the last list stays)."""
    assert issuer.revocation_url
    now = clock()
    d = cache.private_dir(paths.revocations_fetch_dir)
    status = _status(paths, issuer.name)
    status["last_attempt_at"] = now
    tag = _etag(paths, issuer.name) if (d / f"{issuer.name}.jwt").exists() else None
    try:
        r = http.request("GET", issuer.revocation_url, max_bytes=MAX_LIST_BYTES,
                         headers={"If-None-Match": tag} if tag else {})
        if r.status not in (200, 304):
            raise http.FetchError(f"{issuer.revocation_url}: HTTP {r.status}")
    except JitError as exc:
        status.update(last_error=exc.message, last_error_at=now)
        cache.write_json(d / f"{issuer.name}.fetch.json", status)
        events.emit("revocations_fetch_failed",
                    f"revocation list of issuer {issuer.name} not pulled (last list kept): "
                    f"{exc.message}", issuer=issuer.name, reason=exc.message)
        return {"issuer": issuer.name, "ok": False, "changed": False, **status}
    changed = r.status == 200
    if changed:
        cache.write_atomic(d / f"{issuer.name}.jwt", r.body)
        new_tag = r.headers.get("etag", "")
        if new_tag and new_tag.isprintable() and len(new_tag) < 1024:
            cache.write_atomic(d / f"{issuer.name}.etag", new_tag.encode())
        else:
            (d / f"{issuer.name}.etag").unlink(missing_ok=True)
        status["changed_at"] = now
    status.update(fetched_at=now, last_error=None, last_error_at=None)
    cache.write_json(d / f"{issuer.name}.fetch.json", status)
    return {"issuer": issuer.name, "ok": True, "changed": changed, "status": r.status,
            **status}
