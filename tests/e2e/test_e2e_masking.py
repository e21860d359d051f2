"""Masking on a booted Debian 12 with a real pty (issue 18): what the terminal shows
and what the recording and the logs keep. alice's terminal is a tmux pane (tmux is in
the rootfs); the recorder runs under real sudo 1.9.13 and jit_sudo.so.

Probes: grep and ls colours around secrets (and jq's: jq is not in the rootfs, so its
`-C` output is printed byte for byte with printf), a key printed one character per
200 ms, fields (JSON, env, Cookie), `mysql -pSECRET` as the sudo command line in
`journalctl -t jit-hostd -o json`, the cast header, `jit sessions` and the HTML
report; and no NUL before a session's first output."""

from __future__ import annotations

import json
import re

import pytest
from jithost import CORP_KEY, Host, configure, events, issue, wait_for
from test_e2e_record import ALICE_ENV, Pane

KEY = "AKIAIOSFODNN7EXAMPLE"
PW = "S3cretPW42"
POLICY = """\
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
authenticate = false
record = "always"
sudo = [ { runas = "root", commands = ["ALL"] } ]

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]

[masking]
rules = [ { name = "ticket", regex = 'ACC-SECRET-[0-9]{6}' } ]
fields = ["pin"]
"""
SGR = re.compile(r"\x1b\[[0-9;]*[mK]")


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
    b.write("/root/creds", f"aws_access_key_id {KEY}\nticket ACC-SECRET-424242\n")
    b.write("/root/slow.py", "import sys, time\n"
            f"for c in 'slow {KEY} done\\n':\n"
            "    sys.stdout.write(c); sys.stdout.flush(); time.sleep(0.2)\n")
    return b


def closed(box) -> list[dict]:
    return events(box, "recording_closed")


def cast_lines(box, rid: str) -> list:
    text = box.path(f"/var/log/jit/sessions/{rid}.cast").read_text()
    return [json.loads(line) for line in text.splitlines()]


def recorded_session(box, commands: list[tuple[str, str]]) -> tuple[str, str]:
    """Run `sudo -i` in alice's pane, each command waiting for its regex on the screen;
    (the recording's id, the screen before exit)."""
    before = len(closed(box))
    pane = Pane(box)
    try:
        pane.type("sudo -i")
        pane.wait(r"this session is recorded \([0-9a-f]{16}\)")
        for command, shown in commands:
            pane.type(command)
            screen = pane.wait(shown)
        pane.type("exit")
        pane.wait(r"exit\s*\n(exit\s*\n)?alice\$")
    finally:
        pane.close()
    ev = wait_for("recording_closed", lambda: closed(box)[before:] or None, timeout=30)[0]
    return ev["JIT_RECORDING"], screen


def test_colours_slow_output_and_fields_on_screen_and_in_the_cast(box) -> None:
    jq_c = (r"printf '{\n  \033[34;1m\"password\"\033[0m: \033[0;32m\"hun\\\"ter2\"\033[0m,"
            r"\n  \033[34;1m\"pin\"\033[0m: \033[0;32m\"4242\"\033[0m\n}\n'")
    rid, screen = recorded_session(box, [
        ("grep --color=always -e AKIA -e SECRET /root/creds", r"ticket \*+"),
        ("ls --color=always -d /root/creds /etc", r"/root/creds"),
        (jq_c, r"\"pin\": \"\*\*\*\*\""),
        ("python3 /root/slow.py", r"slow AKIA\*{16} done"),
        ("printf '%s\\n' PGPASSWORD=hunter2 'Cookie: sid=31d4d96e407aad42'", r"Cookie: \*+"),
    ])
    assert KEY not in screen and "IOSFODNN" not in screen and "424242" not in screen
    assert "hunter2" not in screen and "31d4d96e" not in screen
    events_ = cast_lines(box, rid)
    output = "".join(e[2] for e in events_[1:] if e[1] == "o")
    visible = SGR.sub("", output)
    for secret in ("IOSFODNN7EXAMPLE", "424242", "hun\\\"ter2", "hunter2", "4242\"",
                   "31d4d96e407aad42"):
        assert secret not in visible, secret
    assert "\x1b[01;31m\x1b[K****\x1b[m\x1b[K****************" in output  # colour kept
    assert "\x1b[01;31m\x1b[KSECRET\x1b[m\x1b[K" not in output
    assert "****\x1b[01;31m\x1b[K******\x1b[m\x1b[K*******" in output
    first = next(e[2] for e in events_[1:] if e[1] == "o")
    assert not first.startswith("\x00"), repr(first[:20])  # no stray NUL
    assert "\x00" not in output


