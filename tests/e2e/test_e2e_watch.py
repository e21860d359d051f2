"""Live sessions on the installed package (issue 23): real sudo 1.9.13, jit_sudo.so, the
recorder hostd wraps around the command, `jit watch`, `jit terminate`, moderated roles.

alice's terminal is a tmux pane in the container (a real pty); bob's watch is a real
`jit watch` process whose output is read as it comes. One host for the module: it
switches sudo's policy for good."""

from __future__ import annotations

import codecs
import json
import os
import re
import signal
import threading

import pytest
from jithost import CORP_KEY, Host, configure, events, issue, wait_for
from test_e2e_record import Pane

SECRET = "AKIAIOSFODNN7EXAMPLE"  # a built-in rule (AWS access key id)

POLICY = """\
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "always"
sudo = [ { runas = "root", commands = ["ALL"] } ]

[roles.guarded]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "always"
moderation = { watchers = 1, on_leave = "pause", join_timeout = "15s" }
sudo = [ { runas = "root", commands = ["ALL"] } ]

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""


class Watch:
    """`jit watch` as a user in the container, its output collected as it comes."""

    def __init__(self, box, user: str, rid: str, *args: str) -> None:
        self.box, self.user, self.rid = box, user, rid
        self.proc = box.popen(["jit", "watch", rid, *args], user=user)
        self.out: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        fd = self.proc.stdout.fileno()
        for chunk in iter(lambda: os.read(fd, 1 << 16), b""):
            self.out.append(decoder.decode(chunk))

    def text(self) -> str:
        return "".join(self.out)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        return wait_for(f"{pattern!r} in {self.user}'s watch", lambda: self.text()
                        if re.search(pattern, self.text()) else None, timeout=timeout)

    def pid(self) -> int:
        """The watch's pid inside the container (nsenter and runuser fork)."""
        found = self.box.run(["pgrep", "-u", self.user, "-f", f"jit watch {self.rid}"],
                             check=False).stdout.split()
        assert len(found) == 1, found
        return int(found[0])

    def signal(self, sig: str) -> None:
        pid = self.pid()
        if sig == "CONT":  # runuser and nsenter stopped themselves when their child did
            os.kill(self.proc.pid, signal.SIGCONT)  # nsenter, on this side
            parent = self.box.run(["ps", "-o", "ppid=", "-p", str(pid)]).stdout.strip()
            self.box.run(["kill", "-CONT", parent])
        self.box.run(["kill", f"-{sig}", str(pid)])

    def finish(self, timeout: float = 30) -> tuple[int, str]:
        self.reader.join(timeout)  # its stdout to the end, then its exit status
        rc = self.proc.wait(timeout)
        return rc, self.proc.stderr.read()


@pytest.fixture(scope="module")
def box(own_host: Host):
    b = own_host.box
    if not b.path(CORP_KEY).exists():
        configure(b)
    configure(b, POLICY)
    b.run(["jit", "setup", "sudo", "--enable"])
    b.grant = activate(b, "ops")
    return b


def activate(box, role: str) -> dict:
    out = json.loads(box.run(["jit", "activate", issue(box, "alice", role, "30m"), "--json"],
                             user="alice").stdout)
    assert out["ok"], out
    return out["grant"]


def session_id(pane: Pane) -> str:
    shown = pane.wait(r"this session is recorded \([0-9a-f]{16}\)")
    return re.findall(r"this session is recorded \(([0-9a-f]{16})\)", shown)[-1]


def test_bob_watches_alices_sudo_masked_and_terminates_it(box) -> None:
    pane = Pane(box)
    try:
        pane.type("sudo -i")
        rid = session_id(pane)
        own = box.run(["jit", "watch", rid], user="alice", check=False)
        assert own.returncode == 1 and "own session" in own.stderr
        other = box.run(["jit", "watch", rid], user="carol", check=False)
        assert other.returncode == 1 and "not_approver" in other.stderr
        live = json.loads(box.run(["jit", "sessions", "--live", "--json"], user="bob").stdout)
        assert [s["id"] for s in live["sessions"]] == [rid]
        assert live["sessions"][0]["user"] == "alice"
        bob = Watch(box, "bob", rid, "--from-start")
        wait_for("bob watching", lambda: events(box, "session_watch_started"), timeout=30)
        pane.type(f"echo key {SECRET} done-$((6*7))")
        seen = bob.wait_for(r"key \*+ done-42")
        assert SECRET not in seen
        assert "this session is recorded" not in seen  # the recorder's own line is not output
        done = box.run(["jit", "terminate", rid, "--reason", "not in the change window"],
                       user="bob")
        assert done.returncode == 0
        pane.wait(r"hostd ends this session: ended by bob: not in the change window"
                  r"[\s\S]*\nalice\$")
        rc, err = bob.finish()
        assert rc == 0 and f"session {rid} ended" in err, err
    finally:
        pane.close()
    (ev,) = [e for e in events(box, "session_terminated") if e.get("JIT_RECORDING") == rid]
    assert ev["JIT_APPROVER"] == "bob" and "not in the change window" in ev["JIT_REASON"]
    ended = box.run(["jit", "watch", rid], user="bob", check=False)
    assert ended.returncode == 1 and "session_ended" in ended.stderr


