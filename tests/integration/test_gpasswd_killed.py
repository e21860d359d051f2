"""Findings about a gpasswd killed mid-change (systemd stops the whole cgroup), against
real shadow-utils gpasswd in sandbox roots:

- group and gshadow disagree after a killed gpasswd: gpasswd writes /etc/group and then
  /etc/gshadow, so a kill in between lists a user in one file only. Reconcile at start
  puts a live grant's membership in both and takes an ended one's out of both.
- gpasswd lock after a restart: a lock file held by a live process makes gpasswd give up
  at once ("cannot lock /etc/group; try again later.", exit 1); hostd retries for a few
  seconds instead of leaving the membership wrong until the next sweep.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `pytest` run without `python -m` from the repo root
    sys.path.insert(0, str(REPO))

from hostd.errors import JitError  # noqa: E402
from hostd.paths import Paths  # noqa: E402
from hostd.state.accounts import LOCK_RETRY_WAITS, FileAccounts, accounts_for  # noqa: E402


def edit_members(path: Path, group: str, change) -> None:
    """Rewrite one group's member list in a group or gshadow file, as a crash left it."""
    lines = []
    for line in path.read_text().splitlines():
        f = line.split(":")
        if f[0] == group:
            f[3] = ",".join(change([m for m in f[3].split(",") if m]))
        lines.append(":".join(f))
    path.write_text("\n".join(lines) + "\n")


def activate(sandbox, user: str = "alice") -> str:
    rc, out = sandbox.jit_json("activate", sandbox.issue(user), user=user)
    assert rc == 0, out
    return out["grant"]["id"]


def restart(sandbox) -> None:
    sandbox.kill9()
    sandbox.start()


@pytest.mark.parametrize("dropped_from", ["gshadow", "group"])
def test_group_and_gshadow_disagree_after_a_killed_gpasswd_live_grant(sandbox, dropped_from):
    gid = activate(sandbox)
    sandbox.kill9()
    edit_members(sandbox.root / "etc" / dropped_from, "docker",
                 lambda ms: [m for m in ms if m != "alice"])
    sandbox.start()
    assert "alice" in sandbox.members("docker", "group")
    assert "alice" in sandbox.members("docker", "gshadow")
    assert "bob" in sandbox.members("docker", "group"), "standing member kept"
    repaired = [e for e in sandbox.events("membership_added") if "repaired" in e["MESSAGE"]]
    assert [e["JIT_GRANT_ID"] for e in repaired] == [gid]


@pytest.mark.parametrize("left_in", ["gshadow", "group"])
def test_group_and_gshadow_disagree_after_a_killed_gpasswd_ended_grant(sandbox, left_in):
    gid = activate(sandbox)
    assert sandbox.jit("revoke", gid, user="alice").returncode == 0
    sandbox.kill9()
    edit_members(sandbox.root / "etc" / left_in, "docker", lambda ms: [*ms, "alice"])
    sandbox.start()
    assert "alice" not in sandbox.members("docker", "group")
    assert "alice" not in sandbox.members("docker", "gshadow")
    assert sandbox.members("docker", "group") == sandbox.members("docker", "gshadow") == ["bob"]


# --- the lock ----------------------------------------------------------------------------


@pytest.fixture
def root():
    """A bare root for gpasswd -Q: alice, and an empty docker group."""
    d = Path(tempfile.mkdtemp(prefix="jit-lock-", dir="/tmp"))
    etc = d / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nalice:x:1001:\ndocker:x:999:\n")
    (etc / "gshadow").write_text("root:!::\nalice:!::\ndocker:!::\n")
    os.chmod(etc / "gshadow", 0o640)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def holder():
    """A live process whose pid a planted lock file names."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("lock", ["group.lock", "gshadow.lock"])
def test_gpasswd_lock_left_by_a_killed_gpasswd_is_waited_out(root, holder, lock):
    accounts = accounts_for(Paths.for_root(root))
    assert isinstance(accounts, FileAccounts)
    planted = root / "etc" / lock
    planted.write_text(str(holder.pid))
    threading.Timer(0.5, planted.unlink).start()  # the other holder finishes
    started = time.monotonic()
    accounts.add("alice", "docker")
    assert time.monotonic() - started < 3
    assert accounts.group_file_members()["docker"] == {"alice"}
    assert accounts.gshadow_members()["docker"] == {"alice"}


def test_gpasswd_lock_held_for_good_fails_within_a_few_seconds(root, holder):
    accounts = accounts_for(Paths.for_root(root))
    (root / "etc" / "group.lock").write_text(str(holder.pid))
    started = time.monotonic()
    with pytest.raises(JitError, match="cannot lock"):
        accounts.add("alice", "docker")
    assert time.monotonic() - started < sum(LOCK_RETRY_WAITS) + 2


def test_gpasswd_lock_of_a_dead_pid_is_no_obstacle(root):
    """What gpasswd itself does (measured): a lock naming a dead pid is stale and removed."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    (root / "etc" / "group.lock").write_text(str(dead.pid))
    accounts_for(Paths.for_root(root)).add("alice", "docker")
    assert accounts_for(Paths.for_root(root)).group_file_members()["docker"] == {"alice"}
