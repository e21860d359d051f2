"""Issue 17 items 3-5 on the installed package, through real sudo 1.9.13 and PAM:
guardrails hold for the command however it is spelt, one user's wrong passwords stop
nobody else's sudo, and a password timestamp belongs to one terminal session. One host
for the module: it switches sudo's policy for good."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from jithost import CORP_KEY, Host, configure, events, issue, wait_for

POLICY = """\
[roles.all]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "never"
sudo = [ { runas = "root", commands = ["ALL"] } ]

[roles.secure]
groups = []
max_ttl = "1h"
issuers = ["corp"]
record = "never"
sudo = [ { runas = "root", commands = ["/usr/bin/whoami"] } ]

[[guardrails]]
action = "deny"
match = '^/usr/bin/rm -rf /( |$)'
message = "not the root directory"

[[guardrails]]
action = "deny"
program = "/usr/bin/rm"
args = ['^-[^-]*[rR]|^--recursive$', '^/']
message = "recursive removal of absolute paths needs a ticket"

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /root/approved'

[[guardrails]]
action = "deny"
program = "sudoedit"
args = ['^/etc/shadow$']
message = "use vipw -s"

[[guardrails]]
action = "deny"
program = "/usr/bin/cp"
args = ['^--target-directory=/root/\\.ssh(/|$)']
message = "not into root's keys"

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""
TICKET = "recursive removal of absolute paths needs a ticket"


