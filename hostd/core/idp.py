"""Activation with an identity provider's ID token (issue 21 item 4): `idp.activate` and
`idp.roles`, run in hostd's ordered worker like every change.

The token is verified offline against the key cache (hostd/state/idpcache.py), its
user must be the caller (root may act for anyone), its claims must map to the role
through the issuer's `claims_to_roles`, and then the grant is made by Core.apply, the
path every grant takes (groups, sudo rules, recording, login gating follow from the
role as for any grant). A role that names approvers and wants `approvals > 0` makes it
a request instead, exactly as `jit request` would. Each token is used once.
"""

from __future__ import annotations

from hostd.core.lifecycle import SEEN_TOKEN_GRACE, Core
from hostd.core.requests import Requests
from hostd.errors import JitError
from hostd.policy import idptoken
from hostd.policy.approvals import clean_reason
from hostd.policy.config import HOST_ISSUER, Role
from hostd.policy.grants import MAX_TEXT, Grant
from hostd.policy.idp import OidcIssuer
from hostd.state import idp_tokens
from hostd.state.idpcache import IdpCache

PRUNE_EVERY = 3600  # seconds between two prunes of used token ids


def grant_jti(tok: idptoken.IdToken) -> str:
    """The token id a grant from `tok` carries (seen_tokens: issuer, jti)."""
    return f"idp:{tok.token_id}"


def needs_approval(role: Role) -> bool:
    """A role set up for approvals (approvers named, approvals > 0) makes an IdP
    activation a request; any other role's grant is given on the token alone."""
    return role.approvals > 0 and bool(role.approvers)


