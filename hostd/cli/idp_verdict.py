"""`jit idp test`'s offline verdict: the same checks hostd makes, from issuers.d and the
key cache read directly, minus what needs hostd's state (the caller, replay).

The claims are shown before anything is verified (they are readable by anyone holding
the token); which rules they match is shown even when the verdict is a refusal, so an
administrator sees both "signature fine, no rule matches" and "rule matches, key stale".
"""

from __future__ import annotations

from hostd.errors import JitError
from hostd.paths import client_paths
from hostd.policy import config as config_mod
from hostd.policy import idp, idptoken
from hostd.state.idpcache import IdpCache


def _rules(issuer: idp.OidcIssuer | None, claims: dict) -> list[dict]:
    if issuer is None:
        return []
    try:
        found = idp.matched_rules(issuer, claims)
    except idp.ClaimError:
        return []
    return [{"index": i, "claim": r.claim, "value": r.value, "match": r.match,
             "roles": list(r.roles), "matched": list(hits)} for i, r, hits in found]


def _roles(cfg: config_mod.Config, issuer: idp.OidcIssuer | None, claims: dict) -> list[str]:
    if issuer is None:
        return []
    try:
        mapped = idp.roles_for(issuer, claims)
    except idp.ClaimError:
        return []
    return sorted(r for r in mapped if r in cfg.roles and issuer.name in cfg.roles[r].issuers)


def verdict(token: str, name: str | None, now: float) -> dict:
    """{"ok", "code", "message", "issuer", "claims", "rules", "roles", "verdict"}."""
    paths = client_paths()
    cfg = config_mod.load(paths)
    answer: dict = {"ok": False, "issuer": None, "claims": None, "rules": [], "roles": []}
    try:
        token, header, claims = idptoken.decode_unverified(token)
        answer.update(claims=claims, header=header)
        issuer = idptoken.pick_issuer(claims, cfg.oidc, name)
        answer.update(issuer=issuer.name, rules=_rules(issuer, claims),
                      roles=_roles(cfg, issuer, claims))
        cache = IdpCache(paths.idp_dir, trusted_from=paths.root)
        tok = idptoken.verify(token, cfg.oidc, cache.keys, now, issuer.name)
    except JitError as exc:
        answer.update(code=exc.code, message=exc.message, verdict=f"refused: {exc.code}")
        return answer
    answer.update(ok=True, code="ok", user=tok.user, subject=tok.subject,
                  message=f"valid for {tok.user}", verdict=f"valid for {tok.user}"
                  + (f": may activate {', '.join(answer['roles'])}" if answer["roles"]
                     else ": maps to no role on this host"))
    return answer
