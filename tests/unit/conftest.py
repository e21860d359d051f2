"""Shared fixtures for the unit tests: keys, a host policy, host facts and a token minter.

Nothing here reads the clock: every test passes its own `now` (the minter's `now` is a
fixed instant), so time-dependent checks are exact and never sleep.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `pytest` run without `python -m` from the repo root
    sys.path.insert(0, str(REPO))
if str(REPO / "tests") not in sys.path:  # the shared fakes: `from fakes import ...`
    sys.path.insert(0, str(REPO / "tests"))

from hostd.policy.config import Config, Issuer, Role  # noqa: E402
from hostd.policy.hostmatch import HostFacts  # noqa: E402
from hostd.policy.keys import PublicKey, algorithm_for, thumbprint  # noqa: E402

MACHINE_ID = "0123456789abcdef0123456789abcdef"


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_key_of(private_key: object) -> PublicKey:
    pub = private_key.public_key()  # type: ignore[attr-defined]
    return PublicKey(thumbprint(pub), algorithm_for(pub), pub)


class Pki:
    """Private keys: the trusted issuers', a second issuer's, a stranger's, EC and RSA."""

    def __init__(self) -> None:
        self.corp = ed25519.Ed25519PrivateKey.generate()
        self.other = ed25519.Ed25519PrivateKey.generate()
        self.stranger = ed25519.Ed25519PrivateKey.generate()
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def host() -> HostFacts:
    return HostFacts(
        hostname="web-01.example.com",
        machine_id=MACHINE_ID,
        addresses=(ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("2001:db8::7")),
    )


def make_config(pki: Pki, leeway: int = 30) -> Config:
    """Roles: docker and ops (issuer corp, 4h), other-role (issuer other, 1h)."""
    roles = {
        "docker": Role(name="docker", groups=("docker",), max_ttl=4 * 3600, issuers=("corp",)),
        "ops": Role(name="ops", groups=("docker", "adm"), max_ttl=4 * 3600, issuers=("corp",)),
        "other-role": Role(name="other-role", groups=("staff",), max_ttl=3600,
                           issuers=("other",)),
    }
    issuers = {
        "corp": Issuer("corp", (public_key_of(pki.corp),), ("EdDSA",)),
        "other": Issuer("other", (public_key_of(pki.other),), ("EdDSA",)),
    }
    return Config(roles=roles, issuers=issuers, leeway=leeway)


@pytest.fixture
def config(pki: Pki) -> Config:
    return make_config(pki)


@pytest.fixture(name="make_config")
def make_config_fixture(pki: Pki):
    """make_config(leeway=...) -> a fresh Config (tests may change its issuers dict)."""
    return lambda leeway=30: make_config(pki, leeway)


class Minter:
    """Builds grant tokens around a fixed `now`: a valid grant unless told otherwise."""

    now = 1_800_000_000

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self._n = 0

    b64url = staticmethod(b64url)
    public_key = staticmethod(public_key_of)

    def claims(self, drop: tuple[str, ...] = (), **overrides: object) -> dict:
        """The claims of a valid grant, with `overrides` applied and `drop` left out."""
        self._n += 1
        claims: dict = {
            "iss": "corp", "sub": "alice", "aud": "jitaccess", "jti": f"jti-{self._n}",
            "iat": self.now, "exp": self.now + 3600, "role": "docker",
            "hosts": ["web-*"], "reason": "deploy", "ticket": "OPS-1",
            "approved_by": ["bob"],
        }
        claims.update(overrides)
        for name in drop:
            claims.pop(name, None)
        return claims

    def token(self, key: object = None, headers: dict | None = None,
              drop: tuple[str, ...] = (), **overrides: object) -> str:
        """A signed token (by default with the corp key), PyJWT choosing nothing itself."""
        key = self.pki.corp if key is None else key
        alg = algorithm_for(key)
        return jwt.encode(self.claims(drop, **overrides), key, algorithm=alg, headers=headers)

    @staticmethod
    def raw(header: dict, payload: dict | str, signature: str = "") -> str:
        """A token assembled by hand, for shapes PyJWT refuses to produce."""
        body = payload if isinstance(payload, str) else json.dumps(payload)
        return f"{b64url(json.dumps(header))}.{b64url(body)}.{signature}"


@pytest.fixture
def mint(pki: Pki) -> Minter:
    return Minter(pki)

