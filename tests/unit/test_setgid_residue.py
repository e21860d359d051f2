"""A granted group outlives its grant through a setgid file (issue 17, item 1): at a
grant's end hostd clears the setgid bit of the files that are residue of it, logs one
privilege_residue event per file, and a walk cut short goes on at the next start."""

from __future__ import annotations

import asyncio
import ctypes
import os
import platform
import sqlite3
import stat
import threading
import time

import pytest
from fakes import FakeTimers
from test_core import HOUR, World

from hostd.paths import Paths
from hostd.policy import mounts
from hostd.server import setgid, setgid_walks
from hostd.server.connections import Server
from hostd.state.store import MIGRATIONS, Store

DOCKER = 2003  # FakeAccounts.gid_of("docker")
OTHER = 2004  # staff: a group no grant here gives


def make(path, uid: int, gid: int, mode: int) -> os.PathLike:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!/bin/sh\n")
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def walk(root, targets, stop=lambda: False):
    found: list[tuple[str, int, str]] = []
    w = setgid.Walk(targets, lambda p, m, t: found.append((p, m, t.grant_id)), stop,
                    lambda pos: None)
    return w, w.run([str(root)]), found


# --- the walk ------------------------------------------------------------------------------

def test_the_users_setgid_file_of_a_taken_group_loses_that_bit_and_nothing_else(tmp_path):
    sg = make(tmp_path / "home/alice/deep/er/sgbash", 1000, DOCKER, 0o6755)
    target = setgid.Target("g1", 1000, "alice", {DOCKER: "docker"}, int(time.time()) + HOUR)
    _, done, found = walk(tmp_path, [target])
    assert done
    assert mode(sg) == 0o4755, "setgid cleared, setuid and the rest kept"
    assert found == [(f"{tmp_path}/home/alice/deep/er/sgbash", 0o6755, "g1")]


def test_other_files_are_left_alone(tmp_path):
    since = int(time.time()) + HOUR  # every file here is older than the grant
    keep = [make(tmp_path / "a/other-group", 1000, OTHER, 0o2755),
            make(tmp_path / "a/bobs-older", 1001, DOCKER, 0o2755),
            make(tmp_path / "a/not-setgid", 1000, DOCKER, 0o755)]
    os.symlink(keep[1], tmp_path / "a/link")
    before = [mode(p) for p in keep]
    _, done, found = walk(tmp_path, [setgid.Target("g1", 1000, "alice",
                                                   {DOCKER: "docker"}, since)])
    assert done and found == []
    assert [mode(p) for p in keep] == before


def test_a_file_of_the_group_handed_to_another_owner_during_the_grant_is_residue(tmp_path):
    roots = make(tmp_path / "srv/x", 0, DOCKER, 0o2755)
    since = int(os.lstat(roots).st_ctime) - 1
    _, _, found = walk(tmp_path, [setgid.Target("g1", 1000, "alice", {DOCKER: "docker"},
                                                since)])
    assert mode(roots) == 0o755
    assert [f[0] for f in found] == [f"{tmp_path}/srv/x"]


def test_a_file_swapped_after_it_was_seen_is_not_changed(tmp_path):
    a = make(tmp_path / "a", 1000, DOCKER, 0o2755)
    seen = os.lstat(a)
    os.rename(a, tmp_path / "old")
    make(tmp_path / "a", 1000, DOCKER, 0o2755)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        target = setgid.Target("g1", 1000, "alice", {DOCKER: "docker"}, 0)
        assert setgid.clear(fd, "a", seen, [target]) is None
    finally:
        os.close(fd)
    assert mode(tmp_path / "a") == 0o2755


def test_a_stopped_walk_reports_where_it_was_and_resumes_after_it(tmp_path):
    first = make(tmp_path / "a/f", 1000, DOCKER, 0o2755)
    second = make(tmp_path / "b/f", 1000, DOCKER, 0o2755)
    target = setgid.Target("g1", 1000, "alice", {DOCKER: "docker"}, 0)
    positions: list[tuple[str, str]] = []
    w = setgid.Walk([target], lambda *a: None, lambda: mode(first) == 0o755,
                    positions.append)  # stops as soon as "a" is done
    assert not w.run([str(tmp_path)])
    assert positions == [(str(tmp_path), "a")]
    assert mode(first) == 0o755 and mode(second) == 0o2755
    found: list[str] = []
    w2 = setgid.Walk([target], lambda p, m, t: found.append(p), lambda: False,
                     positions.append)
    assert w2.run([str(tmp_path)], positions[-1])
    assert mode(second) == 0o755 and found == [f"{tmp_path}/b/f"]
    assert positions[-1] == (str(tmp_path), setgid.DONE)


