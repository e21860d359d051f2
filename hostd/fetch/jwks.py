"""What a fetched discovery document and JWKS must be before they reach hostd's cache:
the issuer exactly the configured one, keys public only and each usable for one of the
issuer's algorithms; and how long they stay fresh (Cache-Control max-age, clamped).
Pure: no I/O, so the unit tests feed it hostile documents directly."""

from __future__ import annotations

import base64
import re

from hostd.fetch.http import FetchError

MIN_AGE, MAX_AGE, DEFAULT_AGE = 300, 86400, 3600
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
MIN_RSA_BITS = 2048
MAX_KEYS = 100

# alg -> (kty, curve or None)
ALGORITHMS: dict[str, tuple[str, str | None]] = {
    **{f"RS{n}": ("RSA", None) for n in (256, 384, 512)},
    **{f"PS{n}": ("RSA", None) for n in (256, 384, 512)},
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}
EDDSA_CURVES = ("Ed25519", "Ed448")


def max_age(cache_control: str | None) -> int:
    """Seconds the answer stays fresh: its max-age within [5 min, 24 h], default 1 h;
    no-store/no-cache mean the shortest."""
    if not cache_control:
        return DEFAULT_AGE
    low = cache_control.lower()
    if "no-store" in low or "no-cache" in low:
        return MIN_AGE
    m = re.search(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,12})", low)
    if not m:
        return DEFAULT_AGE
    return max(MIN_AGE, min(MAX_AGE, int(m.group(1))))


def check_discovery(doc: dict, issuer: str) -> dict:
    """The discovery document if its issuer is exactly ours and it names a JWKS."""
    if doc.get("issuer") != issuer:
        raise FetchError(f"discovery issuer {doc.get('issuer')!r} is not the configured "
                         f"{issuer!r}")
    if not isinstance(doc.get("jwks_uri"), str):
        raise FetchError("discovery document has no jwks_uri")
    return doc


def _b64len_bits(value: object) -> int:
    if not isinstance(value, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def usable_for(key: dict, alg: str) -> bool:
    """Whether one public JWK can verify signatures made with alg."""
    kty, curve = ALGORITHMS.get(alg, ("", None))
    if not kty or key.get("kty") != kty:
        return False
    if key.get("alg") not in (None, alg) or key.get("use") not in (None, "sig"):
        return False
    ops = key.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    if kty == "RSA":
        return _b64len_bits(key.get("n")) >= MIN_RSA_BITS and _b64len_bits(key.get("e")) > 1
    if kty == "EC":
        return key.get("crv") == curve and all(isinstance(key.get(c), str) for c in "xy")
    return key.get("crv") in EDDSA_CURVES and isinstance(key.get("x"), str)


def check_jwks(doc: dict, algorithms: list[str]) -> dict:
    """`{"keys": [...]}` with the keys usable for one of `algorithms`; a key with a
    private member fails the whole set (a provider publishing private keys is broken)."""
    keys = doc.get("keys")
    if not isinstance(keys, list) or len(keys) > MAX_KEYS:
        raise FetchError(f"JWKS has no keys list (or more than {MAX_KEYS} keys)")
    kept = []
    for key in keys:
        if not isinstance(key, dict):
            raise FetchError("JWKS holds something that is not a key")
        private = [m for m in PRIVATE_MEMBERS if m in key]
        if private:
            raise FetchError(f"JWKS key {key.get('kid')!r} has private members "
                             f"{', '.join(private)}: refused")
        if any(usable_for(key, alg) for alg in algorithms):
            kept.append(key)
    if not kept:
        raise FetchError(f"JWKS has no key usable for {', '.join(algorithms)}")
    return {"keys": kept}


def key_summary(key: dict, algorithms: list[str]) -> str:
    """`kid (alg, ...)` for `jit idp status`."""
    algs = [a for a in algorithms if usable_for(key, a)]
    return f"{key.get('kid', '(no kid)')} ({', '.join(algs)})"