class IdpActivations:
    def __init__(self, core: Core, requests: Requests | None, cache: IdpCache) -> None:
        self.core, self.requests, self.cache = core, requests, cache
        self._pruned = 0

    def verify(self, token: object, issuer: str | None) -> tuple[idptoken.IdToken, OidcIssuer]:
        tok = idptoken.verify(token, self.core.config.oidc, self.cache.keys,
                              self.core.clock(), issuer)
        return tok, self.core.config.oidc[tok.issuer]

    def roles(self, token: object, issuer: str | None, caller_uid: int) -> dict:
        """What this token maps to on this host (`jit login --roles`)."""
        tok, oidc = self.verify(token, issuer)
        self._caller(tok, caller_uid)
        mapped = idptoken.mapped_roles(tok, oidc)
        roles = sorted(r for r in mapped if r in self.core.config.roles
                       and oidc.name in self.core.config.roles[r].issuers)
        matched = sorted({m for r in roles for m in mapped[r]})
        return {"ok": True, "code": "ok", "message": f"{len(roles)} roles",
                "roles": roles, "issuer": oidc.name, "user": tok.user, "matched": matched}

    def activate(self, args: dict, caller_uid: int) -> dict:
        """`idp.activate`; JitError on refusal, logged as grant_refused."""
        try:
            return self._activate(args, caller_uid)
        except JitError as exc:
            self.core.events.refusal(
                "grant_refused", f"ID token refused: {exc.code}: {exc.message}",
                uid=caller_uid, user=self.core.accounts.user_by_uid(caller_uid),
                code=exc.code, decision="refused", reason=exc.message,
                issuer=self._issuer_name(args))
            raise

    def _issuer_name(self, args: dict) -> str | None:
        """The issuer a refused token was (or would have been) checked against."""
        try:
            _token, _header, claims = idptoken.decode_unverified(args.get("token"))
            return idptoken.pick_issuer(claims, self.core.config.oidc, args.get("issuer")).name
        except JitError:
            return args.get("issuer") or None

    def _caller(self, tok: idptoken.IdToken, caller_uid: int) -> int:
        uid = self.core.accounts.uid_of(tok.user)
        if uid is None:
            raise JitError("wrong_user", f"the token names {tok.user!r}, no such local user")
        if caller_uid not in (0, uid):
            raise JitError("wrong_user", f"the token is {tok.user!r}'s, not the caller's")
        return uid

    def _activate(self, args: dict, caller_uid: int) -> dict:
        tok, oidc = self.verify(args["token"], args.get("issuer"))
        uid = self._caller(tok, caller_uid)
        matched = idptoken.authorize(tok, oidc, self.core.config, args["role"])
        role = self.core.config.roles[args["role"]]
        duration = args.get("duration") or role.max_ttl
        if duration <= 0:
            raise JitError("bad_request", "duration must be positive")
        if duration > role.max_ttl:
            raise JitError("ttl_exceeds_role_max", f"{duration}s asked, role {role.name} "
                           f"allows {role.max_ttl}s")
        reason = args.get("reason") or ""
        if len(reason) > MAX_TEXT:
            raise JitError("bad_request", f"reason longer than {MAX_TEXT} characters")
        told = {"idp_subject": tok.subject, "matched": list(matched)}
        self._prune()
        if (idp_tokens.used_for(self.core.store, oidc.name, tok.token_id) is not None
                or self.core.store.grant_of_token(oidc.name, grant_jti(tok))):
            raise JitError("replayed", "this ID token was used on this host already")
        if needs_approval(role):
            out = self._recorded(tok, oidc, lambda: self._request(tok, uid, role, duration,
                                                                  reason, told))
        else:
            out = self._grant(tok, oidc, uid, role, duration, reason, told)
        out.update(issuer=oidc.name, subject=tok.subject, matched=list(matched))
        return out

    def _recorded(self, tok: idptoken.IdToken, oidc: OidcIssuer, make) -> dict:
        """Record the token as used (until it could no longer verify), then `make`; a
        failure forgets it again: nothing was given."""
        keep = max(tok.exp, tok.iat + oidc.max_token_age) + idptoken.LEEWAY
        if not idp_tokens.use(self.core.store, oidc.name, tok.token_id, keep, "pending"):
            raise JitError("replayed", "this ID token was used on this host already")
        try:
            out = make()
        except BaseException:
            idp_tokens.forget(self.core.store, oidc.name, tok.token_id)
            raise
        used = (f"grant:{out['grant']['id']}" if "grant" in out
                else f"request:{out['request']['id']}")
        idp_tokens.set_used_for(self.core.store, oidc.name, tok.token_id, used)
        return out

    def _grant(self, tok: idptoken.IdToken, oidc: OidcIssuer, uid: int, role: Role,
               duration: int, reason: str, told: dict) -> dict:
        """Through Core.apply, whose one transaction records the grant's token id
        (`idp:ID` in seen_tokens) with the grant: a second use is `replayed` at no extra
        commit. seen_tokens keeps it until the grant's end plus an hour; only a token
        that could still verify after that is also kept in idp_tokens (an extra commit,
        rare: max_token_age longer than the grant plus an hour)."""
        keep = max(tok.exp, tok.iat + oidc.max_token_age) + idptoken.LEEWAY
        if keep > self.core.now() + duration + SEEN_TOKEN_GRACE:
            return self._recorded(tok, oidc, lambda: self._apply(tok, uid, role, duration,
                                                                 reason, told))
        return self._apply(tok, uid, role, duration, reason, told)

    def _apply(self, tok: idptoken.IdToken, uid: int, role: Role, duration: int,
               reason: str, told: dict) -> dict:
        missing = [g for g in role.groups if not self.core.accounts.group_exists(g)]
        if missing:
            raise JitError("config_error", f"role {role.name!r} names missing group "
                                           f"{missing[0]!r}")
        now = self.core.now()
        grant = Grant(jti=grant_jti(tok), issuer=tok.issuer, user=tok.user,
                      role=role.name, groups=role.groups, not_before=now,
                      exp=now + duration, iat=tok.iat, hosts=(), reason=reason)
        public = self.core.apply(grant, uid, **told)
        return {"ok": True, "code": "ok", "message": f"grant {public['id']} activated",
                "grant": public}

    def _request(self, tok: idptoken.IdToken, uid: int, role: Role, duration: int,
                 reason: str, told: dict) -> dict:
        if self.requests is None or HOST_ISSUER not in role.issuers:
            raise JitError("config_error", f"role {role.name!r} wants approvals: its issuers "
                           f"must include {HOST_ISSUER!r}, which signs approved requests")
        req = self.requests.open(uid, tok.user, role, duration, clean_reason(reason),
                                 issuer=tok.issuer, **told)
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req}

    def _prune(self) -> None:
        now = self.core.now()
        if now - self._pruned >= PRUNE_EVERY:
            idp_tokens.prune(self.core.store, now)
            self._pruned = now
