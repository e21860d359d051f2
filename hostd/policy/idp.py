"""OIDC issuers in issuers.d (`type = "oidc"`, issue 21): the model, claim look-up and
`claims_to_roles`.

Pure: no keys and no network here. The keys come from the cache the fetcher writes
(hostd/state/idpcache.py) and tokens are verified by hostd/policy/idptoken.py; this
module says what a verified token's claims map to on this host.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hostd.policy.tables import NAME, USER_NAME, Table

# Never `none`, never HS* (a shared secret is not a public key): asymmetric only.
OIDC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                   "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_MAX_TOKEN_AGE = 600  # 10 minutes
DEFAULT_MAX_STALE = 86400  # 24 hours past the cache's fetched_at
MAX_CLAIM_VALUES = 4096  # a groups claim longer than this is refused, not walked


@dataclass(frozen=True)
class ClaimRule:
    """One `[[claims_to_roles]]`: a claim value (exact, or an fnmatch glob) -> roles."""

    claim: str
    value: str
    match: str  # "exact" or "glob"
    roles: tuple[str, ...]

    def matches(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if self.match == "glob":
            return tuple(v for v in values if fnmatch.fnmatchcase(v, self.value))
        return tuple(v for v in values if v == self.value)


@dataclass(frozen=True)
class OidcIssuer:
    name: str
    issuer: str  # the token's iss, exactly
    client_id: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...]
    username_claim: str = "preferred_username"
    username_suffix: str = ""
    groups_claim: str = "groups"
    max_token_age: int = DEFAULT_MAX_TOKEN_AGE
    max_stale: int = DEFAULT_MAX_STALE
    claims_to_roles: tuple[ClaimRule, ...] = ()


class ClaimError(ValueError):
    """A claim is there but of a shape this host cannot use."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_issuer_url(url: str) -> str | None:
    """Why `url` cannot be an issuer (None: fine). Plain http only on loopback (RFC 8252
    allows it for native apps; the tests use it)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        return f"not a URL: {exc}"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL"
    if parts.scheme == "http" and not is_loopback(host):
        return "plain http is allowed only for a loopback address"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "must have no query, fragment or user information"
    return None


def lookup(claims: dict, claim: str) -> object:
    """A claim by plain name, or by RFC 6901 JSON pointer when it starts with '/'
    ("/realm_access/roles"). None when absent."""
    if not claim.startswith("/"):
        return claims.get(claim)
    node: object = claims
    for raw in claim[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def claim_values(claims: dict, claim: str) -> tuple[str, ...]:
    """A claim as a tuple of strings: a string is one value, a list its string items."""
    value = lookup(claims, claim)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        if len(value) > MAX_CLAIM_VALUES:
            raise ClaimError(f"claim {claim!r} has more than {MAX_CLAIM_VALUES} values")
        return tuple(v for v in value if isinstance(v, str))
    raise ClaimError(f"claim {claim!r} is neither a string nor a list")


def username(issuer: OidcIssuer, claims: dict) -> str:
    """The local account the token names: username_claim, minus username_suffix."""
    value = lookup(claims, issuer.username_claim)
    if not isinstance(value, str):
        raise ClaimError(f"claim {issuer.username_claim!r} is missing or not a string")
    if issuer.username_suffix and value.endswith(issuer.username_suffix):
        value = value[:-len(issuer.username_suffix)]
    if not USER_NAME.fullmatch(value):
        raise ClaimError(f"claim {issuer.username_claim!r} is not a local user name "
                         "(after removing the suffix)")
    return value


def roles_for(issuer: OidcIssuer, claims: dict) -> dict[str, tuple[str, ...]]:
    """Each role the claims map to, with the claim values that matched ("claim=value")."""
    out: dict[str, list[str]] = {}
    for rule in issuer.claims_to_roles:
        hits = rule.matches(claim_values(claims, rule.claim))
        for role in rule.roles:
            seen = out.setdefault(role, [])
            seen.extend(f"{rule.claim}={v}" for v in hits if f"{rule.claim}={v}" not in seen)
    return {role: tuple(hits) for role, hits in out.items() if hits}


def matched_rules(issuer: OidcIssuer, claims: dict) -> list[tuple[int, ClaimRule, tuple]]:
    """(index, rule, values matched) of every rule that matched (`jit idp test`)."""
    out = []
    for i, rule in enumerate(issuer.claims_to_roles):
        hits = rule.matches(claim_values(claims, rule.claim))
        if hits:
            out.append((i, rule, hits))
    return out


def _rules(t: Table, groups_claim: str) -> tuple[ClaimRule, ...]:
    rules = []
    for i, item in enumerate(t.get("claims_to_roles", list, [])):
        r = Table(t.path, f"claims_to_roles[{i}]", item)
        claim = r.get("claim", str, groups_claim)
        value = r.get("value", str, required=True)
        match = r.choice("match", ("exact", "glob"), "exact")
        roles = r.strings("roles", NAME, "role name", unique=True)
        if not claim or not value:
            raise r.fail("value" if claim else "claim", "must not be empty")
        if not roles:
            raise r.fail("roles", "must name at least one role")
        r.finish()
        rules.append(ClaimRule(claim, value, match, roles))
    return tuple(rules)


def parse_oidc_issuer(path: Path, data: dict) -> OidcIssuer:
    """One `type = "oidc"` issuer file; ConfigError naming the key on the first problem."""
    t = Table(path, "", data)
    t.choice("type", ("oidc",), "oidc")
    name = t.get("name", str, required=True)
    if not NAME.fullmatch(name) or name == "host":
        raise t.fail("name", f"{name!r} is not allowed (lowercase [a-z0-9_.-]; 'host' is built in)")
    url = t.get("issuer", str, required=True)
    bad = check_issuer_url(url)
    if bad:
        raise t.fail("issuer", bad)
    client_id = t.get("client_id", str, required=True)
    if not client_id:
        raise t.fail("client_id", "must not be empty")
    audiences = t.strings("audiences", unique=True) or (client_id,)
    algorithms = t.strings("algorithms", unique=True)
    if not algorithms:
        raise t.fail("algorithms", "an explicit allow-list is required "
                                   f"({', '.join(OIDC_ALGORITHMS)})")
    for alg in algorithms:
        if alg not in OIDC_ALGORITHMS:
            raise t.fail("algorithms", f"{alg!r} is not allowed (asymmetric only: "
                                       f"{', '.join(OIDC_ALGORITHMS)})")
    groups_claim = t.get("groups_claim", str, "groups")
    issuer = OidcIssuer(
        name=name, issuer=url, client_id=client_id, audiences=audiences,
        algorithms=algorithms,
        username_claim=t.get("username_claim", str, "preferred_username"),
        username_suffix=t.get("username_suffix", str, ""),
        groups_claim=groups_claim,
        max_token_age=t.duration("max_token_age", DEFAULT_MAX_TOKEN_AGE),
        max_stale=t.duration("max_stale", DEFAULT_MAX_STALE),
        claims_to_roles=_rules(t, groups_claim),
    )
    if not issuer.username_claim or not issuer.groups_claim:
        raise t.fail("username_claim" if not issuer.username_claim else "groups_claim",
                     "must not be empty")
    if issuer.max_token_age <= 0:
        raise t.fail("max_token_age", "must be positive")
    t.finish()
    return issuer
