"""Issuer keys: PEM files or a JWKS document, each key known by a `kid`.

A JWKS key's kid is its own `kid`; a PEM key's kid is its RFC 7638 thumbprint, which
`jit issue` puts in the header. A kid only ever *selects* among keys already loaded from
the issuer's configuration: it is never a file name or a URL.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hostd.errors import JitError
from hostd.policy.trust import read_file

SUPPORTED_ALGORITHMS = ("EdDSA", "ES256", "RS256")


@dataclass(frozen=True)
class PublicKey:
    kid: str
    algorithm: str  # the one JWS algorithm this key may verify
    key: object  # a cryptography public key object

    def __repr__(self) -> str:
        return f"PublicKey(kid={self.kid!r}, algorithm={self.algorithm!r})"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8 or 1, "big"))


def algorithm_for(key: object) -> str:
    """The JWS algorithm a key type implies; anything else is refused."""
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp256r1":
            raise ValueError(f"EC curve {key.curve.name} not supported (only P-256 / ES256)")
        return "ES256"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise ValueError(f"RSA key of {key.key_size} bits is too small (minimum 2048)")
        return "RS256"
    raise ValueError(f"unsupported key type {type(key).__name__}")


def thumbprint(public_key: object) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        members = {"crv": "Ed25519", "kty": "OKP", "x": _b64(raw)}
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        nums = public_key.public_numbers()
        members = {"crv": "P-256", "kty": "EC", "x": _b64(nums.x.to_bytes(32, "big")),
                   "y": _b64(nums.y.to_bytes(32, "big"))}
    elif isinstance(public_key, rsa.RSAPublicKey):
        nums = public_key.public_numbers()
        members = {"e": _int_b64(nums.e), "kty": "RSA", "n": _int_b64(nums.n)}
    else:
        raise ValueError(f"unsupported key type {type(public_key).__name__}")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


def load_pem_public(path: Path, trusted_from: Path | None = None) -> PublicKey:
    """A public key from a PEM file (a private key file is accepted: its public half).
    With `trusted_from` (a root), the file must be root's alone (trust.check)."""
    data = read_file(path, trusted_from)
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    algorithm = algorithm_for(key)  # first: refuses curves and sizes thumbprint cannot take
    return PublicKey(thumbprint(key), algorithm, key)


def load_jwks(path: Path, trusted_from: Path | None = None) -> list[PublicKey]:
    """Public keys of a JWKS document; private members are refused, every key needs a kid.
    With `trusted_from` (a root), the file must be root's alone (trust.check)."""
    import jwt

    doc = json.loads(read_file(path, trusted_from).decode("utf-8"))
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys = []
    for i, jwk in enumerate(doc["keys"]):
        if not isinstance(jwk, dict):
            raise ValueError(f"keys[{i}] is not an object")
        if "d" in jwk:
            raise ValueError(f"keys[{i}] holds a private key")
        if jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError(f"keys[{i}] has no kid")
        try:
            key = jwt.PyJWK(jwk).key
        except jwt.PyJWTError as exc:
            raise ValueError(f"keys[{i}] ({kid}): {exc}") from None
        alg = algorithm_for(key)
        if "alg" in jwk and jwk["alg"] != alg:
            raise ValueError(f"keys[{i}] ({kid}): alg {jwk['alg']} does not fit its key type")
        keys.append(PublicKey(kid, alg, key))
    return keys


def generate_ed25519(path: Path) -> PublicKey:
    """Write a new Ed25519 private key (PEM, 0600) and its public key at PATH.pub."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    write_public(path, key)
    return PublicKey(thumbprint(key.public_key()), "EdDSA", key.public_key())


def public_pem(private_key: object) -> bytes:
    return private_key.public_key().public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_public(path: Path, private_key: object) -> None:
    """PATH.pub (0644) from the private key at PATH, replaced atomically if it differs.

    The temporary file is created afresh (O_EXCL|O_NOFOLLOW) and chmod-ed through its
    fd: whoever can write the directory must not get root to write or chmod another file
    through a planted PATH.pub.tmp symlink."""
    pub_path = path.with_name(path.name + ".pub")
    pem = public_pem(private_key)
    if _same_content(pub_path, pem):
        return
    tmp = pub_path.with_name(pub_path.name + ".tmp")
    try:
        os.unlink(tmp)  # a stale one, or a planted symlink: unlink does not follow it
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)
            fh.write(pem)
        os.replace(tmp, pub_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _same_content(path: Path, data: bytes) -> bool:
    """True if `path` is a regular file holding `data` (a FIFO there must not block us)."""
    try:
        return read_file(path) == data
    except (OSError, JitError):
        return False


def load_private(path: Path, trusted_from: Path | None = None) -> object:
    """A private key from a regular file (read without blocking: a FIFO must not hang us).
    With `trusted_from` (a root: hostd's own key), the file must be root's alone."""
    return serialization.load_pem_private_key(read_file(path, trusted_from), password=None)
