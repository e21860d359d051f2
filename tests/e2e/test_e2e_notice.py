"""An approver logged in on a terminal sees a request notice, written by the installed,
sandboxed hostd (like write(1)), with the requester's text made inert."""

from __future__ import annotations

import json
import re

from jithost import Host, wait_for

UTMP_APPEND = r"""
import os, struct, sys, time
line = sys.argv[1]
rec = struct.pack("<hxxi32s4s32s256shhiii4i20s", 7, os.getpid(), line.encode(),
                  line[-4:].encode(), b"bob", b"", 0, 0, 0, int(time.time()), 0,
                  0, 0, 0, 0, b"")
with open("/run/utmp", "ab") as fh:
    fh.write(rec)
"""

HOSTILE = "urgent\x1b]0;APPROVED\x07\x1b[2J\nfake: approved by root"


def test_request_notice_reaches_approver_terminal_inert(host: Host) -> None:
    box = host.box
    # bob's terminal: a real pty made by script(1), recording what is shown on it
    box.run(["runuser", "-u", "bob", "--", "sh", "-c",
             "setsid script -q -f -c 'tty; sleep 60' /home/bob/typescript"
             " </dev/null >/dev/null 2>&1 &"])
    shown = box.path("/home/bob/typescript")
    tty = wait_for("bob's pty", lambda: re.search(r"/dev/(pts/\d+)", shown.read_text()
                                                 if shown.exists() else ""), timeout=15)
    box.run(["python3", "-c", UTMP_APPEND, tty.group(1)])
    try:
        out = json.loads(box.run(["jit", "request", "docker", "--for", "5m", "--reason",
                                  HOSTILE, "--json"], user="alice").stdout)
        rid = out["request"]["id"]
        text = wait_for("the notice on bob's terminal",
                        lambda: rid in shown.read_text(errors="replace") and
                        shown.read_text(errors="replace"), timeout=15)
        assert f"jit approve {rid}" in text
        assert "\x1b]0;APPROVED" not in text and "\x1b[2J" not in text
        assert "\\x1b]0;APPROVED\\x07" in text
        notice = text[text.index("alice requests"):]
        assert "\nfake: approved by root" not in notice, "the reason forged a line"
    finally:
        box.run(["pkill", "-u", "bob", "script"], check=False)
        box.run(["sh", "-c", "jit requests --json >/dev/null"], user="bob", check=False)
        if "rid" in locals():
            box.run(["jit", "deny", rid, "--reason", "e2e cleanup"], user="bob", check=False)
