"""An open file survives the grant (issue 17, item 2): a descriptor opened while the
group was held, passed to a process that never held it, still reads the group-only
file; so does a stream connected to a group-guarded socket. The /proc pass now finds
such descriptors: their holders are ended (terminate-sessions) or named
(keep-sessions). Real processes (setpriv), the real /proc and sock_diag."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest
from fakes import FakeTimers
from test_core import World

from hostd.core.effects import EndSessions
from hostd.paths import Paths
from hostd.server import residue_fds
from hostd.server.connections import Server

PROC = Path("/proc")
UID, GID = 47210, 47211  # the holder's uid; the group-only file's group (nothing holds it)


def holder(fds: list[int], uid: int = UID) -> subprocess.Popen:
    """A process of `uid` with no group but its own, keeping `fds` open."""
    return subprocess.Popen(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "600"],
        pass_fds=fds, close_fds=True)


def running(p: subprocess.Popen) -> int:
    """Wait until setpriv has become sleep (its credentials are the holder's)."""
    while True:
        status = (PROC / str(p.pid) / "status").read_text()
        if f"Uid:\t{UID}" in status and (PROC / str(p.pid) / "comm").read_text() == "sleep\n":
            return p.pid
        assert p.poll() is None, "the holder died"


@pytest.fixture
def secret(tmp_path):
    f = tmp_path / "secret"
    f.write_text("jitops only\n")
    os.chown(f, 0, GID)
    os.chmod(f, 0o640)
    tmp_path.chmod(0o755)
    return f


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_a_file_descriptor_passed_to_a_process_that_never_held_the_group_is_found(
        secret, procs):
    fd = os.open(secret, os.O_RDONLY)
    procs.append(holder([fd]))
    os.close(fd)
    pid = running(procs[0])
    creds, held = residue_fds.scan(PROC, UID, {GID})
    assert creds == []
    (h,) = [h for h in held if h.pid == pid]
    assert (h.fd, h.what, h.gid) == (fd, str(secret), GID)


def test_a_descriptor_others_may_use_anyway_is_not_residue(secret, tmp_path, procs):
    public = tmp_path / "public"
    public.write_text("x")
    os.chown(public, 0, GID)
    os.chmod(public, 0o644)
    fds = [os.open(public, os.O_RDONLY), os.open(secret, os.O_PATH)]
    procs.append(holder(fds))
    for fd in fds:
        os.close(fd)
    pid = running(procs[0])
    assert [h for h in residue_fds.scan(PROC, UID, {GID})[1] if h.pid == pid] == []


def test_a_stream_connected_to_a_group_guarded_socket_is_found(tmp_path, procs):
    path = tmp_path / "docker.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen()
    os.chown(path, 0, GID)
    os.chmod(path, 0o660)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))
    conn, _ = srv.accept()
    try:
        procs.append(holder([client.fileno()]))
        client.close()
        pid = running(procs[0])
        held = [h for h in residue_fds.scan(PROC, UID, {GID})[1] if h.pid == pid]
        assert [(h.what, h.gid) for h in held] == [(f"socket to {path}", GID)]
    finally:
        conn.close()
        srv.close()


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    (tmp_path / "proc").symlink_to(PROC)  # the sandbox's /proc is the real one
    world.server = Server(world.core, FakeTimers(), paths=Paths.for_root(tmp_path))
    yield world
    world.server.close()
    world.store.close()


def end(w, mode: str) -> None:
    e = EndSessions("g" * 12, UID, "holder", "grp", (("jitops", GID),), mode, "expired",
                    "hostd")
    asyncio.run(w.server.ending._end(e))


def test_the_holder_of_a_residue_descriptor_is_ended_under_terminate_sessions(
        w, secret, procs):
    fd = os.open(secret, os.O_RDONLY)
    procs.append(holder([fd]))
    os.close(fd)
    pid = running(procs[0])
    end(w, "terminate-sessions")
    assert procs[0].wait(timeout=30) in (-15, -9)
    (ev,) = w.events("session_terminated")
    assert ev["JIT_PIDS"] == str(pid) and f"fd {fd} {secret} (jitops)" in ev["JIT_PROCESSES"]


def test_the_holder_is_named_and_left_running_under_keep_sessions(w, secret, procs):
    fd = os.open(secret, os.O_RDONLY)
    procs.append(holder([fd]))
    os.close(fd)
    pid = running(procs[0])
    end(w, "keep-sessions")
    assert procs[0].poll() is None
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_DECISION"] == "kept" and ev["JIT_PIDS"] == str(pid)
    assert f"fd {fd} {secret}" in ev["JIT_PROCESSES"]


# root's and system accounts' processes: looked at in the user's slice, named, never ended

SLICE = f"0::/user.slice/user-{UID}.slice/session-4.scope\n"


