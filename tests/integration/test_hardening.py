"""Regression tests of the independent attack on hostd (issue 12), against a real daemon
in a sandbox root: what used to go wrong at the socket, at start-up and at reload."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

from sandbox import PYTHON

from hostd.client import Client
from hostd.policy.grants import issue
from hostd.policy.keys import load_private
from hostd.protocol import request


def _connect_as(path, uid: int) -> socket.socket:
    """A connection whose SO_PEERCRED says `uid`: a child process with that uid makes
    the connect(2) on a socket the parent keeps."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            sock.connect(str(path))
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return sock


def _ask(sock: socket.socket, op: str, **fields: object) -> dict:
    sock.settimeout(10)
    sock.sendall(json.dumps(request(op, **fields)).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return json.loads(buf)


def test_root_gets_through_when_users_hold_every_connection(sandbox):
    """Finding 2: grants expiring together each start `jit-hostd --expire` as root; they
    must not get `busy` however many connections users hold open."""
    held = [_connect_as(sandbox.socket_path, 20000 + i) for i in range(8) for _ in range(16)]
    try:
        assert _ask(held[0], "status")["ok"]
        extra = _connect_as(sandbox.socket_path, 30000)
        extra.settimeout(10)  # refused at once, before any request
        assert json.loads(extra.recv(65536))["code"] == "busy"
        extra.close()
        roots = [socket.socket(socket.AF_UNIX) for _ in range(40)]
        for s in roots:
            s.connect(str(sandbox.socket_path))
        answers = [_ask(s, "status") for s in roots]
        assert all(a["ok"] for a in answers), [a for a in answers if not a["ok"]][:1]
        for s in roots:
            s.close()
    finally:
        for s in held:
            s.close()


def test_many_expiries_in_the_same_second_are_all_on_time(sandbox):
    """Finding 2 end to end: 40 grants ending together are all revoked by their timers."""
    key = load_private(sandbox.key)
    now = int(time.time())
    tokens = [issue(key, "corp", "alice", "docker", now, now + 5, ["testhost"], now)
              for _ in range(40)]
    with Client(sandbox.socket_path, timeout=30) as client:
        grants = [client.ask("grant.activate", token=t)["grant"] for t in tokens]
    exp = max(g["exp"] for g in grants)
    procs = []
    time.sleep(max(0.0, exp - time.time()))
    for g in grants:  # what 40 timers firing at once do
        procs.append(subprocess.Popen([PYTHON, "-m", "hostd", "--root", str(sandbox.root),
                                       "--expire", g["id"]], env=sandbox.env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len(sandbox.events("grant_expired")) == 40
    late = [int(e["__REALTIME_TIMESTAMP"]) / 1e6 - exp for e in sandbox.events("grant_expired")]
    assert max(late) < 10, late  # the 30 s sweep is not what ended them


def test_a_uid_over_two_billion_is_a_user_not_a_negative_number(sandbox):
    """Finding 14: SO_PEERCRED unpacked unsigned."""
    sock = _connect_as(sandbox.socket_path, 3_000_000_000)
    answer = _ask(sock, "grant.list")
    sock.close()
    assert answer["code"] == "wrong_user" and "3000000000" in answer["message"], answer


def test_revoke_works_while_the_configuration_is_broken(sandbox):
    """Finding 9: the holder and root can revoke under config_error."""
    g1 = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")[1]["grant"]
    g2 = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")[1]["grant"]
    sandbox.stop()
    policy = sandbox.root / "etc/jit/jit.toml"
    good = policy.read_text()
    policy.write_text(good + "\n[nonsense]\n")
    sandbox.start()
    rc, out = sandbox.jit_json("grants", user="alice")
    assert rc == 0 and len(out["grants"]) == 2
    rc, out = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")
    assert out["code"] == "config_error"
    assert sandbox.jit_json("revoke", g1["id"], user="alice")[0] == 0
    assert sandbox.jit_json("revoke", g2["id"])[0] == 0
    assert "alice" not in sandbox.members("docker")


def test_a_corrupt_host_key_disables_requests_but_expiry_goes_on(sandbox):
    """Finding 3: an empty host-issuer.key used to stop hostd at start."""
    token = sandbox.issue("alice", duration="3s")
    sandbox.stop()
    (sandbox.root / "etc/jit/host-issuer.key").write_text("")
    sandbox.start()
    rc, out = sandbox.jit_json("activate", token, user="alice")
    assert rc == 0, out
    assert sandbox.wait_for(lambda: sandbox.events("grant_expired"), timeout=10)
    assert "alice" not in sandbox.members("docker")
    errors = [e["MESSAGE"] for e in sandbox.events("config_error")]
    assert any("host-issuer.key" in m and "unusable" in m for m in errors), errors


def test_reload_that_removes_a_role_ends_its_grants(sandbox):
    """Finding 16: a role removed from the policy leaves no grant behind at reload."""
    docker = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")[1]["grant"]
    ops = sandbox.jit_json("activate", sandbox.issue("carol", role="ops"))[1]["grant"]
    policy = sandbox.root / "etc/jit/jit.toml"
    policy.write_text(policy.read_text().split("[roles.ops]")[0] + "[daemon]\n"
                      'sweep_interval = "1s"\n')
    sandbox.proc.send_signal(signal.SIGHUP)
    assert sandbox.wait_for(lambda: sandbox.events("grant_revoked"), timeout=10)
    (ev,) = sandbox.events("grant_revoked")
    assert (ev["JIT_GRANT_ID"], ev["JIT_REASON"]) == (ops["id"], "policy changed")
    assert "carol" not in sandbox.members("adm") and "alice" in sandbox.members("docker")
    rc, out = sandbox.jit_json("grants", "--all")
    assert rc == 0
    assert [g["id"] for g in out["grants"]] == [docker["id"]]
