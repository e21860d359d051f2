"""sudo.check and sudo.wait against a real hostd in a sandbox root, asked as the sudo
plugin asks (root, sudo's vectors), without sudo itself (that is the e2e tier's)."""

from __future__ import annotations

import json
import socket

import pytest
from sandbox import POLICY, Sandbox

from hostd.client import Client
from hostd.protocol import request

SUDO_POLICY = POLICY + """
[roles.sudo-ops]
groups = []
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
authenticate = false
record = "never"  # these tests read the command itself; test_recording.py wraps it
sudo = [ { runas = "root", commands = ["/usr/bin/id -u", "/usr/bin/touch /tmp/ok-*"] } ]

[roles.secure]
groups = []
max_ttl = "1h"
issuers = ["corp"]
record = "never"
sudo = [ { runas = "root", commands = ["/usr/bin/id -u"] } ]

[[guardrails]]
action = "deny"
match = '^/usr/bin/rm '
message = "no rm here"

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /tmp/ok-'
"""


def vectors(argv: list[str], user: str = "alice", uid: int = 1001, **settings: str) -> dict:
    info = [f"user={user}", f"uid={uid}", f"gid={uid}", "cwd=/", "tty=/dev/pts/7",
            "pid=4242", "ppid=4241", "host=testhost"]
    return {"settings": [f"{k}={v}" for k, v in settings.items()], "user_info": info,
            "argv": argv, "env": ["TERM=xterm", "PATH=/usr/bin:/bin"]}


@pytest.fixture
def box():
    b = Sandbox(SUDO_POLICY)
    b.start()
    yield b
    b.cleanup()


def check(box, argv: list[str], **kw) -> dict:
    with Client(box.socket_path, trusted=True) as client:
        return client.call(request("sudo.check", mode="run", **vectors(argv, **kw)))


def activate(box, role: str) -> dict:
    rc, out = box.jit_json("activate", box.issue("alice", role=role), user="alice")
    assert rc == 0, out
    return out["grant"]


def test_no_grant_then_a_grant_allows_exactly_its_rule(box):
    assert check(box, ["/usr/bin/id", "-u"])["code"] == "no_grant"
    g = activate(box, "sudo-ops")
    allow = check(box, ["/usr/bin/id", "-u"])
    assert allow["ok"] and allow["decision"] == "allow", allow
    assert "command=/usr/bin/id" in allow["command_info"] and "runas_uid=0" in allow[
        "command_info"] and "intercept=true" in allow["command_info"]
    assert check(box, ["/usr/bin/id", "-g"])["code"] == "no_rule"
    (ev,) = [e for e in box.events("sudo_allowed")]
    assert (ev["JIT_GRANT_ID"], ev["JIT_COMMAND"], ev["JIT_TTY"]) == (
        g["id"], "/usr/bin/id -u", "/dev/pts/7")


def test_deny_guardrail_comes_first(box):
    activate(box, "sudo-ops")
    answer = check(box, ["/usr/bin/rm", "-rf", "/tmp/x"])
    assert (answer["code"], answer["message"]) == ("guardrail_denied", "no rm here")


def test_only_root_may_ask_and_the_user_must_match_the_uid(box):
    """Identity: only sudo (root) asks, and user_info's user must be its uid's name."""
    lying = check(box, ["/usr/bin/id", "-u"], user="bob", uid=1001)
    assert lying["code"] == "bad_request" and "uid 1001 is 'alice'" in lying["message"]
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]);"
            "from hostd.client import Client; from hostd.protocol import request;"
            "print(json.dumps(Client(sys.argv[2]).call(request('sudo.check', mode='run',"
            " settings=[], user_info=['user=alice','uid=1001'], argv=['/usr/bin/id']))))")
    import subprocess

    from sandbox import PYTHON, USERS

    out = subprocess.run(["setpriv", f"--reuid={USERS['alice']}", f"--regid={USERS['alice']}",
                          "--clear-groups", PYTHON, "-c", code, str(box.lib),
                          str(box.socket_path)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["code"] == "permission_denied"


def test_password_is_asked_for_roles_that_authenticate(box):
    activate(box, "secure")
    answer = check(box, ["/usr/bin/id", "-u"])
    assert (answer["code"], answer["message"]) == ("auth_required",
                                                   "[jit] password for alice: ")


def test_approval_pauses_then_runs_once(box):
    activate(box, "sudo-ops")
    with Client(box.socket_path, trusted=True, timeout=30) as client:
        paused = client.call(request("sudo.check", mode="run",
                                     **vectors(["/usr/bin/touch", "/tmp/ok-1"])))
        assert paused["decision"] == "pending", paused
        rid = paused["request_id"]
        assert box.jit("approve", rid, user="bob").returncode == 0
        answer = client.call(request("sudo.wait", id=rid))
    assert answer.get("decision") == "allow", answer
    assert "command=/usr/bin/touch" in answer["command_info"]
    again = check(box, ["/usr/bin/touch", "/tmp/ok-1"])
    assert again["decision"] == "pending", "an approval runs its command once"
    assert check(box, ["/usr/bin/touch", "/tmp/ok-1"], noninteractive="true")[
        "code"] == "needs_approval"


def test_giving_up_the_wait_cancels_the_request(box):
    activate(box, "sudo-ops")
    with Client(box.socket_path, trusted=True) as client:
        rid = client.call(request("sudo.check", mode="run",
                                  **vectors(["/usr/bin/touch", "/tmp/ok-2"])))["request_id"]
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(box.socket_path))
    sock.sendall(json.dumps(request("sudo.wait", id=rid)).encode() + b"\n")
    sock.close()  # Ctrl-C
    cancelled = box.wait_for(lambda: [e for e in box.events("request_expired")
                                      if e.get("JIT_REQUEST_ID") == rid], timeout=5)
    assert cancelled and cancelled[0]["JIT_DECISION"] == "cancelled"


def test_list_validate_and_invalidate(box):
    """sudo -l [COMMAND], -v and -k: answered in the worker, from the user's grants."""
    activate(box, "sudo-ops")
    with Client(box.socket_path, trusted=True) as client:
        def ask(mode, **extra):
            return client.call(request("sudo.check", mode=mode, **vectors([]), **extra))

        listed = ask("list")
        assert listed["decision"] == "list" and "(root) NOPASSWD: /usr/bin/id -u" in listed[
            "message"], listed
        assert ask("list", list_argv=["id", "-u"])["message"] == "/usr/bin/id -u"
        assert ask("list", list_argv=["/usr/bin/id", "-g"])["code"] == "no_rule"
        assert ask("validate")["decision"] == "validate"
        assert ask("invalidate")["decision"] == "invalidate"
