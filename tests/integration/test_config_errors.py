"""hostd with a broken policy: it says why, serves nothing that needs the policy, and
keeps expiring grants it already holds."""

from __future__ import annotations

import os
import signal

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


def test_check_config_refuses_an_issuer_key_writable_by_group(box):
    key = box.root / "etc/jit/keys/corp.key.pub"
    key.chmod(0o664)
    rc, out = box.jit_json("check-config")
    assert rc == 2 and out["code"] == "config_error"
    assert out["message"] == f"{key}: writable by group or others (mode 0664)"
    r = box.jit("check-config", user="alice")
    assert r.returncode == 2 and "writable by group or others (mode 0664)" in r.stderr


def test_hostd_refuses_an_issuer_key_owned_by_a_user(box):
    """A user who can write the issuer key could mint a grant: hostd serves no roles."""
    key = box.root / "etc/jit/keys/corp.key.pub"
    os.chown(key, 1001, 1001)
    box.start()
    rc, out = box.jit_json("activate", box.issue("alice"), user="alice")
    assert rc == 2 and out["code"] == "config_error", out
    assert "owned by uid 1001, must be owned by root" in out["message"]
    assert "alice" not in box.members("docker")


def test_check_config_is_quiet_about_login_recording_and_masking(box):
    """Every setting is enforced now: the ones that used to warn give no warning."""
    policy = box.root / "etc/jit/jit.toml"
    policy.write_text(POLICY + '\n[login]\nwhen_unreachable = "allow"\n'
                      '[masking]\nrules = []\n'
                      '[roles.db]\nlogin = true\nrecord = "always"\n'
                      'on_expiry = "terminate-sessions"\n')
    r = box.jit("check-config")
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr
    rc, out = box.jit_json("check-config")
    assert rc == 0 and out["ok"] and out["warnings"] == [], out


def test_check_config_of_a_good_policy_warns_of_nothing(box):
    r = box.jit("check-config")
    assert r.returncode == 0 and r.stderr == ""
    assert box.jit_json("check-config")[1]["warnings"] == []


def test_check_config_warns_of_sudo_rules_that_never_match(box):
    """A regular expression (sudoers' `^...$`) or a broken wildcard loads, but can never
    match: check-config names each one where it is written; hostd still serves."""
    policy = box.root / "etc/jit/jit.toml"
    policy.write_text(POLICY + '\n[[roles.db.sudo]]\nrunas = "root"\n'
                      'commands = ["/usr/bin/passwd ^[a-z]+$", "/usr/bin/ls [z-a]", "ALL"]\n'
                      '[[standing]]\nmembers = ["%adm"]\n'
                      'sudo = [{ runas = "root", commands = ["/usr/bin/id ^-u$"] }]\n')
    rc, out = box.jit_json("check-config")
    assert rc == 0 and out["ok"], out
    assert out["warnings"] == [
        "jit.toml: roles.db.sudo[0].commands: '/usr/bin/passwd ^[a-z]+$' never matches: "
        "regular expressions (^...$) are not supported; use shell wildcards",
        "jit.toml: roles.db.sudo[0].commands: '/usr/bin/ls [z-a]' never matches: "
        "the argument pattern is not a valid wildcard expression",
        "jit.toml: standing[0].sudo[0].commands: '/usr/bin/id ^-u$' never matches: "
        "regular expressions (^...$) are not supported; use shell wildcards",
    ], out
    r = box.jit("check-config")
    assert r.returncode == 0
    assert r.stderr.count("jit: warning: jit.toml: ") == 3, r.stderr
