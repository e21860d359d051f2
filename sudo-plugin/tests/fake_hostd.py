"""A fake jit-hostd for the sudo plugin tests: answers by scenario, logs every request.

usage: fake_hostd.py SCENARIO SOCKET LOG

Standard library only; run with the system python3 (it may run as uid 1000).
Each request line received is appended to LOG as it was parsed (one JSON per line).
"""

import json
import os
import socket
import sys
import time

COMMAND_INFO = ["command=/usr/bin/id", "runas_uid=0", "runas_gid=0", "intercept=true"]
ARGV = ["/usr/bin/id", "-u"]
ENV = ["PATH=/usr/sbin:/usr/bin", "HOME=/root", "LANG=C.UTF-8"]
ALLOW = {"ok": True, "code": "ok", "message": "", "decision": "allow",
         "command_info": COMMAND_INFO, "argv": ARGV, "env": ENV}
PROMPT = "[jit] password for alice: "
AUTH = {"ok": False, "code": "auth_required", "message": PROMPT}
DENY = {"ok": False, "code": "denied",
        "message": "jit: no active grant allows /usr/bin/id — ask for one"}
PENDING = {"ok": True, "code": "ok", "decision": "pending", "request_id": "r-1",
           "timeout": 2,
           "message": "jit: request r-1: waiting for approval (Ctrl-C to cancel)"}
LIST = {"ok": True, "code": "ok", "decision": "list",
        "message": "alice may run as root: ALL (grant g-1, until 12:00 UTC)"}


def big_allow():
    """An allow answer of exactly 64 KiB, newline included."""
    answer = dict(ALLOW, env=[*ENV, "PAD="])
    size = len(json.dumps(answer, separators=(",", ":"))) + 1
    answer["env"][-1] = "PAD=" + "x" * (65536 - size)
    return answer


def answer(scenario, req, state):
    """The answer to REQ (None: say nothing), or raw bytes to send as they are."""
    if req.get("op") == "sudo.wait":
        if scenario == "pending_hang":
            return None
        time.sleep(0.5)
        return ALLOW if scenario == "pending_allow" else {
            "ok": False, "code": "denied", "message": "jit: request r-1 denied by bob"}
    if scenario in ("allow", "peer_not_root", "socket_not_root"):
        return ALLOW
    if scenario == "deny":
        return DENY
    if scenario == "password":
        return ALLOW if req.get("password") == "secret" else AUTH
    if scenario == "password_wrong":
        state["tries"] = state.get("tries", 0) + ("password" in req)
        if state["tries"] >= 3:
            return {"ok": False, "code": "auth_failed",
                    "message": "jit: 3 incorrect password attempts"}
        return AUTH
    if scenario in ("pending_allow", "pending_deny"):
        return PENDING
    if scenario == "pending_hang":
        return dict(PENDING, timeout=30)
    if scenario in ("list", "validate", "invalidate"):
        return LIST if scenario == "list" else {"ok": True, "code": "ok", "message": ""}
    if scenario == "malformed":
        return b'{"ok": true, "code": "ok", "decision": "allow"\n'
    if scenario == "missing_fields":
        return {k: v for k, v in ALLOW.items() if k != "env"}
    if scenario == "too_large":
        return dict(DENY, message="x" * 70000)
    if scenario == "big_allow":
        return big_allow()
    if scenario == "eof":
        return b""
    if scenario == "slow":
        return None
    raise SystemExit(f"unknown scenario {scenario}")


def serve(conn, scenario, log, state):
    buf = b""
    with conn:
        while True:
            while b"\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            with open(log, "a", encoding="utf-8") as f:
                f.write(json.dumps(req) + "\n")
            ans = answer(scenario, req, state)
            if ans is None:
                time.sleep(30)
                return
            if isinstance(ans, bytes):
                conn.sendall(ans)
                return
            conn.sendall(json.dumps(ans, separators=(",", ":")).encode() + b"\n")


def main():
    scenario, path, log = sys.argv[1:4]
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    os.chmod(path + ".tmp", 0o666)  # noqa: S103 (as hostd's socket: anyone may connect)
    if scenario == "backlog":
        # Fill the backlog of 0 (one queued connection) and never accept.
        srv.listen(0)
        queued = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        queued.connect(path + ".tmp")
        os.rename(path + ".tmp", path)
        time.sleep(60)
        return
    srv.listen(8)
    os.rename(path + ".tmp", path)
    state = {}
    while True:
        conn, _ = srv.accept()
        try:
            serve(conn, scenario, log, state)
        except OSError:  # the plugin hung up (a check failed on its side)
            pass


if __name__ == "__main__":
    main()
