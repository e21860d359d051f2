"""Verifying an identity provider's ID token: a pure function of (token, issuer, keys, now).

One check per refusal code, in this order, so a token with one thing wrong gets that
code: malformed, unknown_issuer/wrong_issuer, algorithm_not_allowed, unknown_key,
bad_signature, wrong_issuer (signed), bad_token (an access token), expired,
not_yet_valid, token_too_old, wrong_audience, wrong_azp, groups_overage, bad_token.
PyJWT (Debian's python3-jwt 2.6) checks the signature with one explicit algorithm and
a key object of the matching type, never a key given as bytes: an HS256 token "signed"
with an RSA public key cannot even be tried, since HS* is never in an issuer's list and
a key is only tried for algorithms its kty allows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from hostd.errors import JitError
from hostd.policy import idp
from hostd.policy.config import Config
from hostd.policy.grants import _unverified

LEEWAY = 60  # exp/nbf/iat clock skew, seconds (issue 21 item 3)
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
_JTI = re.compile(r"[\x21-\x7e]{1,256}")
_EC_ALG = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


@dataclass(frozen=True)
class JwkKey:
    kid: str  # "" when the JWK has none
    algorithms: tuple[str, ...]  # what this key may verify (its kty, crv and alg say)
    key: object  # a cryptography public key object

    def __repr__(self) -> str:
        return f"JwkKey(kid={self.kid!r}, algorithms={self.algorithms!r})"


@dataclass(frozen=True)
class IdToken:
    """A verified ID token, as this host understands it."""

    issuer: str  # the issuer's name on this host
    subject: str  # `sub`
    user: str  # the local account (username_claim minus the suffix)
    token_id: str  # jti, or sha256:HEX of the token when it has none
    exp: int
    iat: int
    claims: dict


def _algorithms_of(jwk: dict, key: object) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        fits = () if key.key_size < 2048 else (
            "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALG.get(jwk.get("crv", ""))
        fits = (alg,) if alg else ()
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        fits = ("EdDSA",)
    else:
        fits = ()
    if "alg" in jwk:
        fits = tuple(a for a in fits if a == jwk["alg"])
    return fits


def keyset(doc: object, algorithms: tuple[str, ...]) -> tuple[JwkKey, ...]:
    """The usable public keys of a JWKS document: signing keys whose type fits one of
    `algorithms`. Private members, unknown types and broken keys are skipped (the fetcher
    refused them already; this host does not trust that it did)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    out = []
    for jwk in doc["keys"]:
        if (not isinstance(jwk, dict) or any(m in jwk for m in PRIVATE_MEMBERS)
                or jwk.get("use", "sig") != "sig" or jwk.get("kty") == "oct"):
            continue
        kid = jwk.get("kid", "")
        try:
            key = jwt.PyJWK(jwk).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
        fits = tuple(a for a in _algorithms_of(jwk, key) if a in algorithms)
        if fits and isinstance(kid, str):
            out.append(JwkKey(kid, fits, key))
    return tuple(out)


def _refuse(code: str, message: str) -> JitError:
    return JitError(code, message)


def pick_issuer(unverified: dict, issuers: dict[str, idp.OidcIssuer],
                name: str | None) -> idp.OidcIssuer:
    """The issuer named, or the one whose `issuer` is the token's iss."""
    iss = unverified.get("iss")
    if name:
        issuer = issuers.get(name)
        if issuer is None:
            raise _refuse("unknown_issuer", f"no OIDC issuer {name!r} on this host")
        if iss != issuer.issuer:
            raise _refuse("wrong_issuer", f"token's iss is not {issuer.issuer!r}")
        return issuer
    for issuer in issuers.values():
        if iss == issuer.issuer:
            return issuer
    raise _refuse("unknown_issuer", "no OIDC issuer on this host has the token's iss")


def _signature(token: str, header: dict, issuer: idp.OidcIssuer,
               keys: tuple[JwkKey, ...]) -> dict:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in issuer.algorithms:
        raise _refuse("algorithm_not_allowed",
                      f"algorithm {str(alg)[:20]!r} not allowed for issuer {issuer.name}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refuse("malformed", "kid must be a string")
    candidates = [k for k in keys if alg in k.algorithms and (kid is None or k.kid == kid)]
    if not candidates:
        raise _refuse("unknown_key", f"no key {'of kid ' + repr(kid[:64]) if kid else 'for'}"
                      f" {alg} in {issuer.name}'s cached keys")
    for key in candidates:
        try:
            return jwt.decode(token, key.key, algorithms=[alg], options={
                "verify_signature": True, "verify_exp": False, "verify_nbf": False,
                "verify_iat": False, "verify_aud": False, "verify_iss": False,
                "require": []})
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, RecursionError, ValueError, TypeError) as exc:
            raise _refuse("malformed", f"cannot verify token: {str(exc)[:80]}") from None
    raise _refuse("bad_signature", f"signature does not verify with {issuer.name}'s keys")


def _time(claims: dict, name: str, required: bool = True) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**40:
        raise _refuse("bad_token", f"claim {name!r} must be a time in epoch seconds")
    return int(value)


