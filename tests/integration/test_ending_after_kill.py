"""A hostd killed after ending a grant but before ending what the grant opened finishes
the job at its next start: the ending was recorded with the grant's end (pending_endings).

The first daemon's DIR/proc holds one process whose `status` is a FIFO nobody writes:
the /proc pass of the ending blocks on it for good, so the daemon is SIGKILLed with the
grant over (its group gone from the group file) and the holder still holding the group,
as a crash between the two would leave them. The second daemon reads the real /proc.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator

import pytest
from sandbox import USERS, Sandbox
from test_session_end import POLICY, grant, spawn

ALICE = USERS["alice"]
GID = 47124  # not test_session_end's: a hostd of that test running meanwhile ends none


@pytest.fixture
def box() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    sb = Sandbox(POLICY)
    with open(sb.root / "etc" / "group", "a") as fh:
        fh.write(f"jitend:x:{GID}:\n")
    with open(sb.root / "etc" / "gshadow", "a") as fh:
        fh.write("jitend:!::\n")
    stuck = sb.root / "proc" / "1"
    stuck.mkdir(parents=True)
    os.mkfifo(stuck / "status")  # reading it waits for a writer that never comes
    yield sb
    sb.cleanup()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def holds_group(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        line = next(x for x in fh if x.startswith("Groups:"))
    return str(GID) in line.split()


def pending(box: Sandbox) -> list[str] | None:
    """Grant ids of the recorded endings; None without the table (hostd before it)."""
    db = sqlite3.connect(f"file:{box.root / 'var/lib/jit/state.db'}?mode=ro", uri=True)
    try:
        return [r[0] for r in db.execute("SELECT grant_id FROM pending_endings")]
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()


def test_an_ending_cut_short_by_a_kill_is_carried_out_at_the_next_start(box, procs):
    box.start()
    g = grant(box, "ending", "1h")
    holder = spawn(procs, ALICE, [ALICE, GID])
    box.wait_for(lambda: os.path.exists(f"/proc/{holder.pid}/status")
                 and holds_group(holder.pid), timeout=5)
    assert box.jit("revoke", g["id"], user="alice").returncode == 0  # the grant is over
    box.kill9()  # its ending is stuck on the FIFO: nothing was signalled
    assert "alice" not in box.members("jitend")
    assert holder.poll() is None and holds_group(holder.pid), "the privilege outlived it"
    assert box.events("session_terminated") == []
    recorded = pending(box)

    shutil.rmtree(box.root / "proc")
    (box.root / "proc").symlink_to("/proc")
    box.start()
    assert holder.wait(15) == -15, "the next start ended it (SIGTERM)"
    assert recorded == [g["id"]], "recorded with the grant's end"
    (ev,) = box.wait_for(lambda: box.events("session_terminated"), timeout=5)
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_PIDS"] == str(holder.pid)
    assert ev["JIT_REASON"] == "revoked" and ev["JIT_GROUPS"] == "jitend"
    assert box.wait_for(lambda: pending(box) == [], timeout=5)
