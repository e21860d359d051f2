"""Mutational fuzzer for grants.verify, in-process, against a real configuration.

A temporary root holds a policy and issuers loaded by config.load: `corp` (two Ed25519
PEM keys), `idp` (ES256 JWKS), `bank` (RS256 PEM), `multi` (all three algorithms, a key
of each), `narrow` (an Ed25519 and a P-256 key, only EdDSA allowed) and the built-in
`host`. Every case is one token built from a valid grant by claim and header mutations
re-signed with trusted or untrusted keys, algorithm swaps, kid games, byte mutations of
valid tokens, or hand-written odd JSON.

Findings:
- crash: verify raised anything but JitError, or a JitError whose code is not a grant
  refusal of DESIGN.md §12;
- accepted forgery: a token verified although its mutation must make it invalid: signed
  by a key the claimed issuer does not trust, under an algorithm other than the key's,
  unsigned or HMAC-signed, a byte-mutated token whose grant differs from the original's,
  or any accepted grant that breaks the policy (user name, jti, role, issuer, lifetime,
  clock, host, text that is not valid Unicode).

`--seed` makes the sequence of mutations and the Ed25519/P-256 keys deterministic; RSA
keys and ECDSA signatures are random per run, so a finding prints its token in full.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402

from hostd.errors import GRANT_REFUSALS, JitError  # noqa: E402
from hostd.paths import Paths  # noqa: E402
from hostd.policy import config as config_mod  # noqa: E402
from hostd.policy import grants  # noqa: E402
from hostd.policy.hostmatch import HostFacts, matches  # noqa: E402
from hostd.policy.keys import algorithm_for, public_pem, thumbprint  # noqa: E402

NOW = 1_800_000_000
LEEWAY = 30
MACHINE_ID = "0123456789abcdef0123456789abcdef"
JTI = re.compile(r"[\x21-\x7e]{1,128}")
# verify alone never says wrong_user or replayed: those need host state (core.py)
VERIFY_CODES = frozenset(GRANT_REFUSALS) - {"wrong_user", "replayed"}
ALGS = jwt.algorithms.get_default_algorithms()

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "idp", "bank", "multi", "narrow", "host"]

[roles.ops]
groups = ["docker", "adm"]
max_ttl = "1h"
issuers = ["corp"]

[roles.db]
groups = ["adm"]
max_ttl = "30m"
issuers = ["bank", "multi"]

[daemon]
leeway = "30s"
"""


def b64url(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Signer:
    """A private key, the algorithm it signs with, its kid and whom it signs for."""

    name: str
    key: object
    alg: str
    kid: str
    issuer: str | None  # None: trusted by no issuer of the host

    def sign(self, signing_input: bytes) -> bytes:
        algo = ALGS[self.alg]
        return algo.sign(signing_input, self.key)


@dataclass
class World:
    """The host under test: its configuration, facts and the keys around it."""

    config: config_mod.Config
    host: HostFacts
    signers: list[Signer]
    root: Path
    valid: list[tuple[str, grants.Grant, Signer]] = field(default_factory=list)

    @property
    def trusted(self) -> list[Signer]:
        return [s for s in self.signers if s.issuer is not None]

    @property
    def strangers(self) -> list[Signer]:
        return [s for s in self.signers if s.issuer is None]


def _ed(rng: random.Random) -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))


def _ec(rng: random.Random) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(rng.randrange(1, 2**255), ec.SECP256R1())


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: object, kid: str) -> dict:
    pub = key.public_key()  # type: ignore[attr-defined]
    cls = {"EdDSA": jwt.algorithms.OKPAlgorithm, "ES256": jwt.algorithms.ECAlgorithm,
           "RS256": jwt.algorithms.RSAAlgorithm}[algorithm_for(pub)]
    return dict(json.loads(cls.to_jwk(pub)), kid=kid, use="sig")


