"""Access requests and approvals against a real hostd: alice, bob and carol run the CLI
under their own uids. alice and carol are developers (requesters); bob and carol are sre
(approvers). Notices reach approvers on a real pty and, through the spool and the
sender, on a webhook on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import os
import select
import struct
import subprocess
import threading
import time

import pytest
from sandbox import PYTHON, USERS, Sandbox

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["host"]
requesters = ["%developers"]
approvers = ["%sre"]
approvals = 1

[roles.db]
groups = ["adm"]
max_ttl = "1h"
issuers = ["host"]
requesters = ["alice"]
approvers = ["%sre"]
approvals = 2

[roles.breakglass]
groups = ["adm"]
max_ttl = "30m"
issuers = ["host"]
requesters = ["alice"]
approvals = 0

[requests]
ttl = "TTL"

[notify]
webhook = "WEBHOOK"

[daemon]
sweep_interval = "1s"
"""


class Hook(http.server.BaseHTTPRequestHandler):
    bodies: list[dict] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        Hook.bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.bodies = []
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", Hook.bodies
    srv.shutdown()


def make(webhook_url: str = "", ttl: str = "1h") -> Sandbox:
    box = Sandbox(POLICY.replace("TTL", ttl).replace("WEBHOOK", webhook_url))
    box.start()
    return box


@pytest.fixture
def box(webhook):
    b = make(webhook[0])
    yield b
    b.cleanup()


def request(box, user="alice", role="docker", duration="30m", reason="deploy hotfix",
            *extra) -> dict:
    rc, out = box.jit_json("request", role, "--for", duration, "--reason", reason, *extra,
                           user=user)
    assert rc == 0, out
    return out["request"]


def test_request_approve_grant_and_membership(box):
    req = request(box, "alice", "docker", "30m", "deploy hotfix", "--ticket", "OPS-1")
    assert req["state"] == "pending" and req["needed"] == 1 and len(req["id"]) == 8
    assert "alice" not in box.members("docker")
    rc, listed = box.jit_json("requests", user="bob")
    assert [r["id"] for r in listed["requests"]] == [req["id"]]
    rc, out = box.jit_json("approve", req["id"], "--comment", "ok", user="bob")
    assert rc == 0 and out["request"]["state"] == "approved", out
    assert "alice" in box.members("docker")
    rc, grants = box.jit_json("grants", user="alice")
    g = grants["grants"][0]
    assert g["issuer"] == "host" and g["approved_by"] == ["bob"] and g["role"] == "docker"
    assert g["exp"] - int(time.time()) <= 30 * 60
    approved = box.events("request_approved")[-1]
    assert approved["JIT_APPROVER"] == "bob" and approved["JIT_REQUEST_ID"] == req["id"]


def test_duration_capped_by_max_ttl(box):
    req = request(box, duration="10h")
    assert req["duration"] == 4 * 3600 and req["capped"] is True


def test_reason_is_mandatory(box):
    rc, out = box.jit_json("request", "docker", "--for", "1h", "--reason", "  ", user="alice")
    assert rc == 1 and out["code"] == "reason_required"


def test_non_requester_refused(box):
    rc, out = box.jit_json("request", "docker", "--for", "1h", "--reason", "x", user="bob")
    assert rc == 1 and out["code"] == "not_requester"


def test_self_approval_refused(box):
    req = request(box, user="carol")  # carol is both developer and sre
    rc, out = box.jit_json("approve", req["id"], user="carol")
    assert rc == 1 and out["code"] == "self_approval"
    assert "carol" not in box.members("docker")


def test_non_approver_refused(box):
    req = request(box, user="carol")
    rc, out = box.jit_json("approve", req["id"], user="alice")
    assert rc == 1 and out["code"] == "not_approver"
    rc, listed = box.jit_json("requests", user="alice")
    assert listed["requests"] == [], "alice may neither see nor decide carol's request"


