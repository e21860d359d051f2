"""sudo through jit_sudo.so on the installed package: real sudo 1.9.13, run by alice,
decided by hostd. One host for the module: it switches sudo's policy for good."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from jithost import CORP_KEY, Host, configure, events, issue, terminal, wait_for

DEBIAN_SUDO_CONF_PATH = "/etc/sudo.conf"

POLICY = """\
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
authenticate = false
sudo = [ { runas = "root", commands = ["/usr/bin/id -u", "/usr/bin/bash",
                                       "/usr/bin/touch /tmp/approved-*",
                                       "/usr/bin/printf *", "sudoedit /etc/motd"] } ]

[roles.secure]
groups = []
max_ttl = "1h"
issuers = ["corp"]
sudo = [ { runas = "root", commands = ["/usr/bin/whoami"] } ]

[[guardrails]]
action = "deny"
match = '^/usr/bin/rm '
message = "no rm through jit on this host"

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /tmp/approved-'
message = "creating approved files needs a second pair of eyes"
"""

STANDING = """
[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""


def sudo(box, *args: str, user: str = "alice", input: str | None = None,
         check: bool = False) -> subprocess.CompletedProcess[str]:
    return box.run(["sudo", *args], user=user, input=input, check=check, timeout=60)


def exists(box, path: str) -> bool:
    """Seen from inside: the container's /tmp is its own tmpfs, not the overlay's."""
    return box.run(["test", "-e", path], check=False).returncode == 0


def activate(box, user: str, role: str, duration: str = "30m") -> dict:
    token = issue(box, user, role, duration)
    out = json.loads(box.run(["jit", "activate", token, "--json"], user=user).stdout)
    assert out["ok"], out
    return out["grant"]


@pytest.fixture(scope="module")
def box(own_host: Host):
    b = own_host.box
    if not b.path(CORP_KEY).exists():
        configure(b)
    configure(b, POLICY)
    original = b.path(DEBIAN_SUDO_CONF_PATH).read_bytes()
    refused = b.run(["jit", "setup", "sudo", "--enable", "--json"], check=False)
    assert refused.returncode == 1 and "no [[standing]] rule" in refused.stdout, refused.stdout
    assert b.path(DEBIAN_SUDO_CONF_PATH).read_bytes() == original
    configure(b, POLICY + STANDING)
    b.run(["jit", "setup", "sudo", "--enable"])
    b.original_sudo_conf = original
    b.run(["chpasswd"], input="alice:correct horse\n")
    return b


def test_no_grant_is_refused_with_the_reason(box) -> None:
    r = sudo(box, "-n", "/usr/bin/id", "-u")
    assert r.returncode == 1 and "holds no grant allowing sudo" in r.stderr, r.stderr
    (ev,) = [e for e in events(box, "sudo_denied") if e.get("JIT_USER") == "alice"][-1:]
    assert ev["JIT_CODE"] == "no_grant" and ev["JIT_COMMAND"] == "/usr/bin/id -u"


def test_a_grant_runs_what_it_names_and_nothing_else(box) -> None:
    g = activate(box, "alice", "ops")
    try:
        r = sudo(box, "-n", "id", "-u")
        assert (r.returncode, r.stdout.strip()) == (0, "0"), r.stderr
        other = sudo(box, "-n", "/usr/bin/id", "-g")
        assert other.returncode == 1 and "may not run /usr/bin/id -g" in other.stderr
        allowed = [e for e in events(box, "sudo_allowed") if e.get("JIT_GRANT_ID") == g["id"]]
        assert allowed and allowed[-1]["JIT_RUNAS"] == "root"
        listing = sudo(box, "-n", "-l")
        assert "(root) NOPASSWD: /usr/bin/id -u" in listing.stdout, listing.stdout
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")
    assert sudo(box, "-n", "id", "-u").returncode == 1, "revoked: refused again"


def test_a_deny_guardrail_shows_its_message_even_inside_a_shell(box) -> None:
    g = activate(box, "alice", "ops")
    try:
        r = sudo(box, "-n", "/usr/bin/rm", "-f", "/tmp/nothing")
        assert r.returncode == 1 and "no rm through jit on this host" in r.stderr
        box.run(["touch", "/tmp/keep-me"])
        inside = sudo(box, "-n", "/usr/bin/bash", "-c", "/usr/bin/rm -f /tmp/keep-me; echo ran")
        assert exists(box, "/tmp/keep-me"), "intercept let rm run inside bash"
        assert "no rm through jit" in inside.stderr, inside.stderr
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_an_approve_guardrail_waits_for_bob_and_runs_once(box) -> None:
    g = activate(box, "alice", "ops")
    try:
        quick = sudo(box, "-n", "/usr/bin/touch", "/tmp/approved-1")
        assert quick.returncode == 1 and "needs an approval" in quick.stderr, quick.stderr
        waiting = box.popen(["sudo", "/usr/bin/touch", "/tmp/approved-1"], user="alice")
        pending = wait_for("the command approval", lambda: [
            r for r in json.loads(box.run(["jit", "requests", "--json"], user="bob").stdout)
            ["requests"] if r["kind"] == "command" and r["state"] == "pending"], timeout=20)
        assert "/usr/bin/touch /tmp/approved-1" in pending[0]["reason"]
        box.run(["jit", "approve", pending[0]["id"]], user="bob")
        _, err = waiting.communicate(timeout=30)
        assert waiting.returncode == 0, err
        assert "waiting for approval" in err and pending[0]["id"] in err
        assert exists(box, "/tmp/approved-1")
        again = sudo(box, "-n", "/usr/bin/touch", "/tmp/approved-1")
        assert again.returncode == 1 and "needs an approval" in again.stderr, "used once"
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_password_asked_when_the_role_says_so_and_cached(box) -> None:
    g = activate(box, "alice", "secure")
    try:
        wrong = sudo(box, "-S", "/usr/bin/whoami", input="no\nnope\nnever\n")
        assert wrong.returncode == 1 and "3 incorrect password attempts" in wrong.stderr
        both = box.run(["sh", "-c", "echo 'correct horse' | sudo -S /usr/bin/whoami && "
                                    "sudo -n /usr/bin/whoami"], user="alice", check=False)
        assert both.returncode == 0 and both.stdout.split() == ["root", "root"], both.stderr
        assert "[jit] password for alice" in both.stderr
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_sudoedit_of_the_named_file_only(box) -> None:
    g = activate(box, "alice", "ops")
    editor = "/usr/local/bin/append-line"
    box.write(editor, "#!/bin/sh\necho 'edited by alice' >> \"$1\"\n", 0o755)
    try:
        env = ["env", f"SUDO_EDITOR={editor}"]
        ok = box.run([*env, "sudoedit", "-n", "/etc/motd"], user="alice", check=False)
        assert ok.returncode == 0, ok.stderr
        assert "edited by alice" in box.run(["cat", "/etc/motd"]).stdout, "written back"
        other = box.run([*env, "sudoedit", "-n", "/etc/issue"], user="alice", check=False)
        assert other.returncode == 1 and "may not" in other.stderr, other.stderr
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_hostile_command_lines_stay_inert(box) -> None:
    g = activate(box, "alice", "ops")
    try:
        hostile = "x\x1b[2J\nfake: approved by root"
        r = sudo(box, "-n", "/usr/bin/printf", hostile)
        assert r.returncode == 0
        ev = [e for e in events(box, "sudo_allowed") if e.get("JIT_GRANT_ID") == g["id"]][-1]
        assert "\x1b" not in ev["JIT_COMMAND"] and "\n" not in ev["JIT_COMMAND"]
        assert "\\x1b[2J\\nfake" in ev["JIT_COMMAND"]
    finally:
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_expired_grant_is_refused(box) -> None:
    activate(box, "alice", "ops", "3s")
    assert sudo(box, "-n", "id", "-u").returncode == 0
    time.sleep(4)
    r = sudo(box, "-n", "id", "-u")
    assert r.returncode == 1 and "holds no grant" in r.stderr


def test_a_hostile_command_reaches_bobs_terminal_inert(box) -> None:
    """The paused command's line is shown to the approver: escaped, on a framed line."""
    g = activate(box, "alice", "ops")
    shown = terminal(box, "bob")
    hostile = "/tmp/approved-\x1b]0;OK\x07\x1b[2J\njit: request abcdefgh was approved"
    waiting = box.popen(["sudo", "/usr/bin/touch", hostile], user="alice")
    try:
        text = wait_for("the notice on bob's terminal", lambda: "approved-" in shown.read_text(
            errors="replace") and shown.read_text(errors="replace"), timeout=20)
        assert "\x1b]0;OK" not in text and "\x1b[2J" not in text
        assert "\\x1b]0;OK\\x07" in text
        assert "\njit: request abcdefgh" not in text, "the command line forged a line"
    finally:
        waiting.kill()
        box.run(["pkill", "-u", "bob", "script"], check=False)
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_hostd_unreachable_fails_closed(box) -> None:
    g = activate(box, "alice", "ops")
    box.run(["systemctl", "stop", "jit-hostd.socket", "jit-hostd.service"])
    try:
        r = sudo(box, "-n", "id", "-u")
        assert r.returncode == 1 and "jit: cannot reach the access daemon" in r.stderr, r.stderr
    finally:
        box.run(["systemctl", "start", "jit-hostd.socket"])
        box.run(["jit", "revoke", g["id"]], user="alice")


def test_zz_disable_restores_sudo_conf_byte_for_byte(box) -> None:
    box.run(["jit", "setup", "sudo", "--disable"])
    assert box.path(DEBIAN_SUDO_CONF_PATH).read_bytes() == box.original_sudo_conf
