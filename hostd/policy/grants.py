"""Grant verification and issuing: one offline path for every grant, whoever signed it.

`verify` is a pure function of (token, config, host facts, clock). Each refusal code of
DESIGN.md §12 comes from exactly one check below, in this order, so a token with one
thing wrong gets that one code. `replayed` and the caller check (`wrong_user`) need host
state and live in core.py.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
from dataclasses import dataclass

import jwt

from hostd.errors import JitError
from hostd.policy import windows
from hostd.policy.config import USER_NAME, Config, Issuer
from hostd.policy.durations import compact_duration
from hostd.policy.hostmatch import HostFacts, matches
from hostd.policy.keys import algorithm_for, thumbprint

MAX_TOKEN = 16 * 1024
AUDIENCE = "jitaccess"
_JTI = re.compile(r"[\x21-\x7e]{1,128}")  # used with fullmatch
MAX_TEXT = 1024
# The header `typ` values a grant may carry (compared case-insensitively, RFC 7515
# §4.1.9): none, or the JWT ones PyJWT and identity providers write. Anything else is
# another kind of token signed by the same keys (a revocation list's
# "jit-revocations+jwt"), never a grant.
GRANT_TYPES = ("jwt", "application/jwt")


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
    kid: str = ""  # the issuer key that verified it (revocation lists name keys by kid)


def _refuse(code: str, message: str) -> JitError:
    return JitError(code, message)


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")  # base64url without padding (RFC 7515 §2)


def _refuse_constant(name: str) -> object:
    """json's parse_constant hook: NaN and Infinity are not JSON (RFC 8259 §6)."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    """json's parse_float hook: 1e400 would become infinity, which no claim may hold."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _loads(data: bytes, what: str) -> object:
    """Strict JSON of one segment; any parse failure, however deep, is `malformed`.

    RecursionError (deep nesting) and ValueError (bad UTF-8, the 4,300-digit integer
    limit, NaN/Infinity) are not PyJWTErrors and would otherwise escape as crashes."""
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_constant,
                          parse_float=_finite_float)
    except (RecursionError, ValueError) as exc:
        raise _refuse("malformed", f"{what} is not JSON: {str(exc)[:80]}") from None


def _check_text(value: object, what: str) -> None:
    """Every string (keys too) must be encodable as UTF-8: a JSON `\\udc80` escape gives
    a lone surrogate, which SQLite, the journal and every consumer of events choke on."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise _refuse("malformed", f"{what} holds text that is not valid "
                                           "Unicode (a lone surrogate)") from None


def _segment(part: str, what: str) -> object:
    if not part or not _SEGMENT.fullmatch(part) or len(part) % 4 == 1:
        raise _refuse("malformed", f"{what} is not base64url")
    try:
        data = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except binascii.Error:
        raise _refuse("malformed", f"{what} is not base64url") from None
    obj = _loads(data, what)
    if not isinstance(obj, dict):
        raise _refuse("malformed", "header and payload must be JSON objects")
    _check_text(obj, what)
    return obj


def _unverified(token: object, limit: int = MAX_TOKEN) -> tuple[str, dict, dict]:
    """Decode header and payload ourselves, bounded and strict, before PyJWT sees them."""
    if not isinstance(token, str):
        raise _refuse("malformed", "token must be a string")
    if len(token) > limit:
        raise _refuse("malformed", f"token larger than {limit // 1024} KiB")
    token = token.strip()
    if not token.isascii():
        raise _refuse("malformed", "token holds characters outside base64url")
    if token.count(".") != 2:
        raise _refuse("malformed", "not a JWS compact token")
    head, body, signature = token.split(".")
    if not _SEGMENT.fullmatch(signature):
        raise _refuse("malformed", "signature is not base64url")
    header = _segment(head, "header")
    claims = _segment(body, "payload")
    if "crit" in header:  # RFC 7515 §4.1.11: unknown critical extensions must be refused
        raise _refuse("malformed", "critical header parameters are not supported")
    return token, header, claims  # type: ignore[return-value]


def token_type(header: dict) -> str | None:
    """The header's `typ`, lowercased; None when absent. A non-string is malformed."""
    typ = header.get("typ")
    if typ is None:
        return None
    if not isinstance(typ, str):
        raise _refuse("malformed", "header 'typ' must be a string")
    return typ.lower()


def _check_signature(token: str, header: dict, issuer: Issuer) -> tuple[dict, str]:
    """The verified claims and the kid of the key that verified them."""
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
            claims = jwt.decode(
                token, key.key, algorithms=[alg],
                options={"verify_signature": True, "verify_exp": False, "verify_nbf": False,
                         "verify_iat": False, "verify_aud": False, "verify_iss": False,
                         "require": []},
            )
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, RecursionError, ValueError) as exc:
            # PyJWT parses the same bytes again; _unverified refused what it cannot parse
            raise _refuse("malformed", f"cannot verify token: {str(exc)[:80]}") from None
        if not isinstance(claims, dict):
            raise _refuse("malformed", "payload must be a JSON object")
        return claims, key.kid
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
    if not isinstance(user, str) or not USER_NAME.fullmatch(user):
        raise _refuse("malformed", f"claim {issuer.username_claim!r} must be a local user name")
    aud = claims.get("aud")
    aud_list = [aud] if isinstance(aud, str) else aud
    if not isinstance(aud_list, list) or not all(isinstance(a, str) for a in aud_list):
        raise _refuse("malformed", "claim 'aud' must be a string or a list of strings")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not _JTI.fullmatch(jti):
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
    token, header, unverified = _unverified(token)
    typ = token_type(header)
    if typ is not None and typ not in GRANT_TYPES:
        raise _refuse("malformed", f"a token of type {typ[:40]!r} is not a grant")
    iss = unverified.get("iss")
    if not isinstance(iss, str):
        raise _refuse("malformed", "claim 'iss' must be a string")
    issuer = config.issuers.get(iss)
    if issuer is None:
        raise _refuse("unknown_issuer", f"issuer {iss!r} is not configured on this host")
    claims, kid = _check_signature(token, header, issuer)
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
    if now + config.leeway < c["iat"]:  # an issuer whose clock runs ahead
        raise _refuse("not_yet_valid", "grant was issued in the future")
    # a start ahead is scheduled, not refused, up to the role's max_lead_time
    windows.check_lead(c["start"], now, role.max_lead_time, config.leeway, role.name)
    if c["exp"] - c["start"] > role.max_ttl:
        raise _refuse("ttl_exceeds_role_max",
                      f"{compact_duration(c['exp'] - c['start'])} asked, role {role.name} "
                      f"allows {compact_duration(role.max_ttl)}")
    try:
        host_ok = matches(list(c["hosts"]), host)
    except ValueError as exc:
        raise _refuse("malformed", f"claim 'hosts': {exc}") from None
    if not host_ok:
        raise _refuse("wrong_host", "grant does not name this host")
    return Grant(
        jti=c["jti"], issuer=iss, user=c["user"], role=role.name, groups=role.groups,
        not_before=c["start"], exp=c["exp"], iat=c["iat"], hosts=c["hosts"],
        reason=c["reason"], ticket=c["ticket"], approved_by=c["approved_by"], kid=kid,
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
