"""pam_jit in a booted Debian 12 with the .deb installed: the pam-auth-update profile
the package enables, real libpam (pamtester, su under logind), real hostd and logind.
One container of its own: it gates logins and stops hostd."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from jithost import POLICY_TOML, Host, configure, events, issue, wait_for

PAM_POLICY = POLICY_TOML + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true

[login]
require_grant = ["alice"]
"""

# console has no requesters: the hint names no request alice would be refused (issue 20)
REFUSED = re.compile(r"jit: logging in to \S+ requires an active grant of role console; "
                     r"ask an administrator for one")


@pytest.fixture(scope="module")
def pam_host(own_host: Host) -> Iterator[Host]:
    configure(own_host.box, PAM_POLICY)
    yield own_host


def pamtester(host: Host, user: str, *ops: str):
    return host.box.run(["pamtester", "-v", "login", user, *ops], check=False, timeout=60)


def activate(host: Host, user: str, role: str) -> str:
    out = host.box.run(["jit", "activate", "--json", issue(host.box, user, role, "30m")])
    return json.loads(out.stdout)["grant"]["id"]


def revoke(host: Host, grant_id: str) -> None:
    host.box.run(["jit", "revoke", grant_id])


def pam_d(host: Host, base: bool = False) -> dict[str, str]:
    """sha256 of each file in /etc/pam.d (of the container, or of its pristine rootfs)."""
    root = host.box.base if base else host.box.root
    d = Path(root) / "etc/pam.d"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.iterdir()) if p.is_file()}


def test_the_package_enables_the_profile_with_root_skipping_the_module(pam_host):
    account = pam_host.box.path("/etc/pam.d/common-account").read_text()
    lines = [line.split() for line in account.splitlines() if "pam_jit" in line
             or "uid eq 0" in line]
    assert lines == [["account", "[success=2", "default=ignore]", "pam_succeed_if.so", "quiet",
                      "uid", "eq", "0"],
                     ["account", "required", "pam_jit.so"]]
    assert "[success=1 default=ignore]\tpam_succeed_if.so quiet service in jit-sudo:sudo:sudo-i" \
        in account
    session = pam_host.box.path("/etc/pam.d/common-session").read_text()
    modules = [line.split()[2] for line in session.splitlines()
               if line.startswith("session")]
    assert modules.index("pam_jit.so") > modules.index("pam_systemd.so")
    assert "pam_jit" not in pam_host.box.path(
        "/etc/pam.d/common-session-noninteractive").read_text()


def test_a_gated_user_without_a_grant_is_refused_with_the_message(pam_host):
    r = pamtester(pam_host, "alice", "acct_mgmt")
    assert r.returncode != 0
    assert REFUSED.search(r.stdout + r.stderr), r.stdout + r.stderr
    assert [e["JIT_USER"] for e in events(pam_host.box, "login_refused")][-1:] == ["alice"]


def test_a_login_grant_admits_a_grant_without_login_does_not(pam_host):
    docker = activate(pam_host, "alice", "docker")
    try:
        assert pamtester(pam_host, "alice", "acct_mgmt").returncode != 0
        console = activate(pam_host, "alice", "console")
        try:
            r = pamtester(pam_host, "alice", "acct_mgmt", "open_session", "close_session")
            assert r.returncode == 0, r.stdout + r.stderr
            assert "jit: active grants:" in r.stdout + r.stderr
        finally:
            revoke(pam_host, console)
    finally:
        revoke(pam_host, docker)
    assert pamtester(pam_host, "alice", "acct_mgmt").returncode != 0


HOSTD_PAM = """
import threading, pam
res = []
def check():  # as hostd checks a sudo password: python-pam in a thread, service jit-sudo
    res.append(pam.pam().authenticate("alice", "s3cret-pw", service="jit-sudo",
                                      resetcreds=False))
t = threading.Thread(target=check); t.start(); t.join(); print(res)
"""