def test_two_of_n_counts_each_approver_once_even_racing(box):
    req = request(box, role="db")
    uid = USERS["bob"]
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", PYTHON, "-m",
           "hostd.cli", "approve", req["id"], "--json"]
    racers = [subprocess.Popen(cmd, env=box.env, stdout=subprocess.PIPE, text=True)
              for _ in range(4)]
    answers = [json.loads(p.communicate(timeout=60)[0]) for p in racers]
    assert sum(a["ok"] for a in answers) == 1
    assert {a["code"] for a in answers if not a["ok"]} == {"already_decided"}
    rc, listed = box.jit_json("requests", user="alice")
    assert listed["requests"][0]["state"] == "pending"
    assert listed["requests"][0]["approvals"] == ["bob"]
    assert "alice" not in box.members("adm")
    rc, out = box.jit_json("approve", req["id"], user="carol")
    assert rc == 0 and out["request"]["state"] == "approved"
    assert "alice" in box.members("adm")
    assert box.jit_json("grants", user="alice")[1]["grants"][0]["approved_by"] == ["bob",
                                                                                   "carol"]


def test_denial_ends_the_request(box):
    req = request(box, role="db")
    rc, out = box.jit_json("deny", req["id"], "--reason", "not now", user="bob")
    assert rc == 0 and out["request"]["state"] == "denied"
    rc, out = box.jit_json("approve", req["id"], user="carol")
    assert rc == 1 and out["code"] == "already_decided"
    assert "alice" not in box.members("adm")
    assert box.events("request_denied")[-1]["JIT_APPROVER"] == "bob"


def test_deny_needs_reason(box):
    req = request(box)
    r = box.jit("deny", req["id"], user="bob")
    assert r.returncode == 2


def test_breakglass_is_immediate_and_loud(box):
    req = request(box, role="breakglass", reason="prod down")
    assert req["state"] == "approved" and req["grant_id"]
    assert "alice" in box.members("adm")
    ev = box.events("breakglass")[-1]
    assert ev["PRIORITY"] == "2" and ev["JIT_REASON"] == "prod down"


def test_wait_returns_when_approved(box):
    waiter = subprocess.Popen(
        ["setpriv", f"--reuid={USERS['alice']}", f"--regid={USERS['alice']}", "--clear-groups",
         PYTHON, "-m", "hostd.cli", "request", "docker", "--for", "1h", "--reason", "r",
         "--wait", "--json"], env=box.env, stdout=subprocess.PIPE, text=True)
    rid = box.wait_for(lambda: box.jit_json("requests", user="bob")[1]["requests"])[0]["id"]
    assert box.jit("approve", rid, user="bob").returncode == 0
    out, _ = waiter.communicate(timeout=30)
    assert waiter.returncode == 0
    assert json.loads(out)["request"]["state"] == "approved"


def test_unanswered_requests_expire(webhook):
    b = make(ttl="2s")
    try:
        req = request(b)
        assert b.wait_for(lambda: b.events("request_expired"), timeout=10)
        rc, out = b.jit_json("approve", req["id"], user="bob")
        assert rc == 1 and out["code"] == "request_expired"
        rc, listed = b.jit_json("requests", user="alice")
        assert listed["requests"][0]["state"] == "expired"
        assert "alice" not in b.members("docker")
    finally:
        b.cleanup()


HOSTILE = "urgent\n\x1b]0;APPROVED\x07\x1b[2J *APPROVE NOW* <!channel> \u202eok"


def test_webhook_receives_escaped_text(box, webhook):
    """hostd queues the notice; the sender (jit-webhook.service's command) posts it."""
    _, bodies = webhook
    req = request(box, reason=HOSTILE)
    assert box.wait_for(lambda: list(box.webhook_queue.glob("*.json")), timeout=10)
    sent = box.send_webhooks()
    assert sent.returncode == 0 and "1 sent, 0 failed" in sent.stdout, sent
    (body,) = bodies
    text = body["text"]
    assert req["id"] in text and "alice" in text
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert body["mrkdwn"] is False
    assert "\\x1b]0;APPROVED\\x07" in text and "\\n" in text


def _utmp_record(user: str, line: str) -> bytes:
    return struct.pack("<hxxi32s4s32s256shhiii4i20s", 7, os.getpid(), line.encode(),
                       line[-4:].encode(), user.encode(), b"", 0, 0, 0, int(time.time()), 0,
                       0, 0, 0, 0, b"")


