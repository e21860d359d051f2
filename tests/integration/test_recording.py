"""Recorded sudo commands against a real hostd in a sandbox root: `sudo.check` wraps the
command in jit-record with a one-time token, the recorder (run here as sudo would run
it, as root, with the argv hostd returned) streams to `record.open`, hostd writes the
file, logs the digest, hangs sessions up when their grant ends, and removes old
recordings. The recorder is the real one; only sudo itself is the e2e tier's."""

from __future__ import annotations

import grp
import json
import os
import signal
import stat
import subprocess
import time

import pytest
from sandbox import POLICY, PYTHON, Sandbox

from hostd.client import Client
from hostd.errors import JitError
from hostd.protocol import request

RECORD_POLICY = POLICY + """
[roles.rec]
groups = []
max_ttl = "1h"
issuers = ["corp"]
authenticate = false
record = "always"
record_input = true
sudo = [ { runas = "alice", commands = ["/usr/bin/id", "/usr/bin/sh -c *", "/usr/bin/sleep *"] },
         { runas = "root", commands = ["/usr/bin/sh -c *"] } ]

[roles.lenient]
groups = []
max_ttl = "1h"
issuers = ["corp"]
authenticate = false
record = "interactive"
record_failure = "continue"
sudo = [ { runas = "root", commands = ["/usr/bin/dash -c *"] } ]

[roles.guarded]
groups = []
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
authenticate = false
record = "interactive"
sudo = [ { runas = "root", commands = ["/usr/bin/touch *"] } ]

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /tmp/approved-'

[masking]
rules = [ { name = "ticket", regex = 'TICKET-[0-9]{6}' } ]
"""


def vectors(argv: list[str], runas: str = "root", tty: str = "/dev/pts/7") -> dict:
    info = ["user=alice", "uid=1001", "gid=1001", "cwd=/", f"tty={tty}", "pid=4242",
            "ppid=4241", "host=testhost"]
    return {"settings": [f"runas_user={runas}"], "user_info": info, "argv": argv,
            "env": ["TERM=xterm", "PATH=/usr/bin:/bin"]}


def check(box, argv: list[str], **kw) -> dict:
    with Client(box.socket_path, trusted=True) as client:
        answer = client.call(request("sudo.check", mode="run", **vectors(argv, **kw)))
    assert answer.get("decision") == "allow", answer
    return answer


def activate(box, role: str) -> dict:
    rc, out = box.jit_json("activate", box.issue("alice", role=role), user="alice")
    assert rc == 0, out
    return out["grant"]