# --- mounts --------------------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /proc rw,nosuid,nodev,noexec shared:2 - proc proc rw
24 22 0:30 / /tmp rw,nosuid,nodev shared:3 - tmpfs tmpfs rw
25 22 8:2 / /home rw,relatime shared:4 - ext4 /dev/sda2 rw
26 22 8:2 /alice /mnt/alice\\040home rw,relatime shared:5 - ext4 /dev/sda2 rw
27 22 8:3 / /usr ro,relatime shared:6 - ext4 /dev/sda3 ro
28 22 8:2 / /srv/home rw,relatime shared:7 - ext4 /dev/sda2 rw
"""


def test_only_mounts_where_set_id_bits_take_effect_are_walked_each_once():
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert [m.point for m in mounts.effective(table)] == ["/", "/home", "/mnt/alice home"]


def test_user_writable_places_that_honour_set_id_bits_are_named():
    table = mounts.parse_mountinfo(MOUNTINFO)
    found = mounts.exposed(table, ("/home", "/tmp", "/var/tmp"), lambda p: True)
    assert found == [("/home", "/home"), ("/var/tmp", "/")]
    assert "nosuid" in mounts.exposure_text(found)


def test_hostd_start_warns_once_about_exposed_places_from_pid_1s_mount_table(tmp_path):
    """The start-up warning reads PID 1's mount table under the proc root (it crashed
    hostd's start once: a local name shadowed the mounts module)."""
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/1/mountinfo").write_text(MOUNTINFO)
    emitted: list[tuple[str, str, dict]] = []

    class Recorder:
        def emit(self, event: str, message: str, **fields: object) -> None:
            emitted.append((event, message, fields))

    found = setgid_walks.warn_exposed(Recorder(), tmp_path / "proc")
    assert ("/var/tmp", "/") in found and not any(p == "/tmp" for p, _ in found)
    ((event, message, fields),) = emitted
    assert event == "privilege_residue" and fields["decision"] == "exposed"
    assert "/var/tmp" in fields["path"] and "nosuid" in message
    assert setgid_walks.warn_exposed(Recorder(), tmp_path / "nowhere") == []
    assert len(emitted) == 1


# --- the store and the driver --------------------------------------------------------------

@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    walks = setgid_walks.for_server(
        tmp_path / "state.db", world.core.events, tmp_path / "proc", tmp_path / "fs",
        world.accounts.is_member)
    world.server = Server(world.core, FakeTimers(), paths=Paths.for_root(tmp_path),
                          setgid_walks=walks)
    yield world
    world.server.setgid_walks.close()
    world.server.close()
    world.store.close()


def end_and_walk(w, effects) -> None:
    async def go() -> None:
        await w.server.carry_out(effects)
        while w.server.ending._ending_tasks:
            await asyncio.gather(*w.server.ending._ending_tasks)
    asyncio.run(go())
    w.server.setgid_walks.pool.submit(lambda: None).result()  # the walk queued, done


def test_a_setgid_file_made_during_a_group_grant_loses_the_bit_at_its_expiry(w, tmp_path):
    sg = make(tmp_path / "fs/home/alice/sgbash", 1000, DOCKER, 0o2755)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.take_effects()
    w.clock.t += HOUR
    assert w.core.expire(g["id"])
    assert [r["grant_id"] for r in w.store.setgid_walks()] == [g["id"]]
    end_and_walk(w, w.core.take_effects())
    assert mode(sg) == 0o755
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_PATH"] == f"{tmp_path}/fs/home/alice/sgbash"
    assert (ev["JIT_MODE"], ev["JIT_GROUPS"], ev["JIT_DECISION"]) == (
        "02755", "docker", "cleared")
    assert ev["JIT_GRANT_ID"] == g["id"] and ev["JIT_USER"] == "alice"
    assert w.store.setgid_walks() == [], "walked: not owed any more"


def test_a_walk_cut_short_by_a_killed_hostd_is_finished_at_the_next_start(w, tmp_path):
    sg = make(tmp_path / "fs/home/alice/sgbash", 1000, DOCKER, 0o2755)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    w.store.walk_progress([g["id"]], (f"{tmp_path}/fs", "etc"))  # got that far, killed
    again = setgid_walks.for_server(tmp_path / "state.db", w.core.events, tmp_path / "proc",
                                    tmp_path / "fs", w.accounts.is_member)
    try:
        assert again.kick().result() == 1
    finally:
        again.close()
    assert mode(sg) == 0o755 and w.store.setgid_walks() == []