def build_world(rng: random.Random) -> World:
    """Write a root with policy, issuers and keys; load it the way hostd does."""
    root = Path(tempfile.mkdtemp(prefix="jit-fuzz-"))
    paths = Paths.for_root(root)
    keys_dir = root / "etc" / "jit" / "keys"
    keys_dir.mkdir(parents=True)
    paths.issuers_dir.mkdir(parents=True)
    paths.config.write_text(POLICY)
    k = {"corp1": _ed(rng), "corp2": _ed(rng), "idp": _ec(rng), "bank": _rsa(),
         "multi_ed": _ed(rng), "multi_ec": _ec(rng), "multi_rsa": _rsa(), "host": _ed(rng),
         "narrow_ed": _ed(rng), "narrow_ec": _ec(rng),
         "stranger_ed": _ed(rng), "stranger_ec": _ec(rng), "stranger_rsa": _rsa()}
    for name in ("corp1", "corp2", "bank", "multi_ed", "multi_ec", "multi_rsa", "narrow_ed",
                 "narrow_ec"):
        (keys_dir / f"{name}.pub").write_bytes(public_pem(k[name]))
    (keys_dir / "idp.jwks").write_text(json.dumps({"keys": [_jwk(k["idp"], "idp-2026")]}))
    paths.host_key_pub.parent.mkdir(parents=True, exist_ok=True)
    paths.host_key_pub.write_bytes(public_pem(k["host"]))
    issuers = {
        "corp": ('public_keys = ["/etc/jit/keys/corp1.pub", "/etc/jit/keys/corp2.pub"]',
                 '["EdDSA"]'),
        "idp": ('jwks = "/etc/jit/keys/idp.jwks"', '["ES256"]'),
        "bank": ('public_keys = ["/etc/jit/keys/bank.pub"]', '["RS256"]'),
        "multi": ('public_keys = ["/etc/jit/keys/multi_ed.pub", "/etc/jit/keys/multi_ec.pub",'
                  ' "/etc/jit/keys/multi_rsa.pub"]', '["EdDSA", "ES256", "RS256"]'),
        # an ES256 key in the file that the allow-list leaves out: it must never verify
        "narrow": ('public_keys = ["/etc/jit/keys/narrow_ed.pub", "/etc/jit/keys/narrow_ec.pub"]',
                   '["EdDSA"]'),
    }
    for name, (source, algs) in issuers.items():
        (paths.issuers_dir / f"{name}.toml").write_text(
            f'name = "{name}"\n{source}\nalgorithms = {algs}\n')
    cfg = config_mod.load(paths)
    owner = {"corp1": "corp", "corp2": "corp", "idp": "idp", "bank": "bank",
             "multi_ed": "multi", "multi_ec": "multi", "multi_rsa": "multi", "host": "host",
             "narrow_ed": "narrow"}
    signers = []
    for name, key in k.items():
        kid = "idp-2026" if name == "idp" else thumbprint(key.public_key())
        signers.append(Signer(name, key, algorithm_for(key), kid, owner.get(name)))
    host = HostFacts(hostname="web-01.example.com", machine_id=MACHINE_ID,
                     addresses=tuple(__import__("ipaddress").ip_address(a)
                                     for a in ("10.1.2.3", "2001:db8::7")))
    return World(cfg, host, signers, root)


# values --------------------------------------------------------------------------------

# lookalikes: Cyrillic s/e/a, fullwidth letters, zero-width and soft-hyphen characters
LOOKALIKE_NAMES = ["\u0455ub", "sub\u200b", "SUB", " sub", "sub ", "\uff53\uff55\uff42",
                   "exp\u0000", "\u0435xp", "r\u03bfle", "rol\u0435", "aud\ufeff",
                   "hosts\u00ad", "iss\u200d", "kid\u2060"]
TEXTS = ["", "alice", "root", "bob", "alice\n", "alice\r", "alice\x00", "Alice", "\u0430lice",
         "\uff41\uff4c\uff49\uff43\uff45", "alice$", "-alice", "_svc", "a" * 32, "a" * 33,
         "x\udc80", "\ud800",
         "é", "\u202eecila", "a b", "../root", "docker", "ops", "db", "docker\n", "corp",
         "multi", "host", "jitaccess", "JITACCESS", "jitaccess\n", "r" * 1024, "r" * 1025,
         "j" * 128, "j" * 129, "web-*", "*", "\t", "%admins", "alice@corp", "😀"]