def test_hostd_own_pam_and_sudo_never_load_the_module(pam_host):
    """hostd's password check (python-pam in a thread, service jit-sudo) and sudo pass
    for a gated user: the profile skips jit-sudo and sudo (not a login)."""
    box = pam_host.box
    box.run(["chpasswd"], input="alice:s3cret-pw\n")
    r = box.run(["python3", "-c", HOSTD_PAM], check=False, timeout=60)
    assert (r.returncode, r.stdout) == (0, "[True]\n"), r.stderr
    assert pamtester(pam_host, "alice", "acct_mgmt").returncode != 0  # gated for login
    for service in ("sudo", "jit-sudo"):
        r = box.run(["pamtester", service, "alice", "acct_mgmt"], check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_an_ungated_user_passes(pam_host):
    r = pamtester(pam_host, "bob", "acct_mgmt", "open_session", "close_session")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "jit:" not in r.stdout + r.stderr


def _sessions(host: Host) -> list[dict]:
    out = json.loads(host.box.run(["jit", "grants", "--sessions", "--all", "--json"]).stdout)
    assert out["ok"], out
    return out["sessions"]


def test_a_real_login_session_prints_the_time_left_and_is_registered(pam_host):
    box = pam_host.box
    grant_id = activate(pam_host, "alice", "console")
    try:
        # `su -l` on a pty (script), under a system unit as sshd runs: pam_systemd makes
        # a logind session, and the login shell reads `sleep 120` from the terminal
        box.run(["systemd-run", "--unit", "jit-e2e-login", "--property",
                 "StandardOutput=file:/tmp/login.out", "--property",
                 "StandardError=file:/tmp/login.out", "/bin/sh", "-c",
                 "echo 'sleep 120' | script -qec 'su -l alice' /dev/null"])
        session = wait_for("the registered login session", lambda: next(
            (s for s in _sessions(pam_host) if s["user"] == "alice" and s["id"]), None),
            timeout=20)
        assert session["grants"] == [grant_id]
        owner = box.run(["loginctl", "show-session", session["id"], "-p", "Name",
                         "--value"]).stdout.strip()
        assert owner == "alice"
        shown = wait_for("the notice on the terminal", lambda: (lambda t: t if "newgrp" in t
                         else None)(box.run(["cat", "/tmp/login.out"]).stdout), timeout=20)
        assert re.search(r"jit:   console \(docker\): \d+m \d\ds left \(grant "
                         + grant_id + r"\)", shown), shown
        assert "newgrp docker" in shown
        assert [e for e in events(box, "session_opened")
                if e.get("JIT_SESSION_ID") == session["id"]]
        box.run(["systemctl", "stop", "jit-e2e-login"])
        wait_for("the session closed", lambda: not any(
            s["id"] == session["id"] for s in _sessions(pam_host)), timeout=20)
        assert [e for e in events(box, "session_closed")
                if e.get("JIT_SESSION_ID") == session["id"]]
    finally:
        box.run(["systemctl", "stop", "jit-e2e-login"], check=False)
        revoke(pam_host, grant_id)


def test_su_with_a_command_is_not_crashed_by_the_notice(pam_host):
    """util-linux su -c answers a lone PAM_TEXT_INFO without a response array (it
    crashed pam_python): su runs the command."""
    grant_id = activate(pam_host, "alice", "console")
    try:
        for argv in (["su", "-l", "alice", "-c", "echo ran"], ["su", "alice", "-c", "echo ran"]):
            r = pam_host.box.run(["systemd-run", "--wait", "--pipe", "--quiet", *argv],
                                 check=False)
            assert (r.returncode, r.stdout) == (0, "ran\n"), r.stderr
    finally:
        revoke(pam_host, grant_id)


def test_hostd_stopped_root_logs_in_gated_users_are_refused(pam_host):
    box = pam_host.box
    grant_id = activate(pam_host, "alice", "console")
    box.run(["systemctl", "stop", "jit-hostd.socket", "jit-hostd.service"])
    try:
        r = pamtester(pam_host, "root", "acct_mgmt", "open_session", "close_session")
        assert r.returncode == 0, r.stdout + r.stderr
        r = pamtester(pam_host, "alice", "acct_mgmt")  # her grant cannot be checked
        assert r.returncode != 0
        assert "jit-hostd cannot be reached" in r.stdout + r.stderr
        assert pamtester(pam_host, "bob", "acct_mgmt").returncode == 0  # allow: default
    finally:
        box.run(["systemctl", "start", "jit-hostd.socket"])
        revoke(pam_host, grant_id)


def test_setup_pam_disable_leaves_pam_d_as_it_was(pam_host):
    box = pam_host.box
    pristine = pam_d(pam_host, base=True)
    r = box.run(["jit", "setup", "pam", "--disable"])
    assert "pam_jit is off" in r.stdout
    off = pam_d(pam_host)
    assert {k: v for k, v in off.items() if k != "jit-sudo"} == pristine  # as before install
    assert pamtester(pam_host, "alice", "acct_mgmt").returncode == 0  # nothing gates now
    box.run(["jit", "setup", "pam", "--enable"])
    assert pam_d(pam_host) != off
    assert pamtester(pam_host, "alice", "acct_mgmt").returncode != 0
    box.run(["jit", "setup", "pam", "--disable"])
    assert pam_d(pam_host) == off
    box.run(["jit", "setup", "pam", "--enable"])


def test_removing_the_package_takes_pam_jit_out_first(pam_host):
    """Last: prerm runs pam-auth-update --remove before the module file goes, so no
    stack names a missing pam_jit.so (a required account line would refuse everyone)."""
    box = pam_host.box
    box.run(["apt-get", "remove", "-y", "jitaccess"], timeout=300)
    for stack in ("common-account", "common-session"):
        assert "pam_jit" not in box.path(f"/etc/pam.d/{stack}").read_text()
    assert not box.path("/lib/x86_64-linux-gnu/security/pam_jit.so").exists()
    for user in ("root", "alice", "bob"):
        r = pamtester(pam_host, user, "acct_mgmt", "open_session", "close_session")
        assert r.returncode == 0, r.stdout + r.stderr
