"""Revocation lists with a real hostd in a sandbox root (docs/REVOCATIONS.md): a list
pushed as a file and reloaded ends a live grant and refuses new ones, an older list is
refused as a rollback, the accepted list survives a restart, a corrupt list keeps the
previous one, strict mode with a stale list refuses and ends, require_list refuses
before any list, kid and role entries."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sandbox import POLICY, Sandbox

from hostd.policy.keys import load_pem_public


def issuer_file(box: Sandbox, **revocation: object) -> None:
    table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in revocation.items())
    (box.root / "etc/jit/issuers.d/corp.toml").write_text(
        'name = "corp"\npublic_keys = ["/etc/jit/keys/corp.key.pub"]\n'
        f'algorithms = ["EdDSA"]\n\n[revocation]\n{table}')


@pytest.fixture
def box():
    b = Sandbox(POLICY)
    (b.root / "etc/jit/revocations").mkdir(mode=0o755)
    issuer_file(b, file="/etc/jit/revocations/corp.jwt")
    yield b
    b.cleanup()


def list_path(box: Sandbox) -> Path:
    return box.root / "etc/jit/revocations/corp.jwt"


def build(box: Sandbox, *args: str, previous: Path | None = None,
          out: Path | None = None) -> Path:
    """`jit revocations build` as the issuer runs it, written where hosts read it."""
    out = out or list_path(box)
    cmd = ["revocations", "build", "--key", str(box.key), "--issuer", "corp", "--out",
           str(out), *args]
    if previous is not None:
        cmd += ["--previous", str(previous)]
    r = box.jit(*cmd)
    assert r.returncode == 0, r.stderr
    return out


def activate(box: Sandbox, user: str, **kw: str) -> tuple[int, dict]:
    return box.jit_json("activate", box.issue(user, **kw), user=user)


def reload(box: Sandbox) -> dict:
    rc, out = box.jit_json("revocations", "reload")
    assert rc == 0, out
    return out


def test_a_pushed_list_ends_a_live_grant_and_refuses_new_ones(box):
    box.start()
    assert activate(box, "alice")[0] == 0
    assert activate(box, "carol")[0] == 0
    assert "alice" in box.members("docker")
    build(box, "--user", "alice", "--reason", "laptop stolen")
    answer = reload(box)  # (or the sweep, which re-reads a changed file, ran first)
    assert answer["issuers"]["corp"]["seq"] == 1
    assert "alice" not in box.members("docker")
    assert "carol" in box.members("docker")  # not named: untouched
    (revoked,) = box.events("grant_revoked")
    assert revoked["JIT_USER"] == "alice" and revoked["JIT_REVOCATION_LIST"] == "corp#1"
    assert revoked["JIT_REVOCATION_ENTRY"] == "sub=alice"
    assert "laptop stolen" in revoked["JIT_REASON"]
    rc, refused = activate(box, "alice")
    assert rc == 1 and refused["code"] == "revoked"
    assert "laptop stolen" in refused["message"] and "seq 1" in refused["message"]
    (loaded,) = box.events("revocations_loaded")
    assert loaded["JIT_ISSUER"] == "corp" and loaded["JIT_COUNT"] == "1"
    rc, status = box.jit_json("revocations", "status", user="bob")
    assert rc == 0
    (corp,) = status["issuers"]
    assert (corp["seq"], corp["in_force"], corp["mode"], corp["stale"]) == (
        1, 1, "best_effort", False)


def test_an_older_list_is_refused_as_a_rollback(box):
    box.start()
    old = build(box, "--jti", "j-old", out=box.root / "old.jwt")
    build(box, "--user", "alice", previous=old)
    assert reload(box)["issuers"]["corp"]["seq"] == 2
    os.replace(old, list_path(box))  # an attacker replays the older list
    answer = reload(box)
    assert answer["issuers"]["corp"]["seq"] == 2
    assert "rollback" in answer["issuers"]["corp"]["error"]
    (refused,) = box.events("revocations_refused")
    assert refused["JIT_CODE"] == "rollback" and refused["JIT_ISSUER"] == "corp"
    assert activate(box, "alice")[1]["code"] == "revoked"  # seq 2's entry stays in force
    reload(box)  # the same refused file again: said once
    assert len(box.events("revocations_refused")) == 1


def test_a_corrupt_or_foreign_list_keeps_the_previous_one(box, tmp_path):
    box.start()
    build(box, "--user", "alice")
    reload(box)
    tmp = list_path(box).with_name("corp.tmp")
    tmp.write_text("not.a.list\n")
    os.replace(tmp, list_path(box))  # atomic: a sweep never reads it half written
    answer = reload(box)
    assert answer["issuers"]["corp"]["seq"] == 1 and answer["issuers"]["corp"]["error"]
    # signed by a key corp does not have
    stranger = tmp_path / "stranger.key"
    assert box.jit("keygen", "--out", str(stranger)).returncode == 0
    r = box.jit("revocations", "build", "--key", str(stranger), "--issuer", "corp",
                "--out", str(list_path(box)))
    assert r.returncode == 0
    assert "signature" in reload(box)["issuers"]["corp"]["error"]
    codes = [e["JIT_CODE"] for e in box.events("revocations_refused")]
    assert codes == ["malformed", "bad_signature"]
    assert activate(box, "alice")[1]["code"] == "revoked"


def test_the_accepted_list_survives_a_restart(box):
    box.start()
    build(box, "--user", "alice")
    reload(box)
    box.stop()
    list_path(box).unlink()  # nothing to read at start: the store has it
    box.start()
    assert activate(box, "alice")[1]["code"] == "revoked"
    rc, status = box.jit_json("revocations", "status")
    assert rc == 0 and status["issuers"][0]["seq"] == 1


def test_hostd_reads_a_list_written_while_it_was_down(box):
    box.start()
    assert activate(box, "alice")[0] == 0
    box.stop()
    build(box, "--user", "alice")
    box.start()
    assert box.wait_for(lambda: box.events("grant_revoked"))  # logged after the removal
    assert "alice" not in box.members("docker")
    assert box.events("grant_revoked")[0]["JIT_REVOCATION_ENTRY"] == "sub=alice"


def test_strict_with_a_stale_list_refuses_and_ends_until_a_fresh_one(box):
    issuer_file(box, file="/etc/jit/revocations/corp.jwt", mode="strict", max_stale="1m")
    build(box, "--next-update", "10m")
    box.start()
    assert activate(box, "alice")[0] == 0
    box.advance_clock(900)  # past next_update + max_stale (11 min), within the grant's 1h
    assert box.wait_for(lambda: box.events("grant_revoked"))  # logged after the removal
    assert "alice" not in box.members("docker")
    (revoked,) = box.events("grant_revoked")
    assert "stale" in revoked["JIT_REASON"] and revoked["JIT_REVOCATION_LIST"] == "corp#1"
    stale = box.events("revocations_stale")
    assert stale and stale[0]["JIT_MODE"] == "strict"
    rc, refused = activate(box, "bob")
    assert rc == 1 and refused["code"] == "revoked" and "stale" in refused["message"]
    build(box, "--next-update", "3h", previous=list_path(box))
    assert reload(box)["issuers"]["corp"]["seq"] == 2
    assert activate(box, "bob")[0] == 0


def test_best_effort_with_a_stale_list_warns_and_keeps_serving(box):
    issuer_file(box, file="/etc/jit/revocations/corp.jwt", max_stale="1m")
    build(box, "--next-update", "10m")
    box.start()
    box.advance_clock(900)
    assert box.wait_for(lambda: box.events("revocations_stale"))
    assert activate(box, "alice")[0] == 0


def test_require_list_refuses_before_any_list(box):
    issuer_file(box, file="/etc/jit/revocations/corp.jwt", require_list=True)
    box.start()
    rc, refused = activate(box, "alice")
    assert rc == 1 and refused["code"] == "revoked" and "require_list" in refused["message"]
    build(box)
    reload(box)
    assert activate(box, "alice")[0] == 0


def test_kid_and_role_entries(box):
    box.start()
    assert activate(box, "alice", role="ops")[0] == 0
    assert activate(box, "carol", role="docker")[0] == 0
    build(box, "--role", "ops")
    reload(box)
    assert "alice" not in box.members("adm") and "carol" in box.members("docker")
    kid = load_pem_public(box.key.with_name("corp.key.pub")).kid
    build(box, "--kid", kid, "--reason", "key leaked", previous=list_path(box))
    reload(box)
    assert "carol" not in box.members("docker")
    entries = [e["JIT_REVOCATION_ENTRY"] for e in box.events("grant_revoked")]
    assert entries == ["role=ops", f"kid={kid}"]


def test_an_entry_for_another_host_or_past_its_until_ends_nothing(box):
    box.start()
    assert activate(box, "alice")[0] == 0
    build(box, "--user", "alice", "--hosts", "otherhost")
    reload(box)
    assert "alice" in box.members("docker")
    build(box, "--user", "alice", "--until", "+1m", previous=list_path(box))
    reload(box)
    assert "alice" not in box.members("docker")
    box.advance_clock(120)  # the entry's until passed: alice may come back
    assert box.wait_for(lambda: activate(box, "alice")[0] == 0)


REQUESTS = POLICY.replace('issuers = ["corp", "host"]\n', 'issuers = ["corp", "host"]\n'
                          'requesters = ["alice"]\napprovers = ["bob"]\n', 1)


def test_a_sub_entry_locks_the_person_out_of_host_grants_and_requests():
    box = Sandbox(REQUESTS)
    try:
        (box.root / "etc/jit/revocations").mkdir(mode=0o755)
        issuer_file(box, file="/etc/jit/revocations/corp.jwt")
        box.start()
        rc, req = box.jit_json("request", "docker", "--for", "30m", "--reason", "deploy",
                               user="alice")
        assert rc == 0, req
        rc, out = box.jit_json("approve", req["request"]["id"], user="bob")
        assert rc == 0, out
        assert "alice" in box.members("docker")  # a grant signed by the host issuer
        build(box, "--user", "alice", "--reason", "left the company")
        reload(box)
        assert "alice" not in box.members("docker")
        (revoked,) = box.events("grant_revoked")
        assert revoked["JIT_ISSUER"] == "host" and revoked["JIT_REVOCATION_ENTRY"] == "sub=alice"
        rc, refused = box.jit_json("request", "docker", "--for", "30m", "--reason", "again",
                                   user="alice")
        assert rc == 1 and refused["code"] == "revoked"
        assert "left the company" in refused["message"]
    finally:
        box.cleanup()


def test_reload_is_root_only(box):
    box.start()
    rc, out = box.jit_json("revocations", "reload", user="alice")
    assert rc == 1 and out["code"] == "permission_denied"


def test_the_fetched_copy_is_read_and_the_newer_of_the_two_wins(box):
    """CONTRACTS §C: with `url`, the fetcher writes <state>/revocations/NAME.jwt."""
    issuer_file(box, file="/etc/jit/revocations/corp.jwt", url="https://lists.example/c.jwt")
    box.start()
    assert activate(box, "alice")[0] == 0
    assert activate(box, "carol")[0] == 0
    pushed = build(box, "--user", "carol")
    fetched_dir = box.root / "var/lib/jit/revocations"
    fetched_dir.mkdir(mode=0o700, exist_ok=True)
    build(box, "--user", "alice", previous=pushed, out=fetched_dir / "corp.jwt")
    answer = reload(box)
    assert answer["issuers"]["corp"]["seq"] == 2  # the fetched one: seq 2 (carol carried)
    assert "alice" not in box.members("docker") and "carol" not in box.members("docker")
    loaded = box.events("revocations_loaded")[-1]  # (a sweep may have taken seq 1 first)
    assert loaded["JIT_PATH"].endswith("var/lib/jit/revocations/corp.jwt")
    assert loaded["JIT_REVOCATION_LIST"] == "corp#2"


def test_grant_verify_asks_hostd_for_the_lists_it_cannot_read(box):
    """`jit grant verify` checks offline, then asks hostd (grant.check): a grant a list
    names is refused as activation would refuse it; with hostd down the offline verdict
    stands and says the lists were not checked. Nothing is changed or logged."""
    token = box.issue("alice")
    box.start()
    rc, ok = box.jit_json("grant", "verify", token, user="alice")
    assert rc == 0 and ok["revocations_checked"] is True, ok
    build(box, "--user", "alice", "--reason", "laptop stolen")
    reload(box)
    rc, refused = box.jit_json("grant", "verify", token, user="alice")
    assert rc == 1 and refused["code"] == "revoked", refused
    assert "laptop stolen" in refused["message"]
    text = box.jit("grant", "verify", token, user="bob")  # whoever holds the token
    assert text.returncode == 1 and "revoked" in text.stderr
    assert box.events("grant_refused") == [] and box.events("grant_activated") == []
    box.stop()
    rc, offline = box.jit_json("grant", "verify", token, user="alice")
    assert rc == 0 and offline["revocations_checked"] is False, offline
    r = box.jit("grant", "verify", token, user="alice")
    assert "revocation lists not checked: jit-hostd is not reachable" in r.stdout