def _times(claims: dict, issuer: idp.OidcIssuer, now: float) -> tuple[int, int]:
    exp, iat = _time(claims, "exp"), _time(claims, "iat")
    nbf = _time(claims, "nbf", required=False)
    if now > exp + LEEWAY:
        raise _refuse("expired", "token has expired")
    if nbf is not None and now + LEEWAY < nbf:
        raise _refuse("not_yet_valid", "token is not valid yet (nbf)")
    if now + LEEWAY < iat:
        raise _refuse("not_yet_valid", "token was issued in the future (iat)")
    if now - iat > issuer.max_token_age + LEEWAY:
        raise _refuse("token_too_old", f"token was issued {int(now - iat)}s ago; "
                      f"{issuer.name} accepts {issuer.max_token_age}s")
    return exp, iat  # type: ignore[return-value]


def _audience(claims: dict, issuer: idp.OidcIssuer) -> None:
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
        raise _refuse("wrong_audience", "claim 'aud' must be a string or a list of strings")
    if not set(auds) & set(issuer.audiences):
        raise _refuse("wrong_audience", f"audience is none of {', '.join(issuer.audiences)}")
    azp = claims.get("azp")
    if azp is not None and azp != issuer.client_id:
        raise _refuse("wrong_azp", f"authorized party is not {issuer.client_id!r}")


def _overage(claims: dict, issuer: idp.OidcIssuer) -> None:
    """Entra ID leaves groups out of a token when there are too many (or for implicit
    flows), saying so with `_claim_names` or `hasgroups`: never "no groups"."""
    names = claims.get("_claim_names")
    groups = issuer.groups_claim.lstrip("/").split("/")[0]
    if (isinstance(names, dict) and (groups in names or "groups" in names)) \
            or claims.get("hasgroups") not in (None, False):
        raise _refuse("groups_overage", "the token leaves the groups out (groups overage): "
                      "ask the identity provider to send groups, or filter them")


def _is_access_token(header: dict, claims: dict) -> bool:
    """RFC 9068 access tokens say so in the header; Keycloak's in a `typ` claim. Either
    can carry this client in aud (an audience mapper): only an ID token says who logged in."""
    typ = header.get("typ")
    if isinstance(typ, str) and typ.lower() in ("at+jwt", "application/at+jwt"):
        return True
    return claims.get("typ") in ("Bearer", "Refresh", "Offline")


def token_id(token: str, claims: dict) -> str:
    jti = claims.get("jti")
    if isinstance(jti, str) and _JTI.fullmatch(jti):
        return jti
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def decode_unverified(token: object) -> tuple[str, dict, dict]:
    """(token, header, claims) bounded and strict, nothing checked: for choosing the
    issuer, and for `jit idp test` to show."""
    return _unverified(token)


def verify(token: object, issuers: dict[str, idp.OidcIssuer],
           keys_of: Callable[[idp.OidcIssuer], tuple[JwkKey, ...]], now: float,
           name: str | None = None) -> IdToken:
    """Verify an ID token offline. `keys_of(issuer)` gives that issuer's cached keys
    (JitError stale_keys when it cannot); JitError with the first failed check's code."""
    token, header, unverified = _unverified(token)
    issuer = pick_issuer(unverified, issuers, name)
    claims = _signature(token, header, issuer, keys_of(issuer))
    if claims.get("iss") != issuer.issuer:  # what was signed, not what was peeked at
        raise _refuse("wrong_issuer", f"token's iss is not {issuer.issuer!r}")
    if _is_access_token(header, claims):
        raise _refuse("bad_token", "an access or refresh token, not an ID token")
    exp, iat = _times(claims, issuer, now)
    _audience(claims, issuer)
    _overage(claims, issuer)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not 0 < len(sub) <= 255:
        raise _refuse("bad_token", "claim 'sub' must be a string of 1-255 characters")
    try:
        user = idp.username(issuer, claims)
    except idp.ClaimError as exc:
        raise _refuse("bad_token", str(exc)) from None
    return IdToken(issuer.name, sub, user, token_id(token, claims), exp, iat, claims)


def authorize(tok: IdToken, issuer: idp.OidcIssuer, config: Config,
              role_name: str) -> tuple[str, ...]:
    """The claim values that give `tok` the role here; unknown_role, issuer_not_allowed
    (the role does not list the issuer) or not_allowed (no claims_to_roles rule maps it)."""
    role = config.roles.get(role_name)
    if role is None:
        raise _refuse("unknown_role", f"role {role_name[:64]!r} is not defined on this host")
    if issuer.name not in role.issuers:
        raise _refuse("issuer_not_allowed",
                      f"issuer {issuer.name!r} may not grant role {role.name!r}")
    matched = mapped_roles(tok, issuer).get(role.name)
    if not matched:
        raise _refuse("not_allowed", f"no claims_to_roles rule of {issuer.name} maps this "
                      f"token to role {role.name!r}")
    return matched


def mapped_roles(tok: IdToken, issuer: idp.OidcIssuer) -> dict[str, tuple[str, ...]]:
    try:
        return idp.roles_for(issuer, tok.claims)
    except idp.ClaimError as exc:
        raise _refuse("bad_token", str(exc)) from None
