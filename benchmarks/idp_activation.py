#!/usr/bin/python3
"""IdP-token activation vs issuer-key activation, side by side (issue 21 goal: the IdP
path adds <= 5 ms).

Runs a real jit-hostd in a sandbox root (as root) with an OIDC issuer whose key cache
holds 4 keys (RSA, EC P-256, Ed25519, RSA), as the fetcher writes it. Each round
activates an EdDSA grant of an issuer key (`grant.activate`) and an RS256 ID token
(`idp.activate`) for the same user and role, alternating so both see the same machine,
and revokes each before the next; only the activation call is timed, over the real
socket. Then the in-process verification alone (grants.verify vs idptoken.verify with
the parsed cache) for the part that differs. Prints only.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests"))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

from idp_kit import Signer, issuer_toml, jwks, keycloak_claims, write_cache  # noqa: E402
from sandbox import Sandbox  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.policy import grants, idptoken  # noqa: E402
from hostd.policy.keys import load_private  # noqa: E402
from hostd.protocol import request  # noqa: E402

ROUNDS = 200
GOAL_MS = 5.0
POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "corp-idp"]
"""


def timed(client: Client, op: str, **fields: object) -> tuple[float, dict]:
    t = time.perf_counter()
    answer = client.call(request(op, **fields))
    elapsed = time.perf_counter() - t
    if not answer.get("ok"):
        raise SystemExit(f"{op} refused: {answer}")
    return elapsed, answer


def side_by_side(box: Sandbox, signers: list[Signer]) -> tuple[list[float], list[float]]:
    key = load_private(box.key)
    client = Client(box.socket_path)
    now = int(box.now())
    keyed = [grants.issue(key, "corp", "alice", "docker", now, now + 3600, ["testhost"], now)
             for _ in range(ROUNDS)]
    idp = [signers[0].sign(keycloak_claims(now)) for _ in range(ROUNDS)]
    # first IdP call parses the cache (once per change of its files): reported apart
    first, answer = timed(client, "idp.activate", token=idp.pop(), role="docker")
    client.call(request("grant.revoke", id=answer["grant"]["id"]))
    print(f"first IdP activation (parses the 4-key JWKS): {first * 1000:.2f} ms")
    key_ms, idp_ms = [], []
    for k_token, i_token in zip(keyed, idp, strict=False):
        t, answer = timed(client, "grant.activate", token=k_token)
        key_ms.append(t * 1000)
        client.call(request("grant.revoke", id=answer["grant"]["id"]))
        t, answer = timed(client, "idp.activate", token=i_token, role="docker")
        idp_ms.append(t * 1000)
        client.call(request("grant.revoke", id=answer["grant"]["id"]))
    return key_ms, idp_ms


def verify_only(signers: list[Signer], box: Sandbox) -> None:
    """The part that differs, in process: verification of each kind, per call."""
    from hostd.paths import Paths
    from hostd.policy import config as config_mod
    from hostd.policy.hostmatch import HostFacts
    from hostd.state.idpcache import IdpCache

    paths = Paths.for_root(box.root)
    cfg = config_mod.load(paths)
    cache = IdpCache(paths.idp_dir, trusted_from=paths.root)
    host = HostFacts("testhost", "0123456789abcdef0123456789abcdef", ())
    now = int(time.time())
    key = load_private(box.key)
    k_token = grants.issue(key, "corp", "alice", "docker", now, now + 3600, ["testhost"], now)
    i_token = signers[0].sign(keycloak_claims(now))
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        grants.verify(k_token, cfg, host, now)
    k_us = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for _ in range(n):
        idptoken.verify(i_token, cfg.oidc, cache.keys, now)
    i_us = (time.perf_counter() - t) / n * 1e6
    print(f"verification only, in process: issuer key (EdDSA) {k_us:.0f} us, ID token "
          f"(RS256, cached keys, 2 stats a call) {i_us:.0f} us, difference "
          f"{(i_us - k_us) / 1000:.3f} ms")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (real gpasswd in a sandbox root)")
    box = Sandbox(POLICY)
    try:
        signers = [Signer("rsa", "k1"), Signer("ec", "k2"), Signer("ed", "k3"),
                   Signer("rsa", "k4")]
        (box.root / "etc/jit/issuers.d/corp-idp.toml").write_text(
            issuer_toml(claims_to_roles=[{"value": "/sre", "roles": ["docker"]}]))
        write_cache(box.root / "var/lib/jit", "corp-idp", jwks(*signers), box.now())
        box.start()
        key_ms, idp_ms = side_by_side(box, signers)
        k, i = statistics.median(key_ms), statistics.median(idp_ms)
        print(f"activation over the socket, median of {len(key_ms)} each (sandbox hostd, "
              "real gpasswd):")
        print(f"  issuer key (grant.activate, EdDSA): {k:7.2f} ms   "
              f"(mean {statistics.mean(key_ms):.2f})")
        print(f"  ID token   (idp.activate, RS256):   {i:7.2f} ms   "
              f"(mean {statistics.mean(idp_ms):.2f})")
        print(f"  ratio {i / k:.2f}x   difference {i - k:+.2f} ms   goal <= {GOAL_MS:.0f} ms")
        verify_only(signers, box)
    finally:
        box.cleanup()


if __name__ == "__main__":
    main()
