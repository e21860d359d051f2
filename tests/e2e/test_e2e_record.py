"""Recorded sudo on the installed package: real sudo 1.9.13 and jit_sudo.so, the
recorder wrapped around the command by hostd, the recording written by hostd under
/var/log/jit/sessions, the digest in the journal, read back with the `jit` CLI.

alice's terminal is a tmux pane inside the container (a real pty; tmux is in the
rootfs), read back with `capture-pane`. One host for the module: it switches sudo's
policy for good."""

from __future__ import annotations

import json
import re
import time

import pytest
from jithost import CORP_KEY, Host, configure, events, issue, wait_for

SECRET = "AKIAIOSFODNN7EXAMPLE"  # a built-in rule (AWS access key id)
TICKET = "TICKET-424242"  # the policy's own rule

POLICY = """\
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
authenticate = false
record = "always"
record_input = true
sudo = [ { runas = "root", commands = ["ALL"] } ]

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /tmp/approved-'

[masking]
rules = [ { name = "ticket", regex = 'TICKET-[0-9]{6}' } ]
"""

ALICE_ENV = {"HOME": "/home/alice", "TERM": "xterm-256color", "USER": "alice"}


class Pane:
    """alice's terminal: a tmux server of hers in the container, one 100x30 pane."""

    def __init__(self, box) -> None:
        self.box = box
        self.tmux("new-session", "-d", "-x", "100", "-y", "30",
                  "env PS1='alice$ ' bash --norc --noprofile")

    def tmux(self, *args: str) -> str:
        return self.box.run(["tmux", "-L", "rec", *args], user="alice", env=ALICE_ENV,
                            timeout=30).stdout

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "0", "-l", text)
        self.tmux("send-keys", "-t", "0", "Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "0", "-S", "-100")

    def wait(self, pattern: str, timeout: float = 30) -> str:
        try:
            return wait_for(f"{pattern!r} on alice's terminal", lambda: self.screen()
                            if re.search(pattern, self.screen()) else None, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def close(self) -> None:
        self.box.run(["tmux", "-L", "rec", "kill-server"], user="alice", env=ALICE_ENV,
                     check=False)


@pytest.fixture(scope="module")
def box(own_host: Host):
    b = own_host.box
    if not b.path(CORP_KEY).exists():
        configure(b)
    configure(b, POLICY)
    b.run(["jit", "setup", "sudo", "--enable"])
    token = issue(b, "alice", "ops", "30m")
    out = json.loads(b.run(["jit", "activate", token, "--json"], user="alice").stdout)
    assert out["ok"], out
    b.grant = out["grant"]
    return b


def closed_recordings(box) -> list[dict]:
    return events(box, "recording_closed")


def sessions(box) -> list[dict]:
    out = json.loads(box.run(["jit", "sessions", "--json"]).stdout)
    assert out["ok"], out
    return out["sessions"]


def test_sudo_i_is_recorded_masked_listed_replayed_and_verified(box) -> None:
    before = len(closed_recordings(box))
    pane = Pane(box)
    try:
        pane.type("sudo -i")
        pane.wait(r"this session is recorded \([0-9a-f]{16}\)")
        pane.type(f"echo key {SECRET} ticket {TICKET}; id -un")
        shown = pane.wait(r"key \*+ ticket \*+")
        assert SECRET not in shown.split("echo key")[-1].split("\n", 1)[1]
        assert "\nroot" in shown
        pane.type("exit")
        pane.wait(r"# exit\s*\n(exit\s*\n)?alice\$")  # alice's own shell again
        pane.type("echo back-$((40+2))")
        pane.wait(r"\nback-42")
    finally:
        pane.close()
    ev = wait_for("recording_closed", lambda: closed_recordings(box)[before:] or None,
                  timeout=30)[0]
    rid, digest = ev["JIT_RECORDING"], ev["JIT_RECORDING_SHA256"]
    assert re.fullmatch(r"[0-9a-f]{16}", rid) and re.fullmatch(r"[0-9a-f]{64}", digest)
    assert (ev["JIT_USER"], ev["JIT_RUNAS"], ev["JIT_GRANT_ID"]) == (
        "alice", "root", box.grant["id"])
    assert ev["JIT_DECISION"] == "exit 0"
    path = f"/var/log/jit/sessions/{rid}.cast"
    mode = box.run(["stat", "-c", "%a %U %G", path]).stdout.split()
    assert mode == ["640", "root", "adm"]  # group adm reads recordings, as jit(1) says
    text = box.path(path).read_text()
    assert SECRET not in text and TICKET not in text and "key *" in text

    listed = [s for s in sessions(box) if s.get("id") == rid]
    assert listed and listed[0].get("user") == "alice"
    replay = box.run(["jit", "replay", rid, "--speed", "100"], timeout=60)
    assert replay.returncode == 0 and "key *" in replay.stdout
    assert SECRET not in replay.stdout
    assert box.run(["jit", "verify-recording", rid], check=False).returncode == 0

    # an edit by whoever could write the file is caught: the chain, or the journal
    tampered = text.replace("key *", "key X", 1)
    box.write(path, tampered, mode=0o600)
    caught = box.run(["jit", "verify-recording", rid], check=False)
    assert caught.returncode != 0, caught.stdout


def test_a_recording_is_not_alices_to_read(box) -> None:
    rid = closed_recordings(box)[-1]["JIT_RECORDING"]
    r = box.run(["cat", f"/var/log/jit/sessions/{rid}.cast"], user="alice", check=False)
    assert r.returncode != 0 and "Permission denied" in r.stderr
    assert box.run(["jit", "sessions", "--json"], user="alice", check=False).returncode != 0


def test_piped_sudo_keeps_input_masked_output_and_the_exit_status(box) -> None:
    before = len(closed_recordings(box))
    r = box.run(f"printf 'typed {TICKET}\\n' | sudo /usr/bin/sh -c "
                f"'read line; echo \"got $line\"; echo \"err {SECRET}\" >&2; exit 4'",
                user="alice", check=False, env=ALICE_ENV)
    assert r.returncode == 4, r.stderr
    assert r.stdout.startswith("got typed ") and TICKET not in r.stdout
    assert r.stderr.startswith("err ") and SECRET not in r.stderr
    ev = wait_for("recording_closed", lambda: closed_recordings(box)[before:] or None,
                  timeout=30)[0]
    assert ev["JIT_DECISION"] == "exit 4"
    lines = [json.loads(line) for line in box.path(
        f"/var/log/jit/sessions/{ev['JIT_RECORDING']}.cast").read_text().splitlines()[1:]]
    inputs = "".join(e[2] for e in lines if e[1] == "i")
    assert inputs.startswith("typed ") and TICKET not in inputs  # input kept, masked


def test_scriptreplay_plays_an_exported_session(box) -> None:
    piped = [e for e in closed_recordings(box) if e.get("JIT_DECISION") == "exit 4"]
    rid = piped[-1]["JIT_RECORDING"]  # the piped session's (the sudo -i one was edited)
    box.run("rm -rf /tmp/export && mkdir /tmp/export")
    box.run(["jit", "replay", rid, "--export-script", "/tmp/export"])
    listing = box.run(["ls", "/tmp/export"]).stdout.split()
    timing = next(f for f in listing if "timing" in f)
    log = next(f for f in listing if f != timing)
    played = box.run(["scriptreplay", "--divisor", "1000", "-t", f"/tmp/export/{timing}",
                      f"/tmp/export/{log}"], timeout=60)
    assert "got typed *" in played.stdout and "err *" in played.stdout
    assert SECRET not in played.stdout and TICKET not in played.stdout


def test_an_approved_command_runs_once_under_the_recorder(box) -> None:
    before = len(closed_recordings(box))
    pane = Pane(box)
    try:
        pane.type("sudo touch /tmp/approved-1; echo status=$?")
        pane.wait(r"waiting for approval")
        pending = wait_for("the command approval", lambda: [
            r for r in json.loads(box.run(["jit", "requests", "--json"], user="bob").stdout)
            ["requests"] if r["kind"] == "command" and r["state"] == "pending"], timeout=20)
        box.run(["jit", "approve", pending[0]["id"]], user="bob")
        shown = pane.wait(r"status=\d")
        assert "status=0" in shown and "this session is recorded" in shown
    finally:
        pane.close()
    assert box.run(["test", "-e", "/tmp/approved-1"], check=False).returncode == 0
    ev = wait_for("recording_closed", lambda: closed_recordings(box)[before:] or None,
                  timeout=30)[0]
    assert ev["JIT_COMMAND"] == "/usr/bin/touch /tmp/approved-1"
    assert ev["JIT_DECISION"] == "exit 0"
    allowed = [e for e in events(box, "sudo_allowed")
               if e.get("JIT_COMMAND") == "/usr/bin/touch /tmp/approved-1"]
    # sudo's decision after the approval, then the recorder's exec of it, intercepted by
    # sudo and checked again (without a second approval)
    assert len(allowed) == 2 and len([e for e in events(box, "sudo_pending") if e.get(
        "JIT_COMMAND") == "/usr/bin/touch /tmp/approved-1"]) == 1


def test_a_revoked_grant_hangs_its_recorded_sudo_up(box) -> None:
    token = issue(box, "alice", "ops", "30m")
    grant = json.loads(box.run(["jit", "activate", token, "--json"], user="alice").stdout)
    proc = box.popen(["sudo", "/usr/bin/sleep", "600"], user="alice")
    wait_for("the recording to start", lambda: [
        e for e in events(box, "recording_started") if e.get("JIT_COMMAND") ==
        "/usr/bin/sleep 600"] or None, timeout=30)
    # both grants allow it; the first one listed is the module's: revoke that one last
    box.run(["jit", "revoke", box.grant["id"]], user="alice")
    box.run(["jit", "revoke", grant["grant"]["id"]], user="alice")
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is not None, "sudo sleep was not hung up"
    _, err = proc.communicate(timeout=10)
    assert "hostd ends this session" in err
    hung = events(box, "session_terminated")
    assert hung and hung[-1]["JIT_COMMAND"] == "/usr/bin/sleep 600"