HOSTS = [["*"], ["web-*"], ["db-*"], [f"machine-id:{MACHINE_ID}"], ["machine-id:" + "f" * 32],
         ["10.0.0.0/8"], ["10.1.2.3"], ["0.0.0.0/0"], ["::/0"], ["2001:db8::/32"], [""],
         ["web-*\n"], ["*"] * 65, ["*"] * 64, ["web-01.example.com."], [" web-*"],
         ["[w]eb-*"], ["**"], ["web-01.example.com"], ["WEB-01.EXAMPLE.COM"], [5], "web-*",
         [], [None], [["*"]], ["10.1.2.3/33"], ["machine-id:"], ["*\udc80"],
         [f"machine-id:{MACHINE_ID}\n"], ["10.1.2.3\n"], ["web-0[1-2].example.com"]]


def _times(rng: random.Random) -> object:
    return rng.choice([
        NOW, NOW + 3600, NOW - 3600, NOW + LEEWAY, NOW + LEEWAY + 1, NOW - LEEWAY,
        NOW - LEEWAY - 1, NOW + 4 * 3600, NOW + 4 * 3600 + 1, 0, -1, 2**40 - 1, 2**40,
        2**63, -(2**63), 10**300, NOW + 0.5, float(NOW), 1e308, -0.0, True, False, None,
        str(NOW), [NOW], {"t": NOW}, NOW + rng.randrange(-10**6, 10**6),
    ])