def recorder(box, answer: dict, stdin: str | bytes = "", **kw) -> subprocess.Popen:
    """jit-record as sudo would start it: root, the argv and env hostd answered; only the
    socket is the sandbox's."""
    argv = answer["argv"]
    assert argv[0] == "/usr/bin/jit-record"
    env = dict(e.split("=", 1) for e in answer["env"])
    env.update(PYTHONPATH=str(box.lib), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen([PYTHON, "-m", "hostd.record.main", "--socket", str(box.socket_path),
                             *argv[1:]], env=env, stdin=kw.pop("stdin_file", subprocess.PIPE),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                            start_new_session=True, **kw)
    STARTED.append(proc)
    if proc.stdin is not None:
        if stdin:
            proc.stdin.write(stdin.encode())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it again
    return proc


def token_of(answer: dict) -> str:
    argv = answer["argv"]
    return argv[argv.index("--token") + 1]


STARTED: list[subprocess.Popen] = []


@pytest.fixture
def box():
    b = Sandbox(RECORD_POLICY)
    b.start()
    yield b
    for proc in STARTED:  # a failed test leaves no recorder (or its command) behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    STARTED.clear()
    b.cleanup()


def closed(box, rid: str) -> dict:
    (ev,) = box.wait_for(lambda: [e for e in box.events("recording_closed")
                                  if e.get("JIT_RECORDING") == rid])
    return ev


def test_a_recorded_command_runs_as_the_runas_user_and_hostd_writes_it(box):
    g = activate(box, "rec")
    answer = check(box, ["/usr/bin/sh", "-c", "id -u; id -g; id -G"], runas="alice")
    info = answer["command_info"]
    assert "command=/usr/bin/jit-record" in info and "runas_uid=0" in info
    assert "intercept=true" in info and "use_pty=true" in info
    argv = answer["argv"]
    assert argv[argv.index("--uid") + 1] == "1001" and argv[argv.index("--gid") + 1] == "1001"
    # what runs is the program's real path (dash on Debian); argv[0] stays as typed
    assert argv[argv.index("--command") + 1] == os.path.realpath("/usr/bin/sh")
    assert argv[argv.index("--") + 1:] == ["/usr/bin/sh", "-c", "id -u; id -g; id -G"]
    proc = recorder(box, answer)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == b"1001\n1001\n1001 2000\n"  # alice, her group, developers (sandbox)
    (started,) = box.events("recording_started")
    rid = started["JIT_RECORDING"]
    assert len(rid) == 16 and int(rid, 16) >= 0
    assert (started["JIT_USER"], started["JIT_RUNAS"], started["JIT_GRANT_ID"]) == (
        "alice", "alice", g["id"])
    ev = closed(box, rid)
    assert ev["JIT_DECISION"] == "exit 0" and len(ev["JIT_RECORDING_SHA256"]) == 64
    directory = box.root / "var/log/jit/sessions"
    path = directory / f"{rid}.cast"
    adm = grp.getgrnam("adm").gr_gid  # group adm reads recordings (jit(1), issue 20)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_uid == 0
    assert path.stat().st_gid == adm
    assert stat.S_IMODE(directory.stat().st_mode) == 0o2750 and directory.stat().st_gid == adm
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    assert head["version"] == 2 and head["jit"]["user"] == "alice"
    assert head["jit"]["command"] == f"{os.path.realpath('/usr/bin/sh')} -c id -u; id -g; id -G"
    assert head["jit"]["grant_id"] == g["id"]
    shown = "".join(e[2] for e in map(json.loads, lines[1:]) if isinstance(e, list)
                    and e[1] == "o")
    assert shown.replace("\r", "") == "1001\n1001\n1001 2000\n"
    # the mask helper's CLI reads what hostd wrote, and the digest hostd logged
    assert box.jit("verify-recording", rid).returncode == 0
    rc, listed = box.jit_json("sessions")
    (row,) = [r for r in listed["sessions"] if r["id"] == rid]
    assert rc == 0 and (row["user"], row["runas"], row["grant_id"]) == ("alice", "alice", g["id"])
    assert row["started"] == head["jit"]["started"] and row["ended"]


def test_output_is_masked_on_screen_and_in_the_file_input_recorded_masked(box):
    activate(box, "rec")
    answer = check(box, ["/usr/bin/sh", "-c", "read x; echo got $x; "
                         "echo key AKIAABCDEFGHIJKLMNOP TICKET-123456 >&2; exit 7"])
    proc = recorder(box, answer, stdin="TICKET-654321\n")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 7, err
    assert b"got " in out and b"654321" not in out
    assert b"AKIAABCDEFGHIJKLMNOP" not in err and b"TICKET-123456" not in err
    assert b"key " in err
    rid = box.events("recording_started")[0]["JIT_RECORDING"]
    assert closed(box, rid)["JIT_DECISION"] == "exit 7"
    text = (box.root / f"var/log/jit/sessions/{rid}.cast").read_text()
    assert "got " in text and "key " in text
    for secret in ("AKIAABCDEFGHIJKLMNOP", "TICKET-123456", "654321"):
        assert secret not in text
    kinds = {json.loads(line)[1] for line in text.splitlines()[1:]
             if line.startswith("[")}
    assert "i" in kinds  # the role records input


def test_the_token_is_good_once_and_only_for_root(box):
    activate(box, "rec")
    answer = check(box, ["/usr/bin/id"], runas="alice")
    token = token_of(answer)
    unprivileged = subprocess.run(
        ["setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", PYTHON, "-c",
         "import sys, json; from hostd.client import Client; from hostd.protocol import "
         "request; print(json.dumps(Client(sys.argv[1]).call(request('record.open', "
         "token=sys.argv[2]))))", str(box.socket_path), token],
        env=box.env, capture_output=True, text=True, timeout=30)
    assert json.loads(unprivileged.stdout)["code"] == "permission_denied"
    proc = recorder(box, answer)
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    with pytest.raises(JitError) as again:
        Client(box.socket_path, trusted=True).stream("record.open", token=token)
    assert again.value.code == "not_found"
    with pytest.raises(JitError) as made_up:
        Client(box.socket_path, trusted=True).stream("record.open", token="x" * 32)
    assert made_up.value.code == "not_found"
    assert len(box.events("recording_started")) == 1


def test_a_grant_ending_hangs_its_recorded_session_up(box):
    g = activate(box, "rec")
    answer = check(box, ["/usr/bin/sleep", "600"], runas="alice")
    proc = recorder(box, answer)
    box.wait_for(lambda: box.events("recording_started"))
    assert box.jit("revoke", g["id"], user="alice").returncode == 0
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGHUP, err  # the signal passed on
    assert b"hostd ends this session: grant " in err and b"revoked" in err
    rid = box.events("recording_started")[0]["JIT_RECORDING"]
    assert closed(box, rid)["JIT_DECISION"] == f"signal {signal.SIGHUP}"
    (hung,) = box.events("session_terminated")
    assert hung["JIT_RECORDING"] == rid and hung["JIT_GRANT_ID"] == g["id"]


def test_hostd_gone_terminate_hangs_up_continue_goes_on(box):
    activate(box, "rec")
    strict = recorder(box, check(box, ["/usr/bin/sh", "-c", "sleep 600"]))
    activate(box, "lenient")
    lenient = recorder(box, check(box, ["/usr/bin/dash", "-c",
                                        "sleep 2; echo still here AKIAABCDEFGHIJKLMNOP"]))
    box.wait_for(lambda: len(box.events("recording_started")) == 2)
    box.kill9()
    out, err = strict.communicate(timeout=30)
    assert strict.returncode == -signal.SIGHUP, err  # the signal passed on
    assert b"ending the session (record_failure = terminate)" in err
    out, err = lenient.communicate(timeout=30)
    assert lenient.returncode == 0, err
    assert b"no longer recorded and goes on (record_failure = continue)" in err
    assert b"still here " in out and b"AKIA" not in out


def test_without_hostd_the_role_decides_whether_the_command_runs(box):
    activate(box, "rec")
    strict = check(box, ["/usr/bin/sh", "-c", "echo ran"])
    activate(box, "lenient")
    lenient = check(box, ["/usr/bin/dash", "-c", "echo ran"])
    box.stop()
    proc = recorder(box, strict)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == b"" and b"does not run" in err
    proc = recorder(box, lenient)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out == b"ran\n" and b"runs unrecorded" in err


def test_interactive_records_only_with_a_tty_and_never_a_program_of_a_session(box):
    activate(box, "lenient")
    assert "command=/usr/bin/dash" in check(box, ["/usr/bin/dash", "-c", "x"], tty="")[
        "command_info"]
    assert "command=/usr/bin/jit-record" in check(box, ["/usr/bin/dash", "-c", "x"])[
        "command_info"]
    with Client(box.socket_path, trusted=True) as client:
        inner = client.call(request("sudo.check", mode="run", intercepted=True,
                                    **vectors(["/usr/bin/dash", "-c", "x"])))
    assert "command=/usr/bin/dash" in inner["command_info"], inner


def test_a_malformed_frame_ends_the_recording_with_a_named_error(box):
    activate(box, "rec")
    token = token_of(check(box, ["/usr/bin/id"], runas="alice"))
    stream = Client(box.socket_path, trusted=True).stream("record.open", token=token)
    rid = stream.opened["id"]
    stream.send({"t": 0.1, "o": "aGVsbG8="})
    stream.send({"t": 0.2, "o": "not base64!"})
    answer = stream.recv(timeout=10)
    assert answer["code"] == "bad_request" and "base64" in answer["message"]
    (failed,) = box.wait_for(lambda: box.events("recording_failed"))
    assert failed["JIT_RECORDING"] == rid and len(failed["JIT_RECORDING_SHA256"]) == 64
    assert "hello" in (box.root / f"var/log/jit/sessions/{rid}.cast").read_text()


def test_retention_removes_the_oldest_beyond_the_size_and_logs_each(box):
    activate(box, "rec")
    for _ in range(3):
        proc = recorder(box, check(box, ["/usr/bin/sh", "-c", "echo recorded"]))
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    box.wait_for(lambda: len(box.events("recording_closed")) == 3)
    ids = [e["JIT_RECORDING"] for e in box.events("recording_started")]
    directory = box.root / "var/log/jit/sessions"
    old = time.time() - 3 * 86400
    os.utime(directory / f"{ids[0]}.cast", (old, old))
    policy = box.root / "etc/jit/jit.toml"
    policy.write_text(policy.read_text() + '\n[recording]\nmax_age = "1d"\n')
    box.proc.send_signal(signal.SIGHUP)  # reload; the sweep runs every second
    removed = box.wait_for(lambda: box.events("recording_removed"))
    assert [e["JIT_RECORDING"] for e in removed] == [ids[0]]
    assert "older than max_age" in removed[0]["JIT_REASON"]
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{i}.cast" for i in ids[1:])


def test_recorded_input_the_command_never_reads_does_not_stall_it(box, tmp_path):
    activate(box, "rec")
    answer = check(box, ["/usr/bin/sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; exit 3"])
    typed = tmp_path / "typed"
    typed.write_bytes(b"y" * 2_000_000)
    with open(typed, "rb") as stdin:
        proc = recorder(box, answer, stdin_file=stdin)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert out == b"x" * 3_000_000
    rid = box.events("recording_started")[0]["JIT_RECORDING"]
    closed(box, rid)
    lines = (box.root / f"var/log/jit/sessions/{rid}.cast").read_text().splitlines()[1:]
    events = [json.loads(line) for line in lines]
    assert "".join(e[2] for e in events if e[1] == "o") == "x" * 3_000_000  # all, in order
    typed_in = "".join(e[2] for e in events if e[1] == "i")  # what the recorder took in
    assert set(typed_in) == {"y"} and 65536 <= len(typed_in) < 2_000_000  # (bounded)
    times = [e[0] for e in events]
    assert times == sorted(times)


def test_an_approved_recorded_command_is_not_asked_for_again_when_the_recorder_runs_it(box):
    activate(box, "guarded")
    argv = ["/usr/bin/touch", "/tmp/approved-x"]
    with Client(box.socket_path, trusted=True, timeout=30) as client:
        paused = client.call(request("sudo.check", mode="run", **vectors(argv)))
        assert paused["decision"] == "pending", paused
        assert box.jit("approve", paused["request_id"], user="bob").returncode == 0
        allowed = client.call(request("sudo.wait", id=paused["request_id"]))
    assert "command=/usr/bin/jit-record" in allowed["command_info"], allowed

    def intercepted(args: list[str]) -> dict:  # what sudo asks when the recorder execs
        with Client(box.socket_path, trusted=True) as client:
            return client.call(request("sudo.check", mode="run", intercepted=True,
                                       **vectors(args)))

    first = intercepted(argv)
    assert first["decision"] == "allow", first
    assert "command=/usr/bin/touch" in first["command_info"]  # never wrapped twice
    assert intercepted(argv)["decision"] == "pending"  # once: the guardrail holds again
    assert intercepted(["/usr/bin/touch", "/tmp/approved-y"])["decision"] == "pending"


def test_hostd_stopping_closes_open_recordings_so_they_still_verify(box):
    activate(box, "rec")
    proc = recorder(box, check(box, ["/usr/bin/sh", "-c", "echo before; sleep 600"]))
    rid = box.wait_for(lambda: box.events("recording_started"))[0]["JIT_RECORDING"]
    box.wait_for(lambda: "before" in (box.root / f"var/log/jit/sessions/{rid}.cast")
                 .read_text())
    box.stop()  # SIGTERM: a clean stop
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGHUP and b"record_failure = terminate" in err
    (failed,) = box.events("recording_failed")
    assert failed["JIT_RECORDING"] == rid and failed["JIT_REASON"] == "hostd stopped"
    assert box.jit("verify-recording", rid).returncode == 0


def test_a_sessions_directory_hostd_does_not_own_fails_closed(box):
    activate(box, "rec")
    directory = box.root / "var/log/jit/sessions"
    os.rmdir(directory)
    os.symlink("/tmp", directory)  # someone swapped it for a link to a shared place
    proc = recorder(box, check(box, ["/usr/bin/sh", "-c", "echo ran"]))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and out == b"" and b"does not run" in err
    (failed,) = box.events("recording_failed")
    assert failed["JIT_USER"] == "alice" and "could not start" in failed["MESSAGE"]
    assert not box.events("recording_started")
