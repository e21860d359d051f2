"""ID tokens against a real sandbox hostd (issue 21): the test writes the issuer file and
plays the fetcher (it writes the key cache as `jit idp refresh` would); alice and bob
run `jit activate ROLE --id-token -` under their own uids."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from idp_kit import Signer, issuer_toml, jwks, keycloak_claims, write_cache
from sandbox import Sandbox

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host", "corp-idp"]

[roles.db]
groups = ["adm"]
max_ttl = "1h"
issuers = ["host", "corp-idp"]
approvers = ["%sre"]
approvals = 1

[daemon]
sweep_interval = "1s"
"""

RULES = [{"value": "/sre", "roles": ["docker", "db"]}]


class Idp:
    """The provider's keys and the fetcher's cache in the sandbox."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.signers = [Signer("rsa", "k1"), Signer("ec", "k2"), Signer("ed", "k3"),
                        Signer("rsa", "k4")]
        (box.root / "etc/jit/issuers.d/corp-idp.toml").write_text(
            issuer_toml(claims_to_roles=RULES))
        self.publish(*self.signers)

    def publish(self, *signers: Signer) -> None:
        write_cache(self.box.root / "var/lib/jit", "corp-idp", jwks(*signers), self.box.now())

    def token(self, signer: Signer | None = None, **claims) -> str:
        return (signer or self.signers[0]).sign(keycloak_claims(int(self.box.now()), **claims))

    def activate(self, token: str, role: str = "docker", user: str = "alice",
                 *extra: str) -> tuple[int, dict]:
        r = self.box.jit("activate", role, "--id-token", "-", "--json", *extra, user=user,
                         stdin=token)
        return r.returncode, json.loads(r.stdout)

    def refresh_requests(self) -> list[str]:
        path = self.box.root / "run/jit/idp-refresh-requests"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def idp():
    box = Sandbox(POLICY)
    provider = Idp(box)
    box.start()
    yield provider
    box.cleanup()


def test_alice_activates_with_her_token_once(idp):
    token = idp.token()
    rc, answer = idp.activate(token, "docker", "alice", "--for", "30m", "--reason", "deploy")
    assert rc == 0, answer
    assert (answer["grant"]["user"], answer["issuer"], answer["matched"]) == (
        "alice", "corp-idp", ["groups=/sre"])
    start = datetime.fromisoformat(answer["grant"]["not_before"]).timestamp()
    assert answer["grant"]["exp"] - start == 1800  # --for 30m
    assert "alice" in idp.box.members("docker")
    (ev,) = idp.box.events("grant_activated")
    assert (ev["JIT_ISSUER"], ev["JIT_IDP_SUBJECT"], ev["JIT_MATCHED"], ev["JIT_REASON"]) == (
        "corp-idp", answer["subject"], "groups=/sre", "deploy")
    rc, again = idp.activate(token)
    assert (rc, again["code"]) == (1, "replayed")


def test_a_token_is_its_users_alone_but_root_acts_for_anyone(idp):
    rc, answer = idp.activate(idp.token(), user="bob")
    assert (rc, answer["code"]) == (1, "wrong_user")
    rc, answer = idp.activate(idp.token(), user="root")
    assert rc == 0 and answer["grant"]["user"] == "alice"


def test_a_role_with_approvers_becomes_a_request(idp):
    rc, answer = idp.activate(idp.token(), "db", "alice", "--reason", "replication")
    assert rc == 0, answer
    assert answer["request"]["state"] == "pending"
    assert "alice" not in idp.box.members("adm")
    rc, answer = idp.box.jit_json("approve", answer["request"]["id"], user="bob")
    assert rc == 0, answer
    assert "alice" in idp.box.members("adm")


def test_unknown_kid_asks_one_refresh_then_the_new_key_works(idp):
    rotated = Signer("rsa", "k5")
    token = idp.token(rotated)
    for _ in range(2):
        rc, answer = idp.activate(token)
        assert (rc, answer["code"]) == (1, "unknown_key")
    assert idp.refresh_requests() == ["jit-idp-refresh@corp-idp.service"]
    idp.publish(*idp.signers, rotated)  # the refresh unit ran
    rc, answer = idp.activate(token)
    assert rc == 0, answer


def test_stale_keys_are_refused(idp):
    idp.box.advance_clock(24 * 3600 + 60)
    rc, answer = idp.activate(idp.token())
    assert (rc, answer["code"]) == (1, "stale_keys")
    assert "jit idp refresh corp-idp" in answer["message"]


def test_refusals_name_the_check(idp):
    cases = [(idp.token(groups=["/staff"]), "not_allowed"),
             (idp.token(azp="other"), "wrong_azp"),
             (idp.token(aud="other"), "wrong_audience"),
             (idp.token(iat=int(idp.box.now()) - 3600), "token_too_old")]
    for token, code in cases:
        rc, answer = idp.activate(token)
        assert (rc, answer["code"]) == (1, code)
    refused = [e["JIT_CODE"] for e in idp.box.events("grant_refused")]
    assert refused == [c for _t, c in cases]


def test_idp_test_gives_root_a_verdict_and_anyone_the_claims(idp):
    token = idp.token()
    r = idp.box.jit("idp", "test", "-", "--json", stdin=token)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["verdict"], out["roles"], out["rules"][0]["matched"]) == (
        "valid for alice: may activate db, docker", ["db", "docker"], ["/sre"])
    r = idp.box.jit("idp", "test", token, user="alice")
    assert r.returncode == 1
    assert "preferred_username: alice" in r.stdout and "[0] groups exact /sre" in r.stdout
    assert "verdict: refused: stale_keys" in r.stdout
    rc, answer = idp.activate(token)  # idp test used nothing
    assert rc == 0, answer


def test_check_config_names_the_field_of_a_bad_oidc_file(idp):
    (idp.box.root / "etc/jit/issuers.d/corp-idp.toml").write_text(
        issuer_toml(issuer="http://idp.example.com/realms/corp"))
    rc, answer = idp.box.jit_json("check-config")
    assert rc == 2
    assert "corp-idp.toml: issuer: plain http is allowed only for a loopback address" in (
        answer["message"])