@pytest.mark.parametrize("mesg", ["y", "n"])
def test_terminal_notice_to_approver_is_inert(box, mesg):
    master, slave = os.openpty()
    try:
        tty = os.ttyname(slave)
        os.chown(tty, USERS["bob"], 5)
        os.chmod(tty, 0o620 if mesg == "y" else 0o600)
        (box.root / "run").mkdir(exist_ok=True)
        (box.root / "run" / "utmp").write_bytes(_utmp_record("bob", tty.removeprefix("/dev/")))
        req = request(box, reason=HOSTILE)
        ready, _, _ = select.select([master], [], [], 3)
        if mesg == "n":
            assert not ready, "mesg n: nothing may be written"
            return
        assert ready
        shown = _read_until(master, "--reason ...")
        assert req["id"] in shown and "jit approve" in shown
        assert "\x1b" not in shown and "\x07" not in shown.replace("\a", "", 1)
        assert "\\x1b]0;APPROVED" in shown and "\u202e" not in shown
        assert "urgent\\n" in shown
    finally:
        os.close(master)
        os.close(slave)


def _read_until(fd: int, text: str, timeout: float = 5.0) -> str:
    """What the terminal got, read until `text` (and what came with it) or `timeout`."""
    got, deadline = b"", time.monotonic() + timeout
    while text.encode() not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            got += os.read(fd, 65536)
    return got.decode()


def test_requests_listing_is_inert(box):
    request(box, reason=HOSTILE)
    out = box.jit("requests", user="bob").stdout
    assert "\x1b" not in out and "\\x1b]0;APPROVED" in out
    assert out.count("\n") == 2, "the reason cannot add lines"


IDLE = 1.0  # the sandbox's idle timeout for quick calls in the test below (hostd: 10 s)


@pytest.fixture
def quick_idle_box():
    b = Sandbox(POLICY.replace("TTL", "1h").replace("WEBHOOK", ""), idle_timeout=IDLE)
    b.start()
    yield b
    b.cleanup()


def _idled_out(box, user: str = "alice", timeout: float = 10 * IDLE) -> bool:
    """A connection of `user` that sends nothing is closed by hostd: the idle timeout
    has passed since it was opened (bounded by `timeout`)."""
    probe = subprocess.run(
        ["setpriv", f"--reuid={USERS[user]}", f"--regid={USERS[user]}", "--clear-groups",
         PYTHON, "-c", "import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
         "s.connect(sys.argv[1]); s.settimeout(float(sys.argv[2]))\n"
         "print(repr(s.recv(1)))", str(box.socket_path), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10)
    return probe.stdout.strip() == "b''"


def test_waiting_connections_leave_room_for_quick_calls(quick_idle_box):
    """Issue 7: waits are counted apart from quick calls and never idle out: with 20
    `access.wait`s open (more than the 16 quick calls a uid may have), alice still runs
    `jit`, and a wait outlives the idle timeout (1 s in this sandbox: the knob of
    hostd/state/sandbox.py, so the test waits for hostd closing an idle probe, not 12 s)."""
    box = quick_idle_box
    req = request(box)
    code = ("import socket, sys\nsys.path.insert(0, sys.argv[1])\n"
            "from hostd.protocol import encode, request\n"
            "line = encode(request('access.wait', id=sys.argv[3], timeout=40))\n"
            "from hostd.client import Client\n"
            "socks = [socket.socket(socket.AF_UNIX) for _ in range(20)]\n"
            "for s in socks:\n    s.connect(sys.argv[2]); s.sendall(line)\n"
            # a quick round trip after each: hostd has taken the wait (now counted as
            # long) before the next connection, which would otherwise be a 17th quick one
            "    with Client(sys.argv[2]) as c:\n        c.ask('status')\n"
            "print('waiting', flush=True)\n"
            "import json\nout = [json.loads(s.makefile('rb').readline()) for s in socks]\n"
            "print(sorted({a['request']['state'] if 'request' in a else repr(a) "
            "for a in out}), len(out))\n")
    waiters = subprocess.Popen(
        ["setpriv", f"--reuid={USERS['alice']}", f"--regid={USERS['alice']}", "--clear-groups",
         PYTHON, "-c", code, str(box.lib), str(box.socket_path), req["id"]],
        env=box.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert waiters.stdout.readline().strip() == "waiting"  # all 20 asked
    assert _idled_out(box), "a silent quick call is closed after the idle timeout"
    for _ in range(3):
        rc, out = box.jit_json("grants", user="alice")
        assert rc == 0, out
    assert box.jit("approve", req["id"], user="bob").returncode == 0
    out, _ = waiters.communicate(timeout=30)
    assert out.strip() == "['approved'] 20", out