def test_a_password_on_the_sudo_command_line_is_masked_in_every_log(box) -> None:
    before = len(closed(box))
    r = box.run(f"sudo /usr/bin/env mysql -u root -p{PW} shop", user="alice",
                check=False, env=ALICE_ENV)
    assert r.returncode != 0  # no mysql in the rootfs: env says so, the line is logged
    ev = wait_for("recording_closed", lambda: closed(box)[before:] or None, timeout=30)[0]
    journal = box.run(["journalctl", "-t", "jit-hostd", "-o", "json", "--no-pager"]).stdout
    assert PW not in journal
    allowed = [json.loads(line) for line in journal.splitlines()
               if '"sudo_allowed"' in line and "mysql" in line]
    assert allowed and allowed[-1]["JIT_COMMAND"].endswith("-p********** shop")
    assert allowed[-1]["JIT_MASKED"] == "command_password=1"
    header = cast_lines(box, ev["JIT_RECORDING"])[0]
    assert PW not in json.dumps(header) and "-p**********" in header["jit"]["command"]
    assert "-p**********" in header["title"]
    listed = json.loads(box.run(["jit", "sessions", "--json"]).stdout)["sessions"]
    assert PW not in json.dumps(listed)
    box.run(["jit", "audit", "--html", "/root/report.html"])
    html = box.path("/root/report.html").read_text()
    assert PW not in html and "-p**********" in html
    for fmt in ("json", "ocsf", "ecs"):
        assert PW not in box.run(["jit", "audit", "--format", fmt]).stdout


def test_jit_mask_test_uses_the_hosts_rules(box) -> None:
    r = box.run("printf 'pin: 1234 ACC-SECRET-123456\\n' | jit mask test --explain",
                user="alice", check=False)
    assert r.returncode == 1 and r.stdout == "pin: **** *****************\n"
    assert "jit: ticket: line 1, columns 11-27" in r.stderr
    r = box.run("echo nothing here | jit mask test", user="alice", check=False)
    assert r.returncode == 0


PTY_PROBE = r"""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvpe("sudo", ["sudo", "-i"], dict(os.environ, TERM="xterm-256color"))
out, sent, deadline = b"", False, time.monotonic() + 30
while time.monotonic() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    if not sent and b"# " in out:
        os.write(fd, b"echo raw-$((40+2)) AKIAIOSFODNN7EXAMPLE; exit\r")
        sent = True
os.waitpid(pid, 0)
sys.stdout.write(out.hex())
"""


def test_what_a_raw_terminal_receives_has_no_nul_and_no_secret(box) -> None:
    """The bytes alice's terminal gets (a pty of a Python script, not tmux, which would
    hide a NUL): the session's output starts with the shell's, no NUL anywhere."""
    box.write("/home/alice/ptyprobe.py", PTY_PROBE, mode=0o644)
    r = box.run(["python3", "/home/alice/ptyprobe.py"], user="alice", env=ALICE_ENV,
                timeout=60)
    raw = bytes.fromhex(r.stdout)
    assert b"raw-42 ********************" in raw, raw[-400:]
    assert b"\x00" not in raw, raw[:200]
    assert b"IOSFODNN7EXAMPLE" not in raw.split(b"raw-42", 1)[1]