def sudo(box, *args: str, user: str = "alice",
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    return box.run(["sudo", *args], user=user, input=input, check=False, timeout=60)


def exists(box, path: str) -> bool:
    return box.run(["test", "-e", path], check=False).returncode == 0


def activate(box, user: str, role: str) -> dict:
    out = json.loads(box.run(["jit", "activate", issue(box, user, role, "30m"), "--json"],
                             user=user).stdout)
    assert out["ok"], out
    return out["grant"]


@pytest.fixture(scope="module")
def box(own_host: Host):
    b = own_host.box
    if not b.path(CORP_KEY).exists():
        configure(b)
    configure(b, POLICY)
    b.run(["jit", "setup", "sudo", "--enable"])
    b.run(["chpasswd"], input="alice:correct horse\nbob:battery staple\n")
    return b


def test_guardrails_match_the_command_not_its_spelling(box) -> None:
    g = activate(box, "alice", "all")
    try:
        box.run("mkdir -p /tmp/v/a /tmp/v/b /tmp/v/c /tmp/v/e /tmp/v/f /tmp/v/g")
        for argv in (["rm", "-fr", "/tmp/v/a"], ["rm", "-r", "-f", "/tmp/v/b"],
                     ["rm", "-rf", "/tmp/v/c", "extra"], ["/bin/rm", "-rf", "/tmp/v/e"],
                     ["/proc/self/root/usr/bin/rm", "-rf", "/tmp/v/f"]):
            r = sudo(box, "-n", *argv)
            assert r.returncode == 1 and TICKET in r.stderr, (argv, r.stderr)
            assert exists(box, argv[-2] if argv[-1] == "extra" else argv[-1]), argv
        inside = sudo(box, "-n", "/usr/bin/bash", "-c", "/bin/rm -fr /tmp/v/g; echo ran")
        assert exists(box, "/tmp/v/g") and TICKET in inside.stderr, inside.stderr
        box.run("touch /tmp/v/plain")
        plain = sudo(box, "-n", "/bin/rm", "-f", "/tmp/v/plain")
        assert plain.returncode == 0 and not exists(box, "/tmp/v/plain"), plain.stderr
        (ev,) = [e for e in events(box, "sudo_denied")
                 if e.get("JIT_COMMAND") == "/usr/bin/rm -rf /tmp/v/f"]
        assert ev["JIT_GUARDRAIL"] == "1" and "deny program /usr/bin/rm args" in ev[
            "JIT_REASON"], ev
        listing = sudo(box, "-n", "-l")
        assert "deny program /usr/bin/rm args '^-[^-]*[rR]|^--recursive$' '^/'" in \
            listing.stdout, listing.stdout
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_an_approve_guardrail_is_not_skipped_by_path_spelling(box) -> None:
    g = activate(box, "alice", "all")
    try:
        for path in ("/root/./approved-x", "/root//approved-y"):
            r = sudo(box, "-n", "/usr/bin/touch", path)
            assert r.returncode == 1 and "needs an approval" in r.stderr, (path, r.stderr)
        assert not exists(box, "/root/approved-x") and not exists(box, "/root/approved-y")
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_sudoedit_and_long_option_paths_meet_program_guardrails(box) -> None:
    g = activate(box, "alice", "all")
    try:
        box.run("mkdir -p /root/.ssh /tmp/v && touch /tmp/v/notes")
        for path in ("/etc/shadow", "/etc//shadow", "/etc/./shadow", "/tmp/../etc/shadow"):
            r = box.run(["env", "SUDO_EDITOR=/usr/bin/true", "sudo", "-n", "-e", path],
                        user="alice", check=False, timeout=60)
            assert r.returncode == 1 and "use vipw -s" in r.stderr, (path, r.stderr)
        fine = box.run(["env", "SUDO_EDITOR=/usr/bin/true", "sudo", "-n", "-e",
                        "/tmp/v/notes"], user="alice", check=False, timeout=60)
        assert fine.returncode == 0, fine.stderr
        for arg in ("--target-directory=/root//.ssh", "--target-directory=/root/./.ssh"):
            r = sudo(box, "-n", "cp", arg, "/etc/hostname")
            assert r.returncode == 1 and "not into root's keys" in r.stderr, (arg, r.stderr)
            assert not exists(box, "/root/.ssh/hostname"), arg
        ok = sudo(box, "-n", "cp", "--target-directory=/tmp//v", "/etc/hostname")
        assert ok.returncode == 0 and exists(box, "/tmp/v/hostname"), ok.stderr
        denied = [e for e in events(box, "sudo_denied")  # both spellings, logged folded
                  if e.get("JIT_COMMAND") == "/usr/bin/cp --target-directory=/root/.ssh "
                  "/etc/hostname"]
        assert [e["JIT_GUARDRAIL"] for e in denied] == ["4", "4"], denied
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_check_config_names_both_guardrail_forms(box) -> None:
    out = box.run(["jit", "check-config"]).stdout
    assert "guardrails[0]: deny match '^/usr/bin/rm -rf /( |$)'" in out, out
    assert "guardrails[1]: deny program /usr/bin/rm args" in out, out


def test_one_users_wrong_passwords_stop_nobody_elses_sudo(box) -> None:
    """40 wrong-password sudos of alice at once; bob's right password still answers.
    Before, each wrong one held one of hostd's four auth threads for pam_unix's ~2 s,
    so bob's check waited behind 20 s of alice's and sudo gave up at 10 s."""
    ga, gb = activate(box, "alice", "secure"), activate(box, "bob", "secure")
    box.run("rm -rf /home/alice/flood && mkdir /home/alice/flood", user="alice")
    box.run("cd /home/alice/flood && for i in $(seq 40); do (echo wrong | sudo -S "
            "/usr/bin/whoami >/dev/null 2>$i; echo $? >$i.rc) >/dev/null 2>&1 </dev/null & "
            "done", user="alice")
    try:
        # hostd's queue of alice's checks is full once one of hers is told so (8 wait,
        # ~2 s each); counting her sudos in flight raced: most are refused at once
        wait_for("alice's checks queued", lambda: box.run(
            "grep -l 'already waiting' /home/alice/flood/*", check=False).stdout, timeout=30)
        bob = sudo(box, "-S", "/usr/bin/whoami", user="bob", input="battery staple\n")
        assert bob.returncode == 0 and bob.stdout.strip() == "root", bob.stderr
        wait_for("alice's sudos to end", lambda: len(list(box.path("/home/alice/flood").glob(
            "*.rc"))) == 40, timeout=120)
        flood = box.path("/home/alice/flood")
        told = [(flood / str(i)).read_text() for i in range(1, 41)]
        assert {(flood / f"{i}.rc").read_text().strip()
                for i in range(1, 41)} == {"1"}
        assert any("password checks are still running" in t or "password checks of yours"
                   in t for t in told), told[:3]
        assert not any("cannot reach the access daemon" in t for t in told), told[:3]
    finally:
        box.run(["pkill", "-f", "^sudo -S /usr/bin/whoami"], check=False)
        box.run(["jit", "revoke", ga["id"]], user="alice")
        box.run(["jit", "revoke", gb["id"]], user="bob")


def test_a_password_timestamp_is_not_reused_by_another_terminal(box) -> None:
    """sudo in one terminal session, then a new session on the same /dev/pts/N: the
    timestamp of the first does not let the second in (keyed by the tty's device, the
    session id and the session leader's start time, not the tty's name)."""
    g = activate(box, "alice", "secure")
    try:
        first = box.run(["script", "-qec", "echo 'correct horse' | sudo -S /usr/bin/whoami"
                         " && sudo -n /usr/bin/whoami && tty", "/dev/null"], user="alice",
                        check=False)
        assert first.returncode == 0 and first.stdout.count("root") == 2, first
        second = box.run(["script", "-qec", "tty; sudo -n /usr/bin/whoami", "/dev/null"],
                         user="alice", check=False)
        assert re.findall(r"/dev/pts/\d+", second.stdout) == re.findall(
            r"/dev/pts/\d+", first.stdout), "the new session got the same terminal name"
        assert "root" not in second.stdout, second
        assert "a password is required" in second.stdout, second
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")
