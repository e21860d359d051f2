"""Live sessions against a real hostd in a sandbox root (issue 23): a fake recorder
(root, `record.open` with the token `sudo.check` issued) streams frames; watchers are
the real `jit watch` run under the users' own uids; who may watch, terminate and
moderate; a slow watcher dropped, never waited for; moderation's start, pause, resume
and join_timeout as the recorder's stream sees them."""

from __future__ import annotations

import base64
import os
import select
import shlex
import signal
import subprocess
import time

import pytest
from sandbox import POLICY, PYTHON, USERS, Sandbox
from test_recorder_terminal import Tmux

from hostd.client import Client
from hostd.protocol import request

WATCH_POLICY = POLICY + """
[roles.rec]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "always"
sudo = [ { runas = "root", commands = ["/usr/bin/id"] } ]

[roles.mod]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "always"
moderation = { watchers = 1, on_leave = "pause", join_timeout = "3s" }
sudo = [ { runas = "root", commands = ["/usr/bin/id", "/usr/bin/sh -c *"] } ]

[roles.strict]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
record = "always"
moderation = { on_leave = "terminate" }
sudo = [ { runas = "root", commands = ["/usr/bin/id"] } ]
"""

WATCHERS: list[subprocess.Popen] = []


def _sandbox(*groups: dict):
    """A started sandbox with WATCH_POLICY; the watchers left running are ended after."""
    b = Sandbox(WATCH_POLICY, *groups)
    b.start()
    yield b
    for proc in WATCHERS:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    WATCHERS.clear()
    b.cleanup()


@pytest.fixture
def box():
    yield from _sandbox()


def allow(box, role: str, argv: list[str]) -> dict:
    """A grant for alice and a recorded sudo allowed: sudo.check's answer."""
    rc, out = box.jit_json("activate", box.issue("alice", role=role), user="alice")
    assert rc == 0, out
    info = ["user=alice", "uid=1001", "gid=1001", "cwd=/", "tty=/dev/pts/7", "pid=4242",
            "ppid=4241", "host=testhost"]
    with Client(box.socket_path, trusted=True) as client:
        answer = client.call(request("sudo.check", mode="run", settings=["runas_user=root"],
                                     user_info=info, argv=argv,
                                     env=["TERM=xterm", "PATH=/usr/bin:/bin"]))
    assert answer.get("decision") == "allow", answer
    return answer


def open_session(box, role: str = "rec"):
    """A recorded sudo allowed, and a fake recorder's stream."""
    argv = allow(box, role, ["/usr/bin/id"])["argv"]
    token = argv[argv.index("--token") + 1]
    stream = Client(box.socket_path, timeout=10, trusted=True).stream(
        "record.open", token=token, width=80, height=24, term="xterm", pty=True)
    return stream, stream.opened["id"]


def send(stream, t: float, data: bytes) -> None:
    stream.send({"t": t, "o": base64.b64encode(data).decode()})


def end(stream, status: str = "exit 0") -> dict:
    stream.send({"t": 9.0, "end": status})
    while True:
        frame = stream.recv(timeout=10)
        assert frame is not None
        if "ok" in frame:
            return frame


def watch(box, user: str, rid: str, *args: str) -> subprocess.Popen:
    cmd = [PYTHON, "-m", "hostd.cli", "watch", rid, *args]
    if user != "root":
        cmd = ["setpriv", f"--reuid={USERS[user]}", f"--regid={USERS[user]}",
               "--clear-groups", *cmd]
    proc = subprocess.Popen(cmd, env=box.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=box.root)
    WATCHERS.append(proc)
    return proc


