"""At the end of a grant the real daemon ends the processes that still hold its group
(terminate-sessions) or names them in a privilege_residue event (keep-sessions).

The sandbox links DIR/proc to the real /proc (a sandbox without it reads no processes,
so no other test's hostd signals anything), and the processes are real: started with
setpriv as alice (uid 1001) holding a group of a gid nothing else on the machine uses.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox import USERS, Sandbox

from hostd.server import residue

GID = 47123  # the role's group: a gid no other test or user holds
ALICE = USERS["alice"]

POLICY = """
[roles.ending]
groups = ["jitend"]
max_ttl = "1h"
issuers = ["corp"]

[roles.keeping]
groups = ["jitend"]
max_ttl = "1h"
issuers = ["corp"]
on_expiry = "keep-sessions"

[daemon]
sweep_interval = "1s"
"""


@pytest.fixture
def box() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    sb = Sandbox(POLICY)
    with open(sb.root / "etc" / "group", "a") as fh:
        fh.write(f"jitend:x:{GID}:\n")
    with open(sb.root / "etc" / "gshadow", "a") as fh:
        fh.write("jitend:!::\n")
    (sb.root / "proc").symlink_to("/proc")
    sb.start()
    yield sb
    sb.cleanup()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def spawn(procs: list[subprocess.Popen], uid: int, groups: list[int]) -> subprocess.Popen:
    """`setsid sleep 300` as `uid` with exactly `groups` as supplementary groups."""
    p = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                          f"--groups={','.join(map(str, groups))}", "setsid", "sleep", "300"])
    procs.append(p)
    return p


def holds_group(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        line = next(x for x in fh if x.startswith("Groups:"))
    return str(GID) in line.split()


def grant(box: Sandbox, role: str, duration: str) -> dict:
    rc, out = box.jit_json("activate", box.issue("alice", role=role, duration=duration),
                           user="alice")
    assert rc == 0, out
    return out["grant"]


def test_expiry_ends_the_processes_that_still_hold_the_group(box, procs):
    g = grant(box, "ending", "3s")
    holder = spawn(procs, ALICE, [ALICE, GID])
    box.wait_for(lambda: os.path.exists(f"/proc/{holder.pid}/status")
                 and holds_group(holder.pid), timeout=5)
    without = spawn(procs, ALICE, [ALICE])  # started without the group: stays
    roots = spawn(procs, 0, [GID])  # root's: never touched
    assert holder.wait(15) == -15, "SIGTERM ends it"
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=5)
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_PIDS"] == str(holder.pid)
    assert ev["JIT_DECISION"] == "terminated" and ev["JIT_REASON"] == "expired"
    assert ev["JIT_GROUPS"] == "jitend" and "setsid" not in ev["JIT_PROCESSES"]
    assert ev["JIT_PROCESSES"] == f"{holder.pid} [{ALICE},jitend] sleep 300"
    assert without.poll() is None and roots.poll() is None
    assert box.events("privilege_residue") == []


LOGIN_SHELL = """
import fcntl, os, signal, termios, time
os.setsid()
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # as an interactive shell does
print("ready", flush=True)
time.sleep(300)
"""


def test_a_login_shell_ignoring_sigterm_is_hung_up_not_waited_for(box, procs):
    """An interactive shell ignores SIGTERM: a session leader with a terminal also gets
    SIGHUP (its terminal hung up), so it goes at once rather than after the grace."""
    g = grant(box, "ending", "3s")
    shell = subprocess.Popen(["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}",
                              f"--groups={ALICE},{GID}", "/usr/bin/python3", "-c", LOGIN_SHELL],
                             stdout=subprocess.PIPE, text=True)
    procs.append(shell)
    assert shell.stdout.readline().strip() == "ready"
    assert residue.leads_a_tty_session(Path("/proc"), shell.pid)
    assert shell.wait(15) == -1, "SIGHUP ends it (SIGTERM is ignored)"
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=5)
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_DECISION"] == "terminated"


def test_revoke_ends_them_too(box, procs):
    g = grant(box, "ending", "1h")
    holder = spawn(procs, ALICE, [GID])
    box.wait_for(lambda: os.path.exists(f"/proc/{holder.pid}/status")
                 and holds_group(holder.pid), timeout=5)
    assert box.jit("revoke", g["id"], user="alice").returncode == 0
    assert holder.wait(10) == -15
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=5)
    assert ev["JIT_REASON"] == "revoked"


def test_keep_sessions_names_them_and_kills_nothing(box, procs):
    g = grant(box, "keeping", "3s")
    holder = spawn(procs, ALICE, [ALICE, GID])
    box.wait_for(lambda: os.path.exists(f"/proc/{holder.pid}/status")
                 and holds_group(holder.pid), timeout=5)
    (ev,) = box.wait_for(lambda: box.events("privilege_residue"), timeout=15)
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_PIDS"] == str(holder.pid)
    assert ev["JIT_COUNT"] == "1" and ev["JIT_DECISION"] == "kept"
    assert ev["JIT_PROCESSES"] == f"{holder.pid} [{ALICE},jitend] sleep 300"
    assert holder.poll() is None and holds_group(holder.pid)
    assert box.events("session_terminated") == []
    assert "alice" not in box.members("jitend")


def test_children_forked_on_sigterm_are_ended_too(box, procs):
    """A holder that answers SIGTERM by leaving a child behind (which inherits the
    group) does not keep the privilege: hostd scans again and SIGKILLs the child."""
    g = grant(box, "ending", "3s")
    script = "trap 'setsid sleep 301 & exit 0' TERM; while :; do sleep 0.1; done"
    holder = subprocess.Popen(["setpriv", f"--reuid={ALICE}", f"--regid={ALICE}",
                               f"--groups={GID}", "sh", "-c", script])
    procs.append(holder)
    box.wait_for(lambda: os.path.exists(f"/proc/{holder.pid}/status")
                 and holds_group(holder.pid), timeout=5)
    assert holder.wait(15) == 0, "it left on SIGTERM, leaving its child"
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=10)
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_DECISION"] == "killed"
    pids = [int(p) for p in ev["JIT_PIDS"].split(",")]
    assert holder.pid in pids and len(pids) >= 2, ev
    left = residue.scan(Path("/proc"), ALICE, {GID})
    assert left == [], f"still holding the group: {left}"


def test_a_primary_group_from_newgrp_is_taken_too(box, procs):
    """`newgrp jitend` makes the group the process's gid, which `Groups:` omits."""
    grant(box, "ending", "3s")
    holder = subprocess.Popen(["setpriv", f"--reuid={ALICE}", f"--regid={GID}",
                               f"--groups={ALICE}", "setsid", "sleep", "300"])
    procs.append(holder)
    assert holder.wait(15) == -15
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=5)
    assert ev["JIT_PROCESSES"] == f"{holder.pid} [{ALICE},jitend] sleep 300"