def _value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(10)
    if pick < 4:
        return rng.choice(TEXTS)
    if pick < 6:
        return _times(rng)
    if pick < 7 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if pick < 8 and depth < 3:
        return {rng.choice(TEXTS): _value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.choice([None, True, False, 0, -1, 1.5, 2**70, [], {}, ["jitaccess"], [1]])


def valid_claims(rng: random.Random, issuer: str, n: int) -> dict:
    claims: dict = {"iss": issuer, "sub": "alice", "aud": "jitaccess", "jti": f"fuzz-{n}",
                    "iat": NOW, "exp": NOW + 3600, "role": "docker", "hosts": ["web-*"]}
    if rng.random() < 0.5:
        claims.update(reason="deploy", ticket="OPS-1", approved_by=["bob"])
    if rng.random() < 0.3:
        claims["nbf"] = NOW - 10
    return claims


# token building --------------------------------------------------------------------------

def assemble(header: object, payload: object, signer: Signer | None,
             header_text: str | None = None, payload_text: str | None = None,
             signature: bytes | None = None) -> str:
    """A compact token; text overrides let odd JSON through untouched."""
    h = header_text if header_text is not None else json.dumps(header)
    p = payload_text if payload_text is not None else json.dumps(payload)
    signing_input = f"{b64url(h)}.{b64url(p)}"
    if signature is None:
        signature = signer.sign(signing_input.encode()) if signer else b""
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class Case:
    kind: str
    token: object
    # oracle: "never" (must not verify), "signer" (only if signer is trusted for the
    # claimed issuer under its own algorithm), "same" (only to one of `originals`),
    # "valid" (a control that must verify)
    oracle: str
    signer: Signer | None = None
    header_alg: object = None
    originals: tuple[grants.Grant, ...] = ()


class Generator:
    def __init__(self, world: World, rng: random.Random) -> None:
        self.w = world
        self.rng = rng
        self.n = 0
        self.kinds: list[tuple[Callable[[], Case], int]] = [
            (self.control, 2), (self.claim_mutation, 22), (self.header_mutation, 10),
            (self.stranger, 6), (self.cross_issuer, 6), (self.alg_swap, 8),
            (self.hmac_confusion, 4), (self.unsigned, 3), (self.byte_mutation, 24),
            (self.mix_and_match, 4), (self.odd_json, 10), (self.odd_input, 1),
        ]
        self.total = sum(w for _, w in self.kinds)

    def next(self) -> Case:
        self.n += 1
        pick = self.rng.randrange(self.total)
        for make, weight in self.kinds:
            if pick < weight:
                return make()
            pick -= weight
        raise AssertionError("unreachable")

    # helpers

    def _trusted(self) -> Signer:
        return self.rng.choice(self.w.trusted)

    def _header(self, signer: Signer) -> dict:
        header: dict = {"alg": signer.alg, "typ": "JWT"}
        if self.rng.random() < 0.6:
            header["kid"] = signer.kid
        return header

    def _claims(self, signer: Signer) -> dict:
        return valid_claims(self.rng, signer.issuer or "corp", self.n)

    def _mutate_claims(self, claims: dict) -> None:
        rng = self.rng
        for _ in range(rng.randrange(1, 4)):
            name = rng.choice(["iss", "sub", "aud", "jti", "iat", "nbf", "exp", "role",
                               "hosts", "reason", "ticket", "approved_by", "x"])
            action = rng.randrange(9)
            if action == 0:
                claims.pop(name, None)
            elif action == 1:
                claims[rng.choice(LOOKALIKE_NAMES)] = claims.get(name, _value(rng))
                if rng.random() < 0.5:
                    claims.pop(name, None)
            elif action == 2 or name in ("iat", "nbf", "exp"):
                claims[name] = _times(rng) if name in ("iat", "nbf", "exp") else _value(rng)
            elif action == 3 or name == "hosts":
                claims["hosts"] = rng.choice(HOSTS)
            elif action == 4:
                claims["iss"] = rng.choice(["corp", "idp", "bank", "multi", "host", "nope",
                                            "Corp", "corp\n", "", "x\udc80"])
            elif action == 5:
                claims["role"] = rng.choice(["docker", "ops", "db", "nope", "docker\n",
                                             "Docker", "", "x\udc80"])
            elif action == 6:
                claims["aud"] = rng.choice(["jitaccess", ["jitaccess"], "JITACCESS",
                                            ["x", "jitaccess"], [], "jitaccess\n", ["x"],
                                            [["jitaccess"]], None])
            elif action == 7:
                claims[name] = rng.choice(TEXTS)
            else:
                claims[name] = _value(rng)

    # case makers

    def control(self) -> Case:
        signer = self._trusted()
        token = assemble(self._header(signer), self._claims(signer), signer)
        return Case("control", token, "valid", signer, signer.alg)

    def claim_mutation(self) -> Case:
        signer = self._trusted()
        claims = self._claims(signer)
        self._mutate_claims(claims)
        header = self._header(signer)
        return Case("claims", assemble(header, claims, signer), "signer", signer, signer.alg)

    def header_mutation(self) -> Case:
        rng = self.rng
        signer = self._trusted()
        header = self._header(signer)
        others = self.w.signers
        for _ in range(rng.randrange(1, 3)):
            action = rng.randrange(7)
            if action == 0:
                header["kid"] = rng.choice(others).kid
            elif action == 1:
                header["kid"] = rng.choice([5, None, "", "../../../etc/passwd", "x" * 5000,
                                            "\udc80", ["a"], {"a": 1}, signer.kid + "\n",
                                            signer.kid.upper()])
            elif action == 2:
                header.pop(rng.choice(["kid", "typ", "alg"]), None)
            elif action == 3:
                header["typ"] = rng.choice(["JWT", "at+jwt", 5, None, "", "\udc80"])
            elif action == 4:
                stranger = rng.choice(self.w.strangers)
                header["jwk"] = _jwk(stranger.key, "mine")  # an embedded key is ignored
                header[rng.choice(["jku", "x5u"])] = "https://attacker.example/keys"
            elif action == 5:
                header[rng.choice(["crit", "b64", "zip", "cty", "x5c"])] = _value(rng)
            else:
                header[rng.choice(LOOKALIKE_NAMES)] = _value(rng)
        alg = header.get("alg")
        return Case("header", assemble(header, self._claims(signer), signer), "signer",
                    signer, alg)

    def stranger(self) -> Case:
        """Re-signed with a key no issuer trusts, posing as a trusted one in every way."""
        stranger = self.rng.choice(self.w.strangers)
        victim = self._trusted()
        if stranger.name == "narrow_ec":  # listed in narrow's file, its algorithm is not
            victim = next(s for s in self.w.trusted if s.issuer == "narrow")
        header = {"alg": stranger.alg, "typ": "JWT"}
        if self.rng.random() < 0.7:
            header["kid"] = self.rng.choice([victim.kid, stranger.kid])
        claims = valid_claims(self.rng, victim.issuer or "corp", self.n)
        if self.rng.random() < 0.3:
            self._mutate_claims(claims)
        return Case("stranger", assemble(header, claims, stranger), "never", stranger,
                    stranger.alg)

    def cross_issuer(self) -> Case:
        """A trusted key signing for an issuer that does not own it."""
        signer = self._trusted()
        victim = self.rng.choice([s for s in self.w.trusted if s.issuer != signer.issuer])
        header = self._header(signer)
        if self.rng.random() < 0.5:
            header["kid"] = victim.kid
        claims = valid_claims(self.rng, victim.issuer or "corp", self.n)
        return Case("cross-issuer", assemble(header, claims, signer), "signer", signer,
                    signer.alg)

    def alg_swap(self) -> Case:
        """The header names another algorithm than the one the key signed with."""
        signer = self._trusted()
        header = self._header(signer)
        header["alg"] = self.rng.choice(
            [a for a in ("EdDSA", "ES256", "RS256", "PS256", "ES384", "RS512", "ES256K",
                         "eddsa", "EdDSA\n", "none", "None", "NONE", "", None, 5,
                         ["EdDSA"], "HS256") if a != signer.alg])
        claims = self._claims(signer)
        return Case("alg-swap", assemble(header, claims, signer), "never", signer,
                    header["alg"])

    def hmac_confusion(self) -> Case:
        """HS256/384/512 keyed with a trusted public key in some encoding."""
        victim = self._trusted()
        pub = victim.key.public_key()  # type: ignore[attr-defined]
        secret = self.rng.choice([
            public_pem(victim.key),
            pub.public_bytes(serialization.Encoding.DER,
                             serialization.PublicFormat.SubjectPublicKeyInfo),
            json.dumps(_jwk(victim.key, victim.kid)).encode(),
            victim.kid.encode(), b"",
        ])
        alg, digest = self.rng.choice([("HS256", hashlib.sha256), ("HS384", hashlib.sha384),
                                       ("HS512", hashlib.sha512)])
        header = {"alg": alg, "typ": "JWT", "kid": victim.kid}
        claims = valid_claims(self.rng, victim.issuer or "corp", self.n)
        signing_input = f"{b64url(json.dumps(header))}.{b64url(json.dumps(claims))}"
        mac = hmac.new(secret, signing_input.encode(), digest).digest()
        return Case("hmac", f"{signing_input}.{b64url(mac)}", "never", None, alg)

    def unsigned(self) -> Case:
        victim = self._trusted()
        header = {"alg": self.rng.choice(["none", "None", victim.alg]), "typ": "JWT"}
        claims = valid_claims(self.rng, victim.issuer or "corp", self.n)
        sig = self.rng.choice([b"", b"\x00" * 64, self.rng.randbytes(64), b"sig"])
        return Case("unsigned", assemble(header, claims, None, signature=sig), "never", None,
                    header["alg"])

    def _valid_token(self) -> tuple[str, grants.Grant, Signer]:
        return self.rng.choice(self.w.valid)

    def byte_mutation(self) -> Case:
        token, grant, signer = self._valid_token()
        chars = list(token)
        rng = self.rng
        for _ in range(rng.randrange(1, 4)):
            action = rng.randrange(11)
            pos = rng.randrange(len(chars) + 1)
            if action == 0 and pos < len(chars):
                chars[pos] = chr(ord(chars[pos]) ^ (1 << rng.randrange(8)))
            elif action == 1 and pos < len(chars):
                chars[pos] = rng.choice(
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ "
                    "\n\t\x00é\udc80")
            elif action == 2:
                chars.insert(pos, rng.choice("A_-=.+/ \n\x00\udc80é"))
            elif action == 3 and pos < len(chars):
                del chars[pos]
            elif action == 4:
                chars = chars[:pos]
            elif action == 5:
                parts = "".join(chars).split(".")
                i = rng.randrange(len(parts))
                parts[i] = parts[i] + rng.choice(["=", "==", "===", "===="])
                chars = list(".".join(parts))
            elif action == 6:
                chars = list(rng.choice([" ", "\n", "\t", "\r\n", "\x0b"])) + chars
            elif action == 7:
                chars += list(rng.choice([" ", "\n", ".", "..", "=", "\x00", ".e30"]))
            elif action == 8 and pos < len(chars):
                chars[pos] = chars[pos].swapcase()
            elif action == 9:
                parts = "".join(chars).split(".")
                rng.shuffle(parts)
                chars = list(".".join(parts))
            else:
                parts = "".join(chars).split(".")
                i = rng.randrange(len(parts))
                parts.insert(i, parts[i])
                chars = list(".".join(parts))
        return Case("bytes", "".join(chars), "same", signer, signer.alg, (grant,))

    def mix_and_match(self) -> Case:
        """Segments of two valid tokens spliced: valid only if it is one of them again."""
        (t1, g1, _), (t2, g2, _) = self._valid_token(), self._valid_token()
        a, b = t1.split("."), t2.split(".")
        pick = self.rng.randrange(3)
        mixed = [a[0], a[1], b[2]] if pick == 0 else [a[0], b[1], a[2]] if pick == 1 \
            else [b[0], a[1], a[2]]
        token = ".".join(mixed)
        originals = tuple(g for t, g in ((t1, g1), (t2, g2)) if t == token)
        return Case("mix", token, "same", None, None, originals)

    def odd_json(self) -> Case:
        rng = self.rng
        signer = self._trusted()
        claims = self._claims(signer)
        body = json.dumps(claims)[:-1]
        depth = rng.randrange(200, 6000)
        extra = rng.choice([
            '"x": ' + "[" * depth + "]" * depth,
            '"x": ' + '{"a":' * depth + "1" + "}" * depth,
            '"x": ' + "9" * rng.randrange(4290, 4400),
            '"exp": ' + "1" * rng.randrange(4290, 4400),
            '"x": NaN', '"exp": NaN', '"exp": Infinity', '"nbf": -Infinity', '"x": 1e400',
            '"exp": 1800003600.0', '"exp": 1.8000036e9', '"exp": 18000036E5', '"iat": -0',
            '"sub": "root"', '"sub": "alice", "sub": "root"', '"iss": "bank"',
            '"reason": "\\udc80"', '"ticket": "\\ud800x"', '"sub": "alice\\u0000"',
            '"\\udc80": 1', '"reason": "\\ud83d\\ude00"', '"approved_by": ["\\udfff"]',
            '"role": "docker\\n"', '"sub": "alice\\n"', '"jti": "j\\n"',
            '"hosts": ["web-*", "\\udc80"]', '"\u0455ub": "root"', '"aud": "jitaccess\\u200b"',
        ])
        text = body + ", " + extra + "}"
        wrap = rng.randrange(10)
        if wrap == 0:
            text = "\ufeff" + text
        elif wrap == 1:
            text = text + " trailing"
        elif wrap == 2:
            text = "[" + text + "]"
        elif wrap == 3:
            text = rng.choice(["null", "1", '"str"', "", " ", "{", "}", "[]", "{}"])
        header = self._header(signer)
        header_text = None
        if rng.random() < 0.2:
            header_text = json.dumps(header)[:-1] + ", " + extra + "}"
        if rng.random() < 0.1:
            payload_bytes = text.encode("utf-8", "surrogatepass")
            payload_bytes = payload_bytes.replace(b"alice", b"al\xe9ce", 1)
            signing_input = f"{b64url(json.dumps(header))}.{b64url(payload_bytes)}"
            token = f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"
            return Case("odd-json", token, "signer", signer, signer.alg)
        token = assemble(header, None, signer, header_text=header_text, payload_text=text)
        return Case("odd-json", token, "signer", signer, signer.alg)

    def odd_input(self) -> Case:
        token, _, _ = self._valid_token()
        value = self.rng.choice([
            None, 5, token.encode(), [token], {"token": token}, "", ".", "..", "...",
            token + " " * (grants.MAX_TOKEN - len(token) + 1), "a." * 9000, "\udc80",
            "x" * (grants.MAX_TOKEN + 1), bytearray(b"a.b.c"), token.replace(".", "\u2024"),
        ])
        return Case("odd-input", value, "never")


# oracle ----------------------------------------------------------------------------------

def policy_problems(g: grants.Grant, world: World) -> list[str]:
    """What an accepted grant may never be, whoever signed it."""
    cfg, problems = world.config, []
    texts = [g.jti, g.issuer, g.user, g.role, g.reason, g.ticket, *g.hosts, *g.approved_by]
    for text in texts:
        if not isinstance(text, str):
            problems.append(f"non-text {text!r}")
            continue
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            problems.append(f"lone surrogate in {text!r}")
    if not isinstance(g.user, str) or not config_mod.USER_NAME.fullmatch(g.user):
        problems.append(f"user {g.user!r} is not a user name")
    if not isinstance(g.jti, str) or not JTI.fullmatch(g.jti):
        problems.append(f"jti {g.jti!r}")
    role = cfg.roles.get(g.role)
    if role is None or g.issuer not in role.issuers or g.groups != role.groups:
        problems.append(f"role {g.role!r} not grantable by {g.issuer!r}")
    if g.issuer not in cfg.issuers:
        problems.append(f"issuer {g.issuer!r}")
    if any(type(t) is not int for t in (g.not_before, g.exp, g.iat)):
        problems.append("times are not integers")
    elif role is not None:
        # a start ahead within the role's max_lead_time is accepted and scheduled
        # (issue 22); one further ahead, or an end already past, is not valid now
        if not (NOW <= g.exp + cfg.leeway
                and g.not_before - NOW <= role.max_lead_time + cfg.leeway):
            problems.append("not valid now")
        if not 0 < g.exp - g.not_before <= role.max_ttl:
            problems.append("lifetime")
    if len(g.reason) > grants.MAX_TEXT or len(g.ticket) > grants.MAX_TEXT:
        problems.append("text too long")
    try:
        if not matches(list(g.hosts), world.host):
            problems.append("hosts do not name this host")
    except ValueError as exc:
        problems.append(f"bad host selector: {exc}")
    return problems


def signed_claims(token: object) -> dict | None:
    """The payload of a token, decoded leniently and apart from grants.py."""
    try:
        body = str(token).strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (IndexError, ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def unfaithful(g: grants.Grant, token: object, world: World) -> str | None:
    """An accepted grant must say what its signed payload says, nothing else."""
    c = signed_claims(token)
    if c is None:
        return "accepted a token whose payload does not decode"
    issuer = world.config.issuers.get(c.get("iss"))  # type: ignore[arg-type]
    if issuer is None:
        return f"accepted for unconfigured issuer {c.get('iss')!r}"
    iat = c.get("iat")
    nbf = c.get("nbf") if c.get("nbf") is not None else iat
    approved = c.get("approved_by", [])
    approved = ([approved] if approved else []) if isinstance(approved, str) else approved
    expected = {
        "issuer": c.get("iss"), "user": c.get(issuer.username_claim), "jti": c.get("jti"),
        "role": c.get("role"), "hosts": tuple(c.get("hosts") or ()), "iat": iat,
        "exp": c.get("exp"), "not_before": max(iat, nbf) if isinstance(iat, int) and
        isinstance(nbf, int) else None, "reason": c.get("reason", ""),
        "ticket": c.get("ticket", ""), "approved_by": tuple(approved),
    }
    wrong = [name for name, value in expected.items() if getattr(g, name) != value]
    return f"grant differs from its signed claims in {wrong}" if wrong else None


def judge(case: Case, g: grants.Grant, world: World) -> str | None:
    """Why this accepted grant is a forgery, or None."""
    problems = policy_problems(g, world)
    unsaid = unfaithful(g, case.token, world)
    if unsaid:
        problems.append(unsaid)
    if problems:
        return "; ".join(problems)
    if case.oracle == "never":
        return "must never verify"
    if case.oracle == "same" and g not in case.originals:
        return "a mutated token verified to a grant other than the original's"
    if case.oracle == "signer":
        s = case.signer
        issuer = world.config.issuers[g.issuer]
        if s is None or s.issuer != g.issuer or case.header_alg != s.alg \
                or s.alg not in issuer.algorithms:
            return f"verified for issuer {g.issuer} though signed by {s and s.name}"
    return None


@dataclass
class Finding:
    kind: str  # crash or forgery
    case: int
    mutation: str
    token: object
    detail: str


@dataclass
class Result:
    cases: int = 0
    seconds: float = 0.0
    accepted: int = 0
    findings: list[Finding] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)

    @property
    def crashes(self) -> int:
        return sum(f.kind == "crash" for f in self.findings)

    @property
    def forgeries(self) -> int:
        return sum(f.kind == "forgery" for f in self.findings)

    def summary(self) -> str:
        rate = self.cases / self.seconds if self.seconds else 0.0
        return (f"fuzz_tokens: {self.cases} cases, {rate:.0f}/s, {self.crashes} crashes, "
                f"{self.forgeries} accepted forgeries")


def check_one(case: Case, world: World, index: int, result: Result) -> None:
    try:
        g = grants.verify(case.token, world.config, world.host, NOW)
    except JitError as exc:
        result.codes[exc.code] = result.codes.get(exc.code, 0) + 1
        if exc.code not in VERIFY_CODES:
            result.findings.append(Finding("crash", index, case.kind, case.token,
                                           f"unexpected code {exc.code}: {exc.message}"))
        elif case.oracle == "valid":
            result.findings.append(Finding("crash", index, case.kind, case.token,
                                           f"control refused: {exc.code}: {exc.message}"))
        return
    except Exception as exc:  # the point: anything else is a finding
        result.findings.append(Finding("crash", index, case.kind, case.token,
                                       f"{type(exc).__name__}: {exc}\n"
                                       + traceback.format_exc(limit=6)))
        return
    result.accepted += 1
    why = judge(case, g, world)
    if why:
        result.findings.append(Finding("forgery", index, case.kind, case.token, why))


def prepare(world: World, rng: random.Random) -> None:
    """Valid tokens of every trusted signer, the originals of byte mutations."""
    for i, signer in enumerate(world.trusted * 3):
        header = {"alg": signer.alg, "typ": "JWT", "kid": signer.kid} if i % 2 else \
            {"alg": signer.alg}
        token = assemble(header, valid_claims(rng, signer.issuer or "corp", -i), signer)
        world.valid.append((token, grants.verify(token, world.config, world.host, NOW),
                            signer))


def run(cases: int, seed: int, progress: bool = False) -> Result:
    rng = random.Random(seed)
    world = build_world(rng)
    try:
        prepare(world, rng)
        gen = Generator(world, rng)
        result = Result()
        start = time.monotonic()
        for i in range(cases):
            check_one(gen.next(), world, i, result)
            if progress and i and i % 10000 == 0:
                print(f"  {i} cases, {len(result.findings)} findings", file=sys.stderr)
        result.cases = cases
        result.seconds = time.monotonic() - start
        return result
    finally:
        shutil.rmtree(world.root, ignore_errors=True)


def report(result: Result, seed: int, limit: int = 10) -> None:
    print(result.summary())
    for f in result.findings[:limit]:
        token = f.token if not isinstance(f.token, str) or len(f.token) < 2000 \
            else f.token[:2000] + f"...({len(f.token)} chars)"
        print(f"- {f.kind} in case {f.case} ({f.mutation}, seed {seed}): {f.detail}\n"
              f"  token: {token!r}")
    if len(result.findings) > limit:
        print(f"... and {len(result.findings) - limit} more")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    p.add_argument("--progress", action="store_true")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzz_tokens: seed {seed}", file=sys.stderr)
    result = run(args.cases, seed, args.progress)
    report(result, seed)
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