def test_a_walk_over_its_time_bound_says_so_and_stays_owed(w, tmp_path):
    make(tmp_path / "fs/home/alice/sgbash", 1000, DOCKER, 0o2755)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    slow = setgid_walks.SetgidWalks(tmp_path / "state.db", w.core.events,
                                    lambda: ([f"{tmp_path}/fs"], frozenset()),
                                    w.accounts.is_member, bound=-1.0)
    try:
        assert slow.kick().result() == 0
    finally:
        slow.close()
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_DECISION"] == "incomplete" and "bound" in ev["MESSAGE"]
    assert [r["grant_id"] for r in w.store.setgid_walks()] == [g["id"]]


def test_a_group_given_back_since_is_not_walked_for(w, tmp_path):
    sg = make(tmp_path / "fs/home/alice/sgbash", 1000, DOCKER, 0o2755)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    w.accounts.members["docker"].add("alice")  # a standing member now
    assert w.server.setgid_walks.kick().result() == 0
    assert mode(sg) == 0o2755 and w.store.setgid_walks() == []


def test_a_version_4_database_gains_the_walks_table(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 4")
    db.close()
    store = Store(path)
    try:
        assert store.schema_version == len(MIGRATIONS) and store.setgid_walks() == []
    finally:
        store.close()


SYS_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


@pytest.mark.skipif(platform.machine() not in SYS_IOPRIO_GET, reason="syscall number")
def test_the_walking_thread_runs_at_idle_io_priority():
    got: list[int] = []

    def body() -> None:
        assert setgid_walks.idle_priority()
        libc = ctypes.CDLL(None, use_errno=True)
        got.append(libc.syscall(SYS_IOPRIO_GET[platform.machine()], 1, 0))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert got and got[0] >> 13 == 3  # IOPRIO_CLASS_IDLE


def test_check_config_names_the_exposed_places_from_the_roots_mount_table(tmp_path):
    from hostd.cli import main as cli
    from hostd.paths import Paths

    assert cli._setgid_exposure(Paths(tmp_path)) == [], "a sandbox has no mount table"
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    found = cli._setgid_exposure(Paths(tmp_path))
    assert ("/home", "/home") in found and not [p for p, _ in found if p == "/tmp"]


def test_without_a_mount_table_the_walk_is_not_taken_as_done(w, tmp_path):
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    blind = setgid_walks.SetgidWalks(tmp_path / "state.db", w.core.events,
                                     lambda: setgid_walks.mount_points(tmp_path / "none"),
                                     w.accounts.is_member)
    try:
        assert blind.kick().result() == 0
    finally:
        blind.close()
    assert [r["grant_id"] for r in w.store.setgid_walks()] == [g["id"]]
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_DECISION"] == "incomplete" and "mount table" in ev["MESSAGE"]


def test_the_walk_unit_clears_what_every_ended_grant_owes_and_leaves_none_owed(w, tmp_path):
    """`jit-hostd --setgid-walk` (setgid_walks.walk_owed): mounts from PID 1's table."""
    sg = make(tmp_path / "fs/home/alice/sgbash", 1000, DOCKER, 0o2755)
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/1/mountinfo").write_text(
        f"30 1 8:9 / {tmp_path}/fs rw,relatime shared:1 - ext4 /dev/sdz rw\n"
        f"31 1 8:10 / {tmp_path}/other rw,nosuid shared:2 - ext4 /dev/sdy rw\n")
    cleared = setgid_walks.walk_owed(tmp_path / "state.db", w.core.events,
                                     tmp_path / "proc", w.accounts.is_member)
    assert cleared == 1 and mode(sg) == 0o755 and w.store.setgid_walks() == []


def test_hostd_start_names_the_exposed_places_from_pid_1s_mount_table(w, tmp_path):
    """setgid_walks.warn_exposed, as build_server calls it at every start (a local name
    once hid the mounts module there: hostd could not start on a real host)."""
    assert setgid_walks.warn_exposed(w.core.events, tmp_path / "proc") == []
    (tmp_path / "proc/1").mkdir(parents=True)
    (tmp_path / "proc/1/mountinfo").write_text(MOUNTINFO)
    found = setgid_walks.warn_exposed(w.core.events, tmp_path / "proc")
    assert ("/home", "/home") in found
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_DECISION"] == "exposed" and "/home" in ev["JIT_PATH"]