def read_until(proc: subprocess.Popen, marker: bytes, timeout: float = 10.0) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {got!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"EOF before {marker!r}: {got!r} {proc.stderr.read()!r}"
            got += chunk
    return got


def watching(box, rid: str, count: int = 1, mode: str | None = None) -> None:
    box.wait_for(lambda: len([e for e in box.events("session_watch_started")
                              if e["JIT_RECORDING"] == rid
                              and (mode is None or e["JIT_MODE"] == mode)]) >= count)


def test_an_approver_watches_from_the_start_filtered_until_the_end(box):
    stream, rid = open_session(box)
    send(stream, 0.1, b"before he came\r\n")
    bob = watch(box, "bob", rid, "--from-start")
    watching(box, rid)
    send(stream, 0.2, b"live \x1b[6n\x1b]52;c;AAAA\x07\x1b[1mbold\x1b[0m\r\n")
    got = read_until(bob, b"bold\x1b[0m\r\n")
    assert got.startswith(b"before he came\r\n")
    assert b"\x1b[6n" not in got and b"\x1b]52" not in got  # answering, clipboard: dropped
    assert end(stream)["ok"]
    _, err = bob.communicate(timeout=10)
    assert bob.returncode == 0, err
    assert b"ended (exit 0)" in err and b"watching " + rid.encode() + b" as observer" in err
    (ended,) = box.wait_for(lambda: box.events("session_watch_ended"))
    assert (ended["JIT_APPROVER"], ended["JIT_MODE"], ended["JIT_USER"]) == (
        "bob", "observer", "alice")
    assert ended["JIT_REASON"] == "the session ended"


def test_without_from_start_only_what_comes_after(box):
    stream, rid = open_session(box)
    send(stream, 0.1, b"old\r\n")
    bob = watch(box, "bob", rid)
    watching(box, rid)
    send(stream, 0.2, b"new\r\n")
    assert read_until(bob, b"new\r\n") == b"new\r\n"
    end(stream)


def test_who_may_watch_and_a_finished_session(box):
    stream, rid = open_session(box)
    own = box.jit("watch", rid, user="alice")
    assert own.returncode == 1 and "permission_denied" in own.stderr
    assert "own session" in box.jit("watch", rid, "--moderate", user="alice").stderr
    other = box.jit("watch", rid, user="carol")
    assert other.returncode == 1 and "not_approver" in other.stderr
    # root may observe, never moderate (it is no approver of the role)
    assert "not_approver" in box.jit("watch", rid, "--moderate").stderr
    rc, listed = box.jit_json("sessions", "--live", user="bob")
    assert rc == 0 and [r["id"] for r in listed["sessions"]] == [rid]
    assert box.jit_json("sessions", "--live", user="carol")[1]["sessions"] == []
    end(stream)
    done = box.jit("watch", rid, user="bob")  # answered, never a hang (T#25669)
    assert done.returncode == 1 and "session_ended" in done.stderr
    assert "not_found" in box.jit("watch", "0123456789abcdef", user="bob").stderr


def test_an_approver_terminates_and_the_recorder_is_told_who_and_why(box):
    stream, rid = open_session(box)
    refused = box.jit("terminate", rid, "--reason", "mine", user="alice")
    assert refused.returncode == 1 and "own session" in refused.stderr
    assert "not_approver" in box.jit("terminate", rid, "--reason", "x", user="carol").stderr
    bob = watch(box, "bob", rid)
    watching(box, rid)
    done = box.jit("terminate", rid, "--reason", "rm -rf \x1b[2J looks wrong", user="bob")
    assert done.returncode == 0, done.stderr
    frame = stream.recv(timeout=10)
    assert frame == {"hangup": "ended by bob: rm -rf \x1b[2J looks wrong"}
    (ev,) = box.events("session_terminated")
    assert (ev["JIT_APPROVER"], ev["JIT_RECORDING"]) == ("bob", rid)
    assert "\x1b" not in ev["MESSAGE"]  # escaped where logged
    end(stream, "signal 1")
    bob.communicate(timeout=10)
    assert bob.returncode == 0


def test_a_watcher_that_reads_nothing_is_dropped_and_never_slows_the_session(box):
    stream, rid = open_session(box)
    bob = watch(box, "bob", rid)
    watching(box, rid)
    os.kill(bob.pid, signal.SIGSTOP)  # its terminal stopped: it reads nothing
    try:
        chunk = b"x" * 32 * 1024
        for i in range(2048):  # until the watcher is dropped: at most 64 MiB
            send(stream, 0.001 * i, chunk)
            if i % 64 == 0 and box.events("session_watch_ended"):
                break
        assert end(stream)["ok"]  # every frame written; the recorder never waited
    finally:
        os.kill(bob.pid, signal.SIGCONT)
    (ended,) = box.wait_for(lambda: box.events("session_watch_ended"))
    assert "did not keep up" in ended["JIT_REASON"]
    bob.stdout.read()
    rc, err = bob.wait(10), bob.stderr.read()
    assert rc == 1 and b"too_slow" in err, err


def test_a_moderated_session_starts_pauses_resumes_and_ends_on_join_timeout(box):
    stream, rid = open_session(box, "mod")
    assert stream.opened["moderated"] is True
    root = watch(box, "root", rid)  # an observer: never counts
    watching(box, rid, mode="observer")
    with pytest.raises(Exception, match="no frame"):
        stream.recv(timeout=0.5)  # no start without a moderator
    bob = watch(box, "bob", rid, "--moderate")
    assert stream.recv(timeout=10) == {"start": "a moderator joined"}
    root.kill()  # the observer leaving changes nothing (T#25667)
    root.wait(10)
    box.wait_for(lambda: box.events("session_watch_ended"))
    bob.kill()  # the moderator's watch dies: the session pauses
    assert stream.recv(timeout=10) == {"pause": "the moderator left"}
    (paused,) = box.wait_for(lambda: box.events("session_paused"))
    assert paused["JIT_RECORDING"] == rid
    bob = watch(box, "bob", rid, "--moderate")
    assert stream.recv(timeout=10) == {"resume": "a moderator returned"}
    box.wait_for(lambda: box.events("session_resumed"))
    bob.kill()
    assert stream.recv(timeout=10) == {"pause": "the moderator left"}
    frame = stream.recv(timeout=10)  # join_timeout: 3 s
    assert frame == {"hangup": "no moderator returned within 3s"}
    end(stream, "signal 1")


def test_a_silent_moderator_counts_as_gone(box):
    stream, rid = open_session(box, "mod")
    bob = watch(box, "bob", rid, "--moderate")
    assert stream.recv(timeout=10) == {"start": "a moderator joined"}
    os.kill(bob.pid, signal.SIGSTOP)  # its connection stays open, it says nothing
    try:
        assert stream.recv(timeout=10) == {"pause": "the moderator left"}
    finally:
        os.kill(bob.pid, signal.SIGCONT)
    (ended,) = box.wait_for(lambda: box.events("session_watch_ended"))
    assert ended["JIT_REASON"] == "no sign of life for 5 s"
    end(stream)


def test_the_real_recorder_waits_for_its_moderator_pauses_and_resumes(box, tmp_path):
    """jit-record in a real pty (tmux): the command starts when bob moderates, is
    stopped with its input held while he is gone, and goes on when he returns."""
    answer = allow(box, "mod", ["/usr/bin/sh", "-c", "read x; echo got $x", "jitpaused"])
    env = dict(e.split("=", 1) for e in answer["env"])
    env.update(PYTHONPATH=str(box.lib), PYTHONDONTWRITEBYTECODE="1")
    line = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), PYTHON, "-m",
                       "hostd.record.main", "--socket", str(box.socket_path),
                       *answer["argv"][1:]])
    term = Tmux(tmp_path)
    try:
        term.type(line + "; echo recorder-exit=$?\n")
        term.wait("waiting for a moderator")
        (started,) = box.wait_for(lambda: box.events("recording_started"))
        rid = started["JIT_RECORDING"]
        bob = watch(box, "bob", rid, "--moderate")
        term.wait("the session starts")
        bob.kill()
        term.wait("session paused: the moderator left")
        pid = int(subprocess.run(["pgrep", "-f", "^/usr/bin/sh -c read x"], capture_output=True,
                                 text=True, check=True).stdout.split()[0])
        box.wait_for(lambda: _state(pid) == "T")  # the command is stopped
        term.type("hello\n")  # held in the terminal while paused
        bob = watch(box, "bob", rid, "--moderate")
        term.wait("session resumed")
        term.wait("got hello")
        term.wait("recorder-exit=0")
        assert box.wait_for(lambda: [e for e in box.events("recording_closed")
                                     if e["JIT_RECORDING"] == rid])[0]["JIT_DECISION"] == "exit 0"
    finally:
        term.kill()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def adm_box():
    yield from _sandbox({"adm": ["carol"]})  # carol reads recordings already


def test_adm_observes_and_may_do_nothing_more(adm_box):
    box = adm_box
    stream, rid = open_session(box)
    carol = watch(box, "carol", rid)
    watching(box, rid, mode="observer")
    send(stream, 0.1, b"seen by adm\r\n")
    read_until(carol, b"seen by adm\r\n")
    assert "not_approver" in box.jit("watch", rid, "--moderate", user="carol").stderr
    assert "not_approver" in box.jit("terminate", rid, "--reason", "x", user="carol").stderr
    end(stream)
    assert carol.wait(10) == 0


def test_on_leave_terminate_ends_the_session_when_the_moderator_goes(box):
    stream, rid = open_session(box, "strict")
    bob = watch(box, "bob", rid, "--moderate")
    assert stream.recv(timeout=10) == {"start": "a moderator joined"}
    bob.kill()
    assert stream.recv(timeout=10) == {"hangup": "the moderator left"}
    (ev,) = box.wait_for(lambda: box.events("session_terminated"))
    assert ev["JIT_RECORDING"] == rid and ev["JIT_REASON"] == "the moderator left"
    end(stream, "signal 1")
