"""hostd with a broken policy: it says why, serves nothing that needs the policy, and
keeps expiring grants it already holds."""

from __future__ import annotations

import pytest
from sandbox import POLICY, Sandbox


@pytest.fixture
def box():
    b = Sandbox(POLICY)
    yield b
    b.cleanup()


def test_check_config_names_file_key_and_problem(box):
    (box.root / "etc/jit/jit.toml").write_text('[roles.docker]\ngroups = ["docker"]\n'
                                               'max_ttl = "4 hours"\n')
    rc, out = box.jit_json("check-config")
    assert rc == 2 and out["code"] == "config_error"
    assert "jit.toml: roles.docker.max_ttl: bad duration" in out["message"]


def test_unknown_key_is_an_error(box):
    (box.root / "etc/jit/jit.toml").write_text('[roles.docker]\ngroup = ["docker"]\n')
    rc, out = box.jit_json("check-config")
    assert rc == 2 and "roles.docker.group: unknown key" in out["message"]


def test_broken_config_at_start_fails_closed_but_still_expires(box):
    box.start()
    rc, out = box.jit_json("activate", box.issue("alice", duration="3s"), user="alice")
    assert rc == 0, out
    box.stop()
    (box.root / "etc/jit/jit.toml").write_text("this is [ not toml")
    box.start()
    rc, refused = box.jit_json("activate", "x.y.z", user="alice")
    assert rc == 2 and refused["code"] == "config_error"
    assert box.events("config_error")
    assert box.wait_for(lambda: "alice" not in box.members("docker"), timeout=10)


def test_unreachable_daemon_exit_code_3(box):
    rc, out = box.jit_json("grants", user="alice")
    assert rc == 3 and out["code"] == "unreachable"


def test_sighup_reloads_policy_and_refuses_a_bad_one(box):
    import signal

    box.start()
    rc, out = box.jit_json("activate", box.issue("alice", role="web"), user="alice")
    assert rc == 1 and out["code"] == "unknown_role"
    policy = box.root / "etc/jit/jit.toml"
    policy.write_text(policy.read_text() + '\n[roles.web]\ngroups = ["adm"]\n'
                      'issuers = ["corp"]\n')
    box.proc.send_signal(signal.SIGHUP)
    assert box.wait_for(lambda: box.jit_json("activate", box.issue("alice", role="web"),
                                             user="alice")[0] == 0, timeout=5)
    good = policy.read_text()
    policy.write_text(good + "\n[roles.web.oops]\n")
    box.proc.send_signal(signal.SIGHUP)
    assert box.wait_for(lambda: box.events("config_error"), timeout=5)
    rc, out = box.jit_json("activate", box.issue("bob", role="web"), user="bob")
    assert rc == 0, "the previous policy stays in force after a refused reload"
