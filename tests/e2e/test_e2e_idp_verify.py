"""ID-token activation on a booted Debian 12 host, hostd as packaged (issue 21, hostd's
side): the test plays the fetcher, writing the key cache under /var/lib/jit/idp as
`jit idp refresh` does (root 0600 in a 0700 directory); hostd verifies offline from it,
alice activates with her token, and an unknown kid makes hostd start
jit-idp-refresh@corp-idp.service over D-Bus. (The real provider and the fetcher are
tested by branch oidc-fetch's e2e.)"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from jithost import POLICY_TOML, Host, events, groups_of, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from idp_kit import Signer, issuer_toml, jwks, keycloak_claims

CACHE = "/var/lib/jit/idp/corp-idp"
POLICY = POLICY_TOML + """
[roles.ops]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp-idp"]
"""


def publish(box, *signers: Signer) -> None:
    """What the fetcher writes: jwks and discovery before state, root 0600."""
    now = time.time()
    box.run(["install", "-d", "-m", "0700", "/var/lib/jit/idp", CACHE])
    box.write(f"{CACHE}/jwks.json", json.dumps(jwks(*signers)), mode=0o600)
    box.write(f"{CACHE}/discovery.json", json.dumps({"issuer": "x"}), mode=0o600)
    box.write(f"{CACHE}/state.json", json.dumps({
        "fetched_at": now, "expires_at": now + 3600, "last_attempt_at": now,
        "last_error": None, "last_error_at": None}), mode=0o600)


@pytest.fixture(scope="module")
def idp(own_host: Host):
    box = own_host.box
    signers = [Signer("rsa", "k1"), Signer("ec", "k2"), Signer("ed", "k3"), Signer("rsa", "k4")]
    box.write("/etc/jit/issuers.d/corp-idp.toml",
              issuer_toml(claims_to_roles=[{"value": "/sre", "roles": ["ops"]}]))
    box.write("/etc/jit/jit.toml", POLICY)
    publish(box, *signers)
    box.run(["jit", "reload"])
    return box, signers


def activate(box, token: str, user: str = "alice") -> tuple[int, dict]:
    proc = box.run(["jit", "activate", "ops", "--id-token", "-", "--json"], user=user,
                   check=False, input=token)
    return proc.returncode, json.loads(proc.stdout)


def test_alice_activates_with_her_id_token_once(idp) -> None:
    box, signers = idp
    token = signers[0].sign(keycloak_claims(int(time.time())))
    rc, answer = activate(box, token)
    assert rc == 0, answer
    assert "docker" in groups_of(box, "alice")
    (ev,) = events(box, "grant_activated", grant_id=answer["grant"]["id"])
    assert (ev["JIT_ISSUER"], ev["JIT_MATCHED"], ev["JIT_IDP_SUBJECT"]) == (
        "corp-idp", "groups=/sre", answer["subject"])
    rc, again = activate(box, token)
    assert (rc, again["code"]) == (1, "replayed")


def test_an_unknown_kid_starts_the_refresh_unit(idp) -> None:
    box, _signers = idp
    token = Signer("rsa", "rotated").sign(keycloak_claims(int(time.time())))
    rc, answer = activate(box, token)
    assert (rc, answer["code"]) == (1, "unknown_key")
    unit = "jit-idp-refresh@corp-idp.service"
    shipped = box.run(["systemctl", "cat", "jit-idp-refresh@.service"], check=False)
    if shipped.returncode == 0:  # the fetcher's units are installed: the job ran
        show = box.run(["systemctl", "show", "-p", "InvocationID", "--value", unit]).stdout
        assert show.strip(), "hostd did not start the refresh unit"
    else:  # not (yet) shipped: systemd refused the StartUnit hostd sent, and hostd said so
        def said() -> bool:
            log = box.run(["journalctl", "-u", "jit-hostd.service", "-o", "cat"]).stdout
            return "could not start the key refresh of corp-idp" in log and unit in log

        assert wait_for("hostd's log of the refused StartUnit", said, 10)


def test_idp_test_gives_root_the_verdict(idp) -> None:
    box, signers = idp
    token = signers[2].sign(keycloak_claims(int(time.time())))
    proc = box.run(["jit", "idp", "test", "-", "--json"], input=token)
    out = json.loads(proc.stdout)
    assert (out["verdict"], out["roles"]) == ("valid for alice: may activate ops", ["ops"])
