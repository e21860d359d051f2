#!/usr/bin/python3
"""Grant verifications per second on one core (issue 2 goal: >= 5,000/s).

Verifies one valid EdDSA grant repeatedly through hostd.policy.grants.verify (signature, claims,
role, host selectors): the whole offline path hostd runs per activation. Also times an
ES256 and an RS256 issuer for comparison. Prints, asserts nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hostd.policy import grants
from hostd.policy.config import Config, Issuer, Role
from hostd.policy.hostmatch import HostFacts
from hostd.policy.keys import PublicKey, algorithm_for, thumbprint

GOAL = 5000


def rate(private_key, seconds: float = 2.0) -> float:
    alg = algorithm_for(private_key)
    pub = private_key.public_key()
    cfg = Config(roles={"docker": Role("docker", groups=("docker",), max_ttl=14400,
                                       issuers=("corp",))},
                 issuers={"corp": Issuer("corp", (PublicKey(thumbprint(pub), alg, pub),),
                                         (alg,))})
    host = HostFacts("web-1", "0" * 32, ())
    now = int(time.time())
    token = grants.issue(private_key, "corp", "alice", "docker", now, now + 3600,
                         ["web-*"], now)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            grants.verify(token, cfg, host, now)
        n += 100
    return n / (time.perf_counter() - start)


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    print("grant verifications per second, one core (hostd.policy.grants.verify)")
    for name, key in (("EdDSA", ed25519.Ed25519PrivateKey.generate()),
                      ("ES256", ec.generate_private_key(ec.SECP256R1())),
                      ("RS256", rsa.generate_private_key(65537, 2048))):
        r = rate(key)
        print(f"  {name}: {r:8.0f}/s   goal {GOAL}/s   ratio {r / GOAL:5.2f}x")


if __name__ == "__main__":
    main()