def test_a_watcher_printing_nothing_never_holds_the_session_up(box) -> None:
    """bob's watch is stopped (SIGSTOP: it reads nothing) while alice's command prints
    40 MiB: the command ends and its recording closes; bob is dropped, not waited for."""
    box.run("rm -f /tmp/go && mkfifo -m 666 /tmp/go")
    proc = box.popen(["sudo", "/usr/bin/sh", "-c", "read x < /tmp/go; "
                      "head -c 30000000 /dev/zero | base64"], user="alice")
    started = wait_for("the recording", lambda: [
        e for e in events(box, "recording_started") if "head -c" in e.get("JIT_COMMAND", "")],
        timeout=30)
    rid = started[0]["JIT_RECORDING"]
    bob = Watch(box, "bob", rid)
    wait_for("bob watching", lambda: [e for e in events(box, "session_watch_started")
                                      if e.get("JIT_RECORDING") == rid], timeout=30)
    bob.signal("STOP")
    try:
        box.run("echo go > /tmp/go")  # the command starts printing
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert len(out) > 40_000_000  # all of it reached alice
        closed = wait_for("recording_closed", lambda: [
            e for e in events(box, "recording_closed") if e.get("JIT_RECORDING") == rid],
            timeout=60)
        assert closed[0]["JIT_DECISION"] == "exit 0"
    finally:
        bob.signal("CONT")
    ended = wait_for("bob dropped", lambda: [e for e in events(box, "session_watch_ended")
                                             if e.get("JIT_RECORDING") == rid], timeout=30)
    assert "did not keep up" in ended[0]["JIT_REASON"]
    rc, err = bob.finish(60)
    assert rc == 1 and "too_slow" in err


def test_a_moderated_session_waits_starts_pauses_resumes_and_times_out(box) -> None:
    box.run(["jit", "revoke", box.grant["id"]], user="alice")
    activate(box, "guarded")
    pane = Pane(box)
    try:
        pane.type("sudo -i")
        shown = pane.wait(r"waiting for a moderator to watch this session \(jit watch "
                          r"[0-9a-f]{16} --moderate\)")
        rid = re.findall(r"jit watch ([0-9a-f]{16}) --moderate", shown)[-1]
        own = box.run(["jit", "watch", rid, "--moderate"], user="alice", check=False)
        assert own.returncode == 1 and "own session" in own.stderr
        carol = box.run(["jit", "watch", rid, "--moderate"], user="carol", check=False)
        assert carol.returncode == 1 and "not_approver" in carol.stderr
        bob = Watch(box, "bob", rid, "--moderate")
        pane.wait(r"a moderator joined: the session starts")
        pane.type("echo started-$((1+1))")
        pane.wait(r"\nstarted-2")
        bob.signal("KILL")  # bob's watch dies: the session pauses
        pane.wait(r"session paused: the moderator left")
        stopped = box.run(["ps", "-u", "root", "-o", "stat=,comm="]).stdout
        assert re.search(r"^T\S*\s+bash$", stopped, re.M), stopped  # root's shell, stopped
        pane.type("echo after-$((2+2))")  # held in alice's terminal while paused
        bob = Watch(box, "bob", rid, "--moderate")
        pane.wait(r"session resumed: a moderator returned")
        pane.wait(r"\nafter-4")
        assert [e for e in events(box, "session_paused") if e.get("JIT_RECORDING") == rid]
        assert [e for e in events(box, "session_resumed") if e.get("JIT_RECORDING") == rid]
        bob.signal("KILL")
        pane.wait(r"session paused[\s\S]*session paused")
        pane.wait(r"hostd ends this session: no moderator returned within 15s"
                  r"[\s\S]*\nalice\$", timeout=60)
    finally:
        pane.close()


def test_a_moderated_session_nobody_joins_never_starts(box) -> None:
    before = len(events(box, "recording_closed"))
    pane = Pane(box)
    try:
        pane.type("sudo -i")
        pane.wait(r"waiting for a moderator")
        pane.wait(r"hostd ends this session: no moderator joined within 15s"
                  r"[\s\S]*\nalice\$", timeout=60)
    finally:
        pane.close()
    closed = wait_for("recording_closed", lambda: events(box, "recording_closed")[before:],
                      timeout=30)
    assert closed[0]["JIT_DECISION"] == "not started"  # the command never ran