def fake_proc(root: Path, pid: int, owner: int, uids: int, cgroup: str,
              target: Path) -> None:
    """/proc/PID as hostd reads it, for a real (sleeping) pid: status, cgroup, stat,
    and descriptor 7 a link to `target` opened read-only (fdinfo)."""
    d = root / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "fdinfo").mkdir()
    (d / "status").write_text(f"Name:\tsleep\nUid:\t{uids}\t{uids}\t{uids}\t{uids}\n"
                              f"Gid:\t{uids}\t{uids}\t{uids}\t{uids}\nGroups:\t\n")
    (d / "cgroup").write_text(cgroup)
    (d / "stat").write_text(f"{pid} (sleep) S 1\n")
    (d / "cmdline").write_bytes(b"sleep\x00600\x00")
    (d / "fd" / "7").symlink_to(target)
    (d / "fdinfo" / "7").write_text("pos:\t0\nflags:\t0100000\n")
    os.chown(d, owner, owner)


@pytest.fixture
def tree(tmp_path, secret, procs):
    """Four real sleeps under a fake proc: a system account's in the user's slice,
    one in a daemon's, root's in the slice, a login account's; each 'holds' the secret."""
    proc = tmp_path / "fakeproc"
    shapes = [(999, 999, SLICE), (998, 998, "0::/system.slice/dbus.service\n"),
              (0, 0, SLICE), (47300, 47300, "0::/user.slice/user-47300.slice/x\n")]
    pids = []
    for owner, uids, cgroup in shapes:
        procs.append(subprocess.Popen(["sleep", "600"]))
        pids.append(procs[-1].pid)
        fake_proc(proc, pids[-1], owner, uids, cgroup, secret)
    return proc, pids


def test_privileged_holders_are_looked_at_only_in_the_users_slice(tree):
    proc, (system, daemon, root, login) = tree
    _, held = residue_fds.scan(proc, UID, {GID}, peers=list)
    kinds = {h.pid: h.kind for h in held}
    assert kinds == {system: residue_fds.PRIVILEGED, root: residue_fds.PRIVILEGED,
                     login: residue_fds.LOGIN}, kinds
    assert daemon not in kinds


def test_privileged_holders_are_named_not_ended(tmp_path, config, host, mint, tree, procs):
    proc, (system, _, root, login) = tree
    world = World(tmp_path, config, host, mint)
    (tmp_path / "proc").symlink_to(proc)
    world.server = Server(world.core, FakeTimers(), paths=Paths.for_root(tmp_path))
    try:
        end(world, "terminate-sessions")
        (named,) = world.events("privilege_residue")
        assert named["JIT_DECISION"] == "named"
        assert named["JIT_PIDS"] == ",".join(str(p) for p in sorted((system, root)))
        (ended,) = world.events("session_terminated")
        assert ended["JIT_PIDS"] == str(login)
        assert procs[3].wait(timeout=30) in (-15, -9)
        assert [p.poll() for p in procs[:3]] == [None, None, None]
    finally:
        world.server.close()
        world.store.close()


def test_a_login_accounts_process_that_is_not_dumpable_is_still_looked_at(
        tmp_path, secret, procs):
    """/proc/PID is root's when the process is not dumpable (prctl PR_SET_DUMPABLE 0):
    its status still says a login account's, so hiding that way does not work."""
    proc = tmp_path / "fakeproc"
    procs.append(subprocess.Popen(["sleep", "600"]))
    fake_proc(proc, procs[-1].pid, 0, 47300, "0::/user.slice/user-47300.slice/x\n", secret)
    _, held = residue_fds.scan(proc, UID, {GID}, peers=list)
    assert [(h.pid, h.kind, h.fsuid) for h in held] == [
        (procs[-1].pid, residue_fds.LOGIN, 47300)]


def test_the_slice_is_read_from_the_unified_hierarchy_when_there_is_one(tmp_path, tree):
    """A few cgroup.procs files instead of one /proc/PID/cgroup per process: here the
    per-process files say otherwise, so only the hierarchy can have put them in."""
    proc, (_, daemon, _, login) = tree
    cg = tmp_path / "sys" / "fs" / "cgroup"
    scope = cg / "user.slice" / f"user-{UID}.slice" / "session-9.scope"
    scope.mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("cpu memory\n")
    (scope / "cgroup.procs").write_text(f"{daemon}\n")
    (scope.parent / "cgroup.procs").write_text("")  # every cgroup has one
    assert residue_fds.slice_pids(cg, UID) == frozenset({daemon})
    _, held = residue_fds.scan(proc, UID, {GID}, peers=list)
    assert {h.pid: h.kind for h in held} == {daemon: residue_fds.PRIVILEGED,
                                             login: residue_fds.LOGIN}
    assert residue_fds.slice_pids(tmp_path / "none", UID) is None  # then per process


def test_a_slice_that_cannot_be_listed_falls_back_to_each_process(tmp_path):
    cg = tmp_path / "cgroup"
    (cg / "user.slice").mkdir(parents=True)
    (cg / "cgroup.controllers").write_text("")
    assert residue_fds.slice_pids(cg, UID) == frozenset()  # no session: nobody there
    top = cg / "user.slice" / f"user-{UID}.slice"
    top.mkdir()
    (top / "cgroup.procs").write_text("")
    (top / "x.scope").mkdir()
    (top / "x.scope" / "cgroup.procs").mkdir()  # unreadable as a file (EISDIR)
    assert residue_fds.slice_pids(cg, UID) is None
