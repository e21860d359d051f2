"""Expiry ends what the grant opened, on the installed package in a booted container.

alice holds a role with a group, opens a real login session (`su -l alice` in a pty,
so logind has a session with a TTY), and a process started with `setsid` from outside
any session (setpriv with her groups, as a job left behind would be) holds the group
too. At expiry both are gone, and the session's terminal was warned a minute before;
a revocation writes its notice there first, then ends the session. With on_expiry =
"keep-sessions" nothing is killed and the privilege_residue event in the journal names
the process. One host for the module: it changes the policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from container import Container, log
from jithost import Host, configure, events, issue, wait_for

POLICY = """\
[roles.ending]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]

[roles.keeping]
groups = ["jitkeep"]
max_ttl = "1h"
issuers = ["corp"]
on_expiry = "keep-sessions"
"""

# An interactive login shell of alice in a pty of its own (its input held open, so it
# waits at the prompt as a person's would); what the terminal shows goes to
# /root/TAG.typescript. An interactive bash ignores SIGTERM: logind's hang-up ends it.
SESSION = """#!/bin/sh
sleep 1000 | script -q -f -c "su -l alice" "/root/$1.typescript"
"""

# A process of alice with her groups that belongs to no login session.
DETACHED = ("setpriv --reuid=alice --regid=alice --init-groups setsid "
            "sh -c 'echo $$ > /tmp/{tag}.pid; exec sleep 300' </dev/null >/dev/null 2>&1 &")


@pytest.fixture(scope="module")
def box(own_host: Host) -> Iterator[Container]:
    box = own_host.box
    box.run(["groupadd", "jitkeep"])
    box.write("/usr/local/bin/e2e-session", SESSION, mode=0o755)
    configure(box, POLICY)
    yield box


def activate(box: Container, role: str, duration: str) -> dict:
    box.run(["jit", "activate", issue(box, "alice", role, duration)], user="alice")
    out = box.run(["jit", "grants", "--json"], user="alice").stdout
    (g,) = [g for g in json.loads(out)["grants"] if g["role"] == role]
    return g


def pid_of(box: Container, tag: str) -> int:
    text = wait_for(f"/tmp/{tag}.pid", lambda: box.run(
        ["cat", f"/tmp/{tag}.pid"], check=False).stdout.strip(), timeout=15)
    return int(text)


def groups_of_pid(box: Container, pid: int) -> list[str]:
    out = box.run(["sh", "-c", f"grep '^Groups:' /proc/{pid}/status"], check=False).stdout
    return out.split()[1:]


def gid(box: Container, group: str) -> str:
    return box.run(["getent", "group", group]).stdout.split(":")[2]


def running(box: Container, pid: int) -> bool:
    state = box.run(["sh", "-c", f"cat /proc/{pid}/stat 2>/dev/null"], check=False).stdout
    return bool(state) and ") Z " not in state


def test_expiry_ends_the_login_session_and_the_detached_process(box: Container) -> None:
    g = activate(box, "ending", "70s")
    exp = int(g["exp"])
    box.run("setsid e2e-session ending </dev/null >/dev/null 2>&1 &")
    box.run(DETACHED.format(tag="detached"))
    shell = int(wait_for("alice's login shell", lambda: box.run(
        ["pgrep", "-u", "alice", "-x", "bash"], check=False).stdout.strip(), timeout=15))
    detached = pid_of(box, "detached")
    docker = gid(box, "docker")
    assert docker in groups_of_pid(box, shell), "the session's shell holds the group"
    assert docker in groups_of_pid(box, detached)
    sessions = box.run(["loginctl", "list-sessions", "--no-legend"]).stdout
    (sid,) = [line.split()[0] for line in sessions.splitlines() if "alice" in line.split()]
    registered = json.loads(box.run(["jit", "grants", "--sessions", "--json"],
                                    user="alice").stdout)
    assert sid in json.dumps(registered), f"pam_jit registered session {sid}: {registered}"
    assert exp - time.time() > 62, "the grant must still be live for the checks above"

    typescript = box.path("/root/ending.typescript")
    warned = wait_for("the warning a minute before expiry", lambda: "jit: your grant of role "
                      "ending ends in" in typescript.read_text(errors="replace"),
                      timeout=exp - time.time())
    assert warned and running(box, shell), "warned, not yet ended"

    wait_for("the session's shell and the detached process to be gone",
             lambda: not running(box, shell) and not running(box, detached),
             timeout=exp - time.time() + 15)
    ended = wait_for("session_terminated events", lambda: [
        e for e in events(box, "session_terminated", g["id"]) if "JIT_PIDS" in e],
        timeout=10)
    pids = {int(p) for e in ended for p in e["JIT_PIDS"].split(",")}
    assert detached in pids, ended
    (by_logind,) = [e for e in events(box, "session_terminated", g["id"])
                    if e.get("JIT_SESSION_ID") == sid]
    assert by_logind["JIT_DECISION"] in ("terminated", "killed")
    assert by_logind["JIT_GROUPS"] == "docker"
    for e in events(box, "session_terminated", g["id"]):
        at = int(e["__REALTIME_TIMESTAMP"]) / 1e6
        log(f"session_terminated ({e.get('JIT_SESSION_ID') or e.get('JIT_PIDS')}, "
            f"{e['JIT_DECISION']}) {at - exp:+.3f} s after exp {e.get('JIT_PROCESSES', '')}")
        assert e["JIT_REASON"] == "expired" and e["JIT_USER"] == "alice"
        assert exp <= at <= exp + 3, f"ended {at - exp:.3f} s after expiry"
    wait_for("alice's login session to close", lambda: "alice" not in box.run(
        ["loginctl", "list-sessions", "--no-legend"]).stdout, timeout=10)
    assert events(box, "privilege_residue", g["id"]) == []


def test_keep_sessions_names_the_process_and_kills_nothing(box: Container) -> None:
    g = activate(box, "keeping", "15s")
    box.run(DETACHED.format(tag="kept"))
    kept = pid_of(box, "kept")
    assert gid(box, "jitkeep") in groups_of_pid(box, kept)
    (ev,) = wait_for("the privilege_residue event", lambda: events(
        box, "privilege_residue", g["id"]), timeout=int(g["exp"]) - time.time() + 15)
    assert ev["JIT_USER"] == "alice" and ev["JIT_GROUPS"] == "jitkeep"
    assert str(kept) in ev["JIT_PIDS"].split(",")
    assert f"{kept} [" in ev["JIT_PROCESSES"] and "sleep 300" in ev["JIT_PROCESSES"]
    assert ev["PRIORITY"] == "4" and ev["JIT_DECISION"] == "kept"
    assert running(box, kept), "keep-sessions kills nothing"
    assert gid(box, "jitkeep") in groups_of_pid(box, kept), "and the privilege outlived it"
    assert events(box, "session_terminated", g["id"]) == []
    box.run(["kill", str(kept)])


def test_revoke_tells_the_terminal_then_ends_the_session(box: Container) -> None:
    g = activate(box, "ending", "30m")
    box.run("setsid e2e-session revoked </dev/null >/dev/null 2>&1 &")
    shell = int(wait_for("alice's login shell", lambda: box.run(
        ["pgrep", "-u", "alice", "-x", "bash"], check=False).stdout.strip(), timeout=15))
    sessions = box.run(["loginctl", "list-sessions", "--no-legend"]).stdout
    (sid,) = [line.split()[0] for line in sessions.splitlines() if "alice" in line.split()]
    box.run(["jit", "revoke", g["id"]], user="alice")
    typescript = box.path("/root/revoked.typescript")
    wait_for("the revocation notice", lambda: "jit: your grant of role ending was revoked "
             "by alice; sessions opened under it end now" in typescript.read_text(
                 errors="replace"), timeout=10)
    wait_for("the login shell to be gone", lambda: not running(box, shell), timeout=10)
    (ev,) = wait_for(f"session_terminated for session {sid}", lambda: [
        e for e in events(box, "session_terminated", g["id"])
        if e.get("JIT_SESSION_ID") == sid], timeout=10)
    assert ev["JIT_REASON"] == "revoked" and ev["JIT_GROUPS"] == "docker"
