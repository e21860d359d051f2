"""Grant verification and issuing: one offline path for every grant, whoever signed it.

`verify` is a pure function of (token, config, host facts, clock). Each refusal code of
DESIGN.md §12 comes from exactly one check below, in this order, so a token with one
thing wrong gets that one code. `replayed` and the caller check (`wrong_user`) need host
state and live in core.py.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

import jwt

from .config import USER_NAME, Config, Issuer
from .errors import JitError
from .hostmatch import HostFacts, matches
from .keys import algorithm_for, thumbprint

MAX_TOKEN = 16 * 1024
AUDIENCE = "jitaccess"
_JTI = re.compile(r"^[\x21-\x7e]{1,128}$")
MAX_TEXT = 1024


@dataclass(frozen=True)
class Grant:
    """A verified grant: what the token says, as the host understands it."""

    jti: str
    issuer: str
    user: str
    role: str
    groups: tuple[str, ...]
    not_before: int
    exp: int
    iat: int
    hosts: tuple[str, ...]
    reason: str = ""
    ticket: str = ""
    approved_by: tuple[str, ...] = ()


def _refuse(code: str, message: str) -> JitError:
    return JitError(code, message)


def _unverified(token: object) -> tuple[dict, dict]:
    if not isinstance(token, str):
        raise _refuse("malformed", "token must be a string")
    if len(token) > MAX_TOKEN:
        raise _refuse("malformed", f"token larger than {MAX_TOKEN // 1024} KiB")
    token = token.strip()
    if token.count(".") != 2:
        raise _refuse("malformed", "not a JWS compact token")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _refuse("malformed", f"cannot parse token: {exc}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _refuse("malformed", "header and payload must be JSON objects")
    return header, claims


def _check_signature(token: str, header: dict, issuer: Issuer) -> dict:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in issuer.algorithms:
        raise _refuse("algorithm_not_allowed",
                      f"algorithm {alg!r} not allowed for issuer {issuer.name}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _refuse("malformed", "kid must be a string")
    candidates = [k for k in issuer.keys if k.algorithm == alg and (kid is None or k.kid == kid)]
    for key in candidates:
        try:
            return jwt.decode(
                token.strip(), key.key, algorithms=[alg],
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_aud": False, "verify_iss": False,
                         "require": []},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise _refuse("malformed", f"cannot verify token: {exc}") from None
    raise _refuse("bad_signature", f"signature does not verify with any key of {issuer.name}")


def _int_claim(claims: dict, name: str, required: bool = True) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**40:
        raise _refuse("malformed", f"claim {name!r} must be a time in epoch seconds")
    return value


def _text_claim(claims: dict, name: str) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise _refuse("malformed", f"claim {name!r} must be a string of at most {MAX_TEXT}")
    return value


def _shape(claims: dict, issuer: Issuer) -> dict:
    """Claim types and presence; everything else trusts these shapes."""
    user = claims.get(issuer.username_claim)
    if not isinstance(user, str) or not USER_NAME.match(user):
        raise _refuse("malformed", f"claim {issuer.username_claim!r} must be a local user name")
    aud = claims.get("aud")
    aud_list = [aud] if isinstance(aud, str) else aud
    if not isinstance(aud_list, list) or not all(isinstance(a, str) for a in aud_list):
        raise _refuse("malformed", "claim 'aud' must be a string or a list of strings")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.match(jti):
        raise _refuse("malformed", "claim 'jti' must be 1-128 printable characters")
    role = claims.get("role")
    if not isinstance(role, str) or not role:
        raise _refuse("malformed", "claim 'role' must be a string")
    hosts = claims.get("hosts")
    if (not isinstance(hosts, list) or not 1 <= len(hosts) <= 64
            or not all(isinstance(h, str) for h in hosts)):
        raise _refuse("malformed", "claim 'hosts' must be a list of 1-64 selectors")
    approved_by = claims.get("approved_by", [])
    if isinstance(approved_by, str):
        approved_by = [approved_by] if approved_by else []
    if not isinstance(approved_by, list) or not all(isinstance(a, str) for a in approved_by):
        raise _refuse("malformed", "claim 'approved_by' must be a string or list of strings")
    iat = _int_claim(claims, "iat")
    exp = _int_claim(claims, "exp")
    nbf = _int_claim(claims, "nbf", required=False)
    start = max(iat, nbf if nbf is not None else iat)
    if exp <= start:
        raise _refuse("malformed", "claim 'exp' is not after 'nbf'/'iat'")
    return {
        "user": user, "aud": [aud] if isinstance(aud, str) else aud, "jti": jti,
        "role": role, "hosts": tuple(hosts), "iat": iat, "nbf": nbf if nbf is not None else iat,
        "start": start, "exp": exp, "reason": _text_claim(claims, "reason"),
        "ticket": _text_claim(claims, "ticket"), "approved_by": tuple(approved_by),
    }


def verify(token: object, config: Config, host: HostFacts, now: float) -> Grant:
    """Verify a grant offline; JitError with the refusal code of the first failed check."""
    header, unverified = _unverified(token)
    iss = unverified.get("iss")
    if not isinstance(iss, str):
        raise _refuse("malformed", "claim 'iss' must be a string")
    issuer = config.issuers.get(iss)
    if issuer is None:
        raise _refuse("unknown_issuer", f"issuer {iss!r} is not configured on this host")
    claims = _check_signature(token, header, issuer)  # type: ignore[arg-type]
    c = _shape(claims, issuer)
    if AUDIENCE not in c["aud"]:
        raise _refuse("wrong_audience", f"audience is not {AUDIENCE!r}")
    role = config.roles.get(c["role"])
    if role is None:
        raise _refuse("unknown_role", f"role {c['role']!r} is not defined on this host")
    if iss not in role.issuers:
        raise _refuse("issuer_not_allowed", f"issuer {iss!r} may not grant role {role.name!r}")
    if now > c["exp"] + config.leeway:
        raise _refuse("expired", "grant has expired")
    if now + config.leeway < c["start"]:
        raise _refuse("not_yet_valid", "grant is not valid yet")
    if c["exp"] - c["start"] > role.max_ttl:
        raise _refuse("ttl_exceeds_role_max",
                      f"lifetime exceeds the maximum of role {role.name!r}")
    try:
        host_ok = matches(list(c["hosts"]), host)
    except ValueError as exc:
        raise _refuse("malformed", f"claim 'hosts': {exc}") from None
    if not host_ok:
        raise _refuse("wrong_host", "grant does not name this host")
    return Grant(
        jti=c["jti"], issuer=iss, user=c["user"], role=role.name, groups=role.groups,
        not_before=c["start"], exp=c["exp"], iat=c["iat"], hosts=c["hosts"],
        reason=c["reason"], ticket=c["ticket"], approved_by=c["approved_by"],
    )


def issue(private_key: object, issuer: str, user: str, role: str, not_before: int, exp: int,
          hosts: list[str], now: int, reason: str = "", ticket: str = "",
          approved_by: list[str] | None = None, jti: str | None = None) -> str:
    """Sign a grant. The header's kid is the key's thumbprint so hosts can pick the key."""
    alg = algorithm_for(private_key)
    claims: dict = {
        "iss": issuer, "sub": user, "aud": AUDIENCE, "jti": jti or secrets.token_hex(16),
        "iat": now, "nbf": not_before, "exp": exp, "role": role, "hosts": hosts,
    }
    if reason:
        claims["reason"] = reason
    if ticket:
        claims["ticket"] = ticket
    if approved_by:
        claims["approved_by"] = approved_by
    kid = thumbprint(private_key.public_key())  # type: ignore[attr-defined]
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid})
