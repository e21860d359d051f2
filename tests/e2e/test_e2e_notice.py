"""An approver logged in on a terminal sees a request notice, written by the installed,
sandboxed hostd (like write(1)), with the requester's text made inert."""

from __future__ import annotations

import json

from jithost import Host, terminal, wait_for

HOSTILE = "urgent\x1b]0;APPROVED\x07\x1b[2J\nfake: approved by root"


def test_request_notice_reaches_approver_terminal_inert(host: Host) -> None:
    box = host.box
    shown = terminal(box, "bob")  # a real pty, recording what is shown on it
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
