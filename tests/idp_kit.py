"""An identity provider's side, for tests and benchmarks: keys made here (RSA, EC P-256,
Ed25519), their JWKS, ID tokens shaped like Keycloak's, Okta's and Entra ID's, and the
key cache the fetcher writes (CONTRACTS §A: <state>/idp/NAME/{jwks,discovery,state}.json).

Nothing here verifies: hostd does. The tokens are real JWS signed with real keys.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER_URL = "http://127.0.0.1:8080/realms/corp"
CLIENT_ID = "jitaccess"


class Signer:
    """One private key with its kid and JWS algorithm."""

    def __init__(self, kind: str, kid: str) -> None:
        self.kid = kid
        if kind == "rsa":
            self.key, self.alg = rsa.generate_private_key(65537, 2048), "RS256"
        elif kind == "ec":
            self.key, self.alg = ec.generate_private_key(ec.SECP256R1()), "ES256"
        else:
            self.key, self.alg = ed25519.Ed25519PrivateKey.generate(), "EdDSA"

    def jwk(self) -> dict:
        """The public JWK (PyJWT's own serialiser: no private member leaves here)."""
        algo = jwt.get_algorithm_by_name(self.alg)
        jwk = json.loads(algo.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg=self.alg)
        return jwk

    def sign(self, claims: dict, header: dict | None = None, kid: str | None = "") -> str:
        headers = dict(header or {})
        if kid is not None:
            headers["kid"] = kid or self.kid
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)


def jwks(*signers: Signer) -> dict:
    return {"keys": [s.jwk() for s in signers]}


def keycloak_claims(now: int, user: str = "alice", groups: list[str] | None = None,
                    **extra: object) -> dict:
    """Keycloak: preferred_username, groups as full paths, realm_access.roles, azp."""
    claims = {
        "iss": ISSUER_URL, "sub": "f1c2a3b4-0000-4000-8000-" + secrets.token_hex(6),
        "aud": [CLIENT_ID, "account"], "azp": CLIENT_ID, "typ": "ID",
        "iat": now, "exp": now + 300, "auth_time": now, "jti": secrets.token_hex(16),
        "preferred_username": user, "email": f"{user}@corp.example",
        "groups": groups if groups is not None else ["/sre", "/sre/oncall", "/staff"],
        "realm_access": {"roles": ["offline_access", "db-operators"]},
    }
    claims.update(extra)
    return claims


def okta_claims(now: int, user: str = "alice", **extra: object) -> dict:
    """Okta: aud is the client id (a string), uid, a groups array, no jti in some orgs."""
    claims = {
        "iss": ISSUER_URL, "sub": "00u1abcdEFGH2ijk3d7", "aud": CLIENT_ID,
        "iat": now, "exp": now + 3600, "auth_time": now, "amr": ["pwd", "mfa"],
        "idp": "00o1abcd", "uid": "00u1abcdEFGH2ijk3d7",
        "preferred_username": f"{user}@corp.example", "groups": ["Everyone", "sre-admins"],
    }
    claims.update(extra)
    return claims


ENTRA_SRE = "7a9c3f1e-55b2-4c1d-9e8f-0a1b2c3d4e5f"


def entra_claims(now: int, user: str = "alice", overage: str = "", **extra: object) -> dict:
    """Entra ID: oid, upn, groups as object ids; `overage` "claim_names" or "hasgroups"
    replaces the groups with the marker Entra sends when there are too many."""
    claims = {
        "iss": ISSUER_URL, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "aud": CLIENT_ID, "iat": now, "nbf": now, "exp": now + 3600,
        "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": "9122040d-6c67-4c5b-b112",
        "upn": f"{user}@corp.example", "name": user.title(), "ver": "2.0",
        "groups": [ENTRA_SRE, "0e3b1d2c-0000-4000-8000-000000000001"],
    }
    if overage == "claim_names":
        del claims["groups"]
        claims["_claim_names"] = {"groups": "src1"}
        claims["_claim_sources"] = {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/"
                                             "users/x/getMemberObjects"}}
    elif overage == "hasgroups":
        del claims["groups"]
        claims["hasgroups"] = True
    claims.update(extra)
    return claims


def issuer_toml(name: str = "corp-idp", **over: object) -> str:
    """An issuers.d file for an OIDC issuer; `over` replaces or adds top-level keys."""
    keys = {
        "name": name, "type": "oidc", "issuer": ISSUER_URL, "client_id": CLIENT_ID,
        "audiences": [CLIENT_ID], "algorithms": ["RS256", "ES256", "EdDSA"],
        "username_claim": "preferred_username", "username_suffix": "@corp.example",
        "groups_claim": "groups", "max_token_age": "10m",
    }
    keys.update(over)
    rules = keys.pop("claims_to_roles", [{"claim": "groups", "value": "/sre",
                                          "roles": ["docker"]}])
    lines = [f"{k} = {json.dumps(v)}" for k, v in keys.items() if v is not None]
    for rule in rules:
        lines.append("[[claims_to_roles]]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in rule.items())
    return "\n".join(lines) + "\n"


def write_cache(state_dir: Path, name: str, keys: dict, fetched_at: float,
                max_age: float = 3600) -> Path:
    """What the fetcher writes (CONTRACTS §A), jwks and discovery before state."""
    d = state_dir / "idp" / name
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    _atomic(d / "jwks.json", keys)
    _atomic(d / "discovery.json", {"issuer": ISSUER_URL, "jwks_uri": ISSUER_URL + "/certs"})
    _atomic(d / "state.json", {"fetched_at": fetched_at, "expires_at": fetched_at + max_age,
                               "last_attempt_at": fetched_at, "last_error": None,
                               "last_error_at": None})
    return d


def _atomic(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
