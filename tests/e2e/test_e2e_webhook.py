"""hostd off the network (issue 21 item 2) on the installed package: jit-hostd.service
denies every IP address and allows no AF_INET/AF_INET6 socket, yet a webhook set in
jit.toml still reaches an HTTP server in the container, posted by jit-webhook.service
(started by jit-webhook.path) from the spool hostd writes; a notice queued while the
sender cannot run is delivered later, across a hostd restart; host selectors by address
(netlink) still work under the restriction."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from jithost import CORP_KEY, POLICY_TOML, Host, configure, events, journal, wait_for

PORT = 8765
HOOK_NAME = "hooks.jit.test"
HOOK_OUT = "/root/hook.jsonl"
HOOK_SERVER = r"""
import http.server, sys
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        with open(out, "ab") as fh:
            fh.write(data + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""
HOSTILE = "urgent\n\x1b]0;APPROVED\x07 <!channel> *now*"


def _show(box, unit: str, *props: str) -> dict[str, str]:
    out = box.run(["systemctl", "show", unit, *(f"-p{p}" for p in props)]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_hostd_unit_allows_no_ip(host: Host) -> None:
    """What `systemctl show` says, and what the running hostd has: no IP socket, and
    its own /proc (ProtectProc=invisible)."""
    box = host.box
    box.run(["jit", "status"], check=False)  # socket-activate hostd if it is not running
    shown = _show(box, "jit-hostd.service", "IPAddressDeny", "RestrictAddressFamilies",
                  "PrivateMounts", "MainPID")
    assert set(shown["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_NETLINK"}, shown
    assert set(shown["IPAddressDeny"].split()) == {"0.0.0.0/0", "::/0"}, shown
    assert shown["PrivateMounts"] == "yes"
    pid = shown["MainPID"]
    assert pid != "0"
    inet = box.run(["ss", "-tuwanpH"]).stdout
    assert f"pid={pid}," not in inet, inet
    mounts = box.run(["cat", f"/proc/{pid}/mountinfo"]).stdout.splitlines()
    (proc,) = [m for m in mounts if m.split()[4] == "/proc"]
    assert "hidepid=invisible" in proc, proc  # ProtectProc=: the residue tests still pass
    sender = _show(box, "jit-webhook.service", "RestrictAddressFamilies", "CapabilityBoundingSet")
    assert "AF_INET" in sender["RestrictAddressFamilies"] and sender["CapabilityBoundingSet"] == ""
    path = box.run(["systemctl", "is-enabled", "jit-webhook.path"], check=False).stdout
    assert path.strip() == "enabled"
    assert box.run(["systemctl", "is-active", "jit-webhook.path"]).stdout.strip() == "active"


@pytest.fixture
def webhook(host: Host) -> Iterator[None]:
    """An HTTP server on 127.0.0.1:PORT in the container (writing each body it gets to
    HOOK_OUT) and jit.toml's [notify] webhook naming it; afterwards neither."""
    box = host.box
    box.write("/root/hook.py", HOOK_SERVER)
    box.run(["rm", "-f", HOOK_OUT])
    box.run(["systemd-run", "--unit=jit-e2e-hook", "--collect", "python3", "/root/hook.py",
             str(PORT), HOOK_OUT])
    wait_for("the test's HTTP server", lambda: f"127.0.0.1:{PORT}" in box.run(
        ["ss", "-tlnH"]).stdout, timeout=15)
    # by name: the sender resolves it (nss, /etc/hosts) inside its sandbox
    hosts = box.path("/etc/hosts")
    before = hosts.read_text() if hosts.exists() else None
    box.write("/etc/hosts", (before or "") + f"127.0.0.1 {HOOK_NAME}\n")
    configure(box, POLICY_TOML + f'\n[notify]\nwebhook = "http://{HOOK_NAME}:{PORT}/hook"\n')
    try:
        yield
    finally:
        box.run(["systemctl", "stop", "jit-e2e-hook"], check=False)
        configure(box)
        if before is None:
            box.run(["rm", "-f", "/etc/hosts"])
        else:
            box.write("/etc/hosts", before)


def _posted(box, rid: str) -> list[dict]:
    hook = box.path(HOOK_OUT)
    if not hook.exists():
        return []
    bodies = [json.loads(line) for line in hook.read_text().splitlines() if line]
    return [b for b in bodies if b["jitaccess"]["request_id"] == rid]


def _settled(box) -> None:
    """No notice waiting and no sender running (the previous test's deny sent)."""
    wait_for("an empty spool and an idle sender", lambda: box.run(
        ["ls", "-A", "/var/lib/jit/webhook/queue"]).stdout == "" and box.run(
        ["systemctl", "is-active", "jit-webhook.service"], check=False).stdout.strip()
        in ("inactive", "failed"), timeout=60)


def _queued(box) -> list[dict]:
    queue = box.path("/var/lib/jit/webhook/queue")
    return [json.loads(p.read_text()) for p in sorted(queue.glob("*.json"))]


def _request(box, reason: str) -> str:
    out = box.run(["jit", "request", "docker", "--for", "5m", "--reason", reason, "--json"],
                  user="alice").stdout
    return json.loads(out)["request"]["id"]


def test_webhook_reaches_a_local_server_through_the_sender(host: Host, webhook) -> None:
    box = host.box
    rid = ""
    try:
        rid = _request(box, HOSTILE)
        (body,) = wait_for("the webhook's POST", lambda: _posted(box, rid), timeout=30)
        text = body["text"]
        assert "alice requests role docker" in text and rid in text
        assert "\x1b" not in text and "\n" not in text and "&lt;!channel&gt;" in text
        assert body["mrkdwn"] is False
        assert body["jitaccess"]["reason"].startswith("urgent\\n\\x1b]0;APPROVED")
        ran = wait_for("jit-webhook.service's run in the journal", lambda: [
            e for e in journal(box, "-u", "jit-webhook.service")
            if "1 sent, 0 failed" in e.get("MESSAGE", "")], timeout=15)
        assert ran
        assert not [e for e in events(box, "notify_failed")
                    if e.get("JIT_REQUEST_ID") == rid]
        assert box.run(["ls", "-A", "/var/lib/jit/webhook/queue"]).stdout == ""
        mode = box.run(["stat", "-c", "%a %U", "/var/lib/jit/webhook",
                        "/var/lib/jit/webhook/queue"]).stdout.split("\n")
        assert mode[:2] == ["700 root", "700 root"], mode
    finally:
        if rid:
            box.run(["jit", "deny", rid, "--reason", "e2e cleanup"], user="bob", check=False)
            _settled(box)


def test_a_notice_queued_while_the_sender_is_off_is_sent_after_a_hostd_restart(
        host: Host, webhook) -> None:
    box = host.box
    rid = ""
    _settled(box)
    box.run(["systemctl", "stop", "jit-webhook.path"])
    try:
        rid = _request(box, "queued while the sender is off")
        (queued,) = _queued(box)
        assert queued["about"]["request_id"] == rid, queued
        assert not _posted(box, rid)
        box.run(["systemctl", "restart", "jit-hostd.service"])
        box.run(["systemctl", "start", "jit-webhook.path"])
        (body,) = wait_for("the queued POST", lambda: _posted(box, rid), timeout=30)
        assert body["jitaccess"]["event"] == "created"
    finally:
        box.run(["systemctl", "start", "jit-webhook.path"], check=False)
        if rid:
            box.run(["jit", "deny", rid, "--reason", "e2e cleanup"], user="bob", check=False)


def test_an_address_selector_still_matches_under_the_restriction(host: Host) -> None:
    """`hosts = ["127.0.0.1"]` is matched against the addresses hostd reads through
    netlink (pyroute2): AF_NETLINK stays allowed."""
    box = host.box
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user", "alice",
                     "--role", "docker", "--for", "5m", "--hosts", "127.0.0.1"]).stdout.strip()
    out = json.loads(box.run(["jit", "activate", token, "--json"], user="alice").stdout)
    assert out["ok"], out
    grant = out["grant"]["id"]
    box.run(["jit", "revoke", grant, "--reason", "e2e done"], check=False)
    other = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user", "alice",
                     "--role", "docker", "--for", "5m", "--hosts", "192.0.2.77"]).stdout.strip()
    refused = box.run(["jit", "activate", other, "--json"], user="alice", check=False)
    assert refused.returncode != 0 and json.loads(refused.stdout)["code"] == "wrong_host", \
        refused.stdout
