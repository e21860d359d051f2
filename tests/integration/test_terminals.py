"""hostd's terminal.sock (hostd/server/ttys.py) against a real sandbox hostd: a session
terminal handed over with SCM_RIGHTS gets the revocation notice although hostd never
opens the device, until close_session; refusals for a non-root peer, no descriptor, a
descriptor that is not a terminal, an unknown user; `jit request` says how many approver
terminals it reached."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess

import pytest
from sandbox import POLICY, PYTHON, Sandbox

from hostd.client import Client
from hostd.protocol import request

TERMINAL_POLICY = POLICY + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp", "host"]
login = true
requesters = ["bob"]
approvers = ["alice"]
"""


@pytest.fixture
def box():
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    b = Sandbox(TERMINAL_POLICY)
    b.start()
    yield b
    b.cleanup()


def hand_over(box: Sandbox, user: str, fds: list[int], split: bool = False) -> dict:
    """One pam.terminal request with `fds` (from this process). `split`: as pam_jit
    sends it, the object with the descriptors, then the newline on its own."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(box.socket_path.parent / "terminal.sock"))
        line = json.dumps({"v": 1, "op": "pam.terminal", "user": user}).encode() + b"\n"
        s.sendmsg([line[:-1] if split else line],
                  [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    b"".join(fd.to_bytes(4, "little") for fd in fds))] if fds else [])
        if split:
            s.send(b"\n")
        return json.loads(s.makefile("rb").readline())


def shown(master: int, timeout: float = 10) -> str:
    """What the terminal shows within `timeout` (until a line with a CR LF arrives)."""
    out = b""
    while select.select([master], [], [], timeout)[0]:
        out += os.read(master, 4096)
        if out.endswith(b"\r\n") and b"jit:" in out:
            break
    return out.decode("utf-8", "replace")


def pty_of(uid: int) -> tuple[int, int]:
    """A pty owned by `uid` with `mesg n` (0600): hostd could not open it by path."""
    master, slave = os.openpty()
    os.fchown(slave, uid, uid)
    os.fchmod(slave, 0o600)
    return master, slave


def test_a_handed_over_terminal_gets_the_revocation_until_close_session(box):
    master, slave = pty_of(1001)
    try:
        assert hand_over(box, "alice", [slave], split=True)["ok"]
        grant = json.loads(box.jit("activate", box.issue("alice", role="console"), "--json",
                                   user="alice").stdout)["grant"]["id"]
        box.jit("revoke", grant, check=True)
        assert "jit: your grant of role console was revoked by root" in shown(master)
        Client(box.socket_path).call(request("pam.close_session", user="alice"))
        grant = json.loads(box.jit("activate", box.issue("alice", role="console"), "--json",
                                   user="alice").stdout)["grant"]["id"]
        box.jit("revoke", grant, check=True)
        assert box.wait_for(lambda: len(box.events("grant_revoked")) == 2, timeout=10)
        assert shown(master, timeout=1) == ""  # closed at close_session: nothing more
    finally:
        os.close(master)
        os.close(slave)


def test_handovers_that_are_refused(box):
    r, w = os.pipe()
    master, slave = pty_of(1001)
    try:
        assert hand_over(box, "alice", [])["code"] == "bad_request"
        assert hand_over(box, "alice", [r])["code"] == "bad_request"  # not a terminal
        assert hand_over(box, "alice", [slave, slave])["code"] == "bad_request"
        assert hand_over(box, "nosuchuser", [slave])["code"] == "bad_request"
        probe = ("import json, os, socket, sys; s = socket.socket(socket.AF_UNIX); "
                 "s.connect(sys.argv[1]); print(s.recv(100) or 'closed')")
        st = os.stat(box.socket_path.parent / "terminal.sock")
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
        r2 = subprocess.run(["setpriv", "--reuid=1001", "--regid=1001", "--clear-groups",
                             PYTHON, "-c", probe, str(box.socket_path.parent / "terminal.sock")],
                            capture_output=True, text=True, timeout=30, check=False)
        assert "Permission denied" in r2.stderr  # 0600: only root connects at all
    finally:
        for fd in (r, w, master, slave):
            os.close(fd)


def test_jit_request_says_how_many_approver_terminals_it_reached(box):
    out = box.jit("request", "console", "--for", "30m", "--reason", "deploy", user="bob")
    assert out.returncode == 0, out.stderr
    assert "no approver is logged in" in out.stdout
    first = re.search(r"request (\w+)", out.stdout).group(1)
    withdrawn = box.jit("requests", "--cancel", first, user="bob")  # asking again would join it
    assert withdrawn.returncode == 0, withdrawn.stderr
    master, slave = pty_of(1001)
    try:
        assert hand_over(box, "alice", [slave])["ok"]
        out = box.jit("request", "console", "--for", "30m", "--reason", "again", user="bob")
        assert "approvers notified on 1 terminal" in out.stdout, out.stdout
        assert "jit: bob requests role console" in shown(master)
    finally:
        os.close(master)
        os.close(slave)
