"""The approver webhook with hostd off the network: a sandbox hostd queues each notice
in its spool (DIR/var/lib/jit/webhook/queue), and the sender (`jit-hostd --webhook-send`,
what jit-webhook.service runs) posts it to an HTTP server on 127.0.0.1, byte for byte
as hostd built it; notices outlive hostd; a dead endpoint is a notify_failed event."""

from __future__ import annotations

import http.server
import json
import socket
import threading

import pytest
from sandbox import Sandbox

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["host"]
requesters = ["%developers"]
approvers = ["%sre"]
approvals = 1

[notify]
webhook = "WEBHOOK"
"""

HOSTILE = "urgent\n\x1b]0;APPROVED\x07 <!channel> *now* \u202eok"


class Hook(http.server.BaseHTTPRequestHandler):
    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self):
        data = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.posts.append((self.path, self.headers["Content-Type"], data))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    Hook.posts = []
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


def make(url: str) -> Sandbox:
    box = Sandbox(POLICY.replace("WEBHOOK", url))
    box.start()
    return box


@pytest.fixture
def box(hook):
    b = make(hook)
    yield b
    b.cleanup()


def ask(box: Sandbox, reason: str = "deploy") -> str:
    rc, out = box.jit_json("request", "docker", "--for", "30m", "--reason", reason,
                           user="alice")
    assert rc == 0, out
    return out["request"]["id"]


def queued(box: Sandbox, n: int) -> list[dict]:
    """The queued notices once there are `n` of them, oldest first."""
    paths = box.wait_for(lambda: (p := sorted(box.webhook_queue.glob("*.json")))
                         and len(p) >= n and p)
    return [json.loads(p.read_text()) for p in paths]


def test_the_sender_posts_exactly_what_hostd_queued(box, hook):
    rid = ask(box, HOSTILE)
    (notice,) = queued(box, 1)
    assert notice["url"] == hook and notice["about"] == {
        "request_id": rid, "user": "alice", "role": "docker"}
    assert not Hook.posts, "hostd posts nothing itself"
    sent = box.send_webhooks()
    assert sent.returncode == 0 and "1 sent, 0 failed" in sent.stdout, sent
    ((path, ctype, data),) = Hook.posts
    assert path == "/hook" and ctype == "application/json"
    assert data == json.dumps(notice["body"]).encode()
    body = json.loads(data)
    assert body["mrkdwn"] is False and body["jitaccess"]["request_id"] == rid
    assert body["jitaccess"]["host"] == "testhost" and body["jitaccess"]["event"] == "created"
    text = body["text"]
    assert "\x1b" not in text and "\n" not in text and "\u202e" not in text
    assert "&lt;!channel&gt;" in text and "<!channel>" not in text
    assert list(box.webhook_queue.iterdir()) == []
    assert not box.events("notify_failed")


def test_notices_outlive_hostd(box, hook):
    """Queued while hostd runs, hostd killed, sent afterwards; a decision taken after a
    restart follows in order."""
    rid = ask(box)
    queued(box, 1)
    box.kill9()
    sent = box.send_webhooks()
    assert sent.returncode == 0 and "1 sent" in sent.stdout, sent
    box.start()
    rc, out = box.jit_json("approve", rid, user="bob")
    assert rc == 0, out
    queued(box, 1)
    box.stop()
    assert "1 sent" in box.send_webhooks().stdout
    events = [json.loads(d)["jitaccess"]["event"] for _, _, d in Hook.posts]
    assert events == ["created", "approved"]


def test_a_dead_endpoint_is_a_notify_failed_event_from_the_sender():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    box = make(dead)
    try:
        rid = ask(box)
        queued(box, 1)
        assert not box.events("notify_failed")
        sent = box.send_webhooks()
        assert sent.returncode == 0 and "0 sent, 1 failed" in sent.stdout, sent
        (ev,) = box.events("notify_failed")
        assert ev["JIT_REQUEST_ID"] == rid and ev["JIT_USER"] == "alice"
        assert "after 3 tries" in ev["MESSAGE"]
        assert list(box.webhook_queue.iterdir()) == []
    finally:
        box.cleanup()


def test_without_a_webhook_nothing_is_queued():
    box = make("")
    try:
        ask(box)
        assert box.wait_for(lambda: box.events("request_created"))
        assert not box.webhook_queue.exists()
    finally:
        box.cleanup()
