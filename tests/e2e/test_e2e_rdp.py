"""RDP is an entry point too: xrdp in a booted Debian 12 (its session manager runs the
PAM stack, /etc/pam.d/xrdp-sesman includes common-account and common-session) and a
real RDP client, FreeRDP's xfreerdp under Xvfb, logging in as a gated user: refused
without a login grant, admitted with one (an Xorg session registered with logind), and
the RDP session's processes ended at expiry. One container of its own (a rootfs with
xrdp, xorgxrdp, FreeRDP and Xvfb, cached like the others)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import PACKAGES, Container
from jithost import POLICY_TOML, add_users, configure, events, install_deb, issue, wait_for

RDP_PACKAGES = (*PACKAGES, "xrdp", "xorgxrdp", "freerdp2-x11", "xvfb", "xauth", "xterm",
                "x11-xserver-utils")
POLICY = POLICY_TOML + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true

[login]
require_grant = ["alice"]
"""


@pytest.fixture(scope="module")
def box(deb: Path) -> Iterator[Container]:
    b = Container.create("jit-e2e-rdp", packages=RDP_PACKAGES)
    try:
        b.boot()
        add_users(b)
        install_deb(b, deb)
        configure(b, POLICY)
        b.run(["chpasswd"], input="alice:s3cret-pw\n")
        b.run(["systemd-run", "--unit", "jit-e2e-xvfb", "Xvfb", ":5", "-screen", "0",
               "1024x768x24"])
        wait_for("xrdp listening", lambda: ":3389" in b.run(["ss", "-ltn"]).stdout,
                 timeout=30)
        yield b
    finally:
        b.close()


def connect(box: Container, unit: str) -> None:
    """xfreerdp as alice, with her password (xrdp logs in with it through sesman)."""
    box.run(["systemd-run", "--unit", unit, "--setenv=DISPLAY=:5", "--setenv=HOME=/root",
             "xfreerdp", "/v:127.0.0.1", "/u:alice", "/p:s3cret-pw", "/cert:ignore"])


def alice_processes(box: Container) -> str:
    return box.run(["ps", "-o", "pid=,cmd=", "-u", "alice"], check=False).stdout


def test_a_gated_user_without_a_login_grant_is_refused(box):
    connect(box, "jit-e2e-rdp-refused")
    try:
        refused = wait_for("the refusal", lambda: [
            e for e in events(box, "login_refused") if e.get("JIT_USER") == "alice"],
            timeout=60)
        assert "(xrdp-sesman)" in refused[0]["MESSAGE"]
        assert "Xorg" not in alice_processes(box)
    finally:
        box.run(["systemctl", "stop", "jit-e2e-rdp-refused"], check=False)


def test_a_login_grant_admits_and_expiry_ends_the_rdp_session(box):
    out = box.run(["jit", "activate", "--json", issue(box, "alice", "console", "60s")])
    grant_id = json.loads(out.stdout)["grant"]["id"]
    connect(box, "jit-e2e-rdp-admitted")
    try:
        session = wait_for("the registered RDP session", lambda: next(
            (s for s in json.loads(box.run(["jit", "grants", "--sessions", "--all",
                                            "--json"]).stdout)["sessions"]
             if s["user"] == "alice" and s["service"] == "xrdp-sesman"), None), timeout=60)
        assert session["grants"] == [grant_id] and session["id"]
        assert re.match(r":\d+$", session["tty"])  # the X display xrdp-sesman started
        wait_for("alice's Xorg", lambda: "Xorg" in alice_processes(box), timeout=60)
        wait_for("the end of the grant", lambda: [
            e for e in events(box, "grant_expired", grant_id)], timeout=120)
        wait_for("the RDP session's processes gone",
                 lambda: alice_processes(box).strip() == "", timeout=60)
        assert [e for e in events(box, "session_terminated", grant_id)
                if e.get("JIT_SESSION_ID") == session["id"]]
    finally:
        box.run(["systemctl", "stop", "jit-e2e-rdp-admitted"], check=False)
