"""Carrying out the setgid walks ended group grants owe (hostd/server/setgid.py).

The walk is owed from the moment the grant ends: `Store.end_grant` writes a
`setgid_walks` row in the same transaction as the end (like `pending_endings`). This
driver runs the owed walks in a thread of its own, never the loop nor the ordered
worker (a walk of a large disk takes minutes), with that thread at idle I/O priority
(ioprio_set IOPRIO_CLASS_IDLE) and nice 19, so a walk yields to every other disk and
CPU user. All owed walks go in one pass (each file is checked against every target),
bounded by WALK_BOUND seconds; the position reached is saved in the row at least every
SAVE_EVERY seconds, so a walk cut short (the bound, hostd stopping or killed) goes on
from there at the next start or the next grant's end. A walk waits for its grant's
process ending (`follow`): a process still holding the group could set the bit again.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from hostd.policy import mounts
from hostd.server import setgid
from hostd.state.journal import Events
from hostd.state.store import Store

log = logging.getLogger("jit-hostd")

WALK_BOUND = 600.0  # seconds one pass may take before it stops and says so
SAVE_EVERY = 1.0  # seconds between progress writes (each is a synced commit)
MAX_NAMED = 20  # directories named in an event about a walk left incomplete
IOPRIO_CLASS_IDLE, IOPRIO_CLASS_SHIFT, IOPRIO_WHO_PROCESS = 3, 13, 1
SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314,
                  "ppc64le": 273, "s390x": 282, "riscv64": 30}


def idle_priority() -> bool:
    """Put the calling thread (who=0 names it) in the idle I/O class and at nice 19;
    True if the I/O class was set. Per thread: the rest of hostd is unaffected."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    number = SYS_IOPRIO_SET.get(platform.machine())
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.syscall(number, IOPRIO_WHO_PROCESS, 0,
                        IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) == 0


def read_mounts(proc_root: Path) -> list[mounts.Mount] | None:
    """The mount table of PID 1: the system's, which hostd's own (ProtectHome,
    PrivateTmp) hides parts of; None if unreadable."""
    try:
        return mounts.parse_mountinfo((proc_root / "1" / "mountinfo").read_text(
            errors="surrogateescape"))
    except OSError:
        return None


def mount_points(proc_root: Path) -> tuple[list[str], frozenset[str]]:
    """(mount points to walk, every mount point): the second keeps each walk on its own
    mount, where the st_dev check alone would let a bind mount of the same filesystem in."""
    table = read_mounts(proc_root)
    if table is None:
        return [], frozenset()
    return [m.point for m in mounts.effective(table)], frozenset(m.point for m in table)


class SetgidWalks:
    """The owed walks of one hostd; `kick` after a grant's end and at start."""

    def __init__(self, db_path: Path, events: Events,
                 mounts: Callable[[], tuple[list[str], frozenset[str]]],
                 is_member: Callable[[str, str], bool], bound: float = WALK_BOUND,
                 clock: Callable[[], float] = time.monotonic,
                 unit: str | None = None) -> None:
        self.db_path, self.events, self.mounts, self.is_member = (
            db_path, events, mounts, is_member)
        self.bound, self.clock = bound, clock
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-setgid")
        self._lock = threading.Lock()
        self._queued = False
        self._closing = False
        self._waiting: set[str] = set()
        self._store: Store | None = None
        self._prioritised = False
        self.unit = unit  # production: the walk is this unit's (`start_unit`)

    def follow(self, grant_id: str, task) -> None:
        """Walk for `grant_id` once `task` (its process ending, a future) is done."""
        self._waiting.add(grant_id)

        def done(_task) -> None:
            self._waiting.discard(grant_id)
            self.kick()

        task.add_done_callback(done)

    def kick(self) -> Future | None:
        """A pass over every owed walk not waiting; one queued at a time is enough."""
        with self._lock:
            if self._queued or self._closing:
                return None
            self._queued = True
        return self.pool.submit(self._start_unit if self.unit else self._drain_logged)

    def _start_unit(self) -> int:
        """Start the walk unit when a walk is owed (systemctl, off the loop); the unit
        walks until none is owed. `--no-block`: the unit runs for minutes."""
        with self._lock:
            self._queued = False
        if self._store is None:
            self._store = Store(self.db_path)
        if not self._store.setgid_walks():
            return 0
        try:
            subprocess.run(["systemctl", "start", "--no-block", self.unit], check=True,
                           capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("could not start %s, setgid walks wait for the next try: %s",
                        self.unit, exc)
        return 0

    def owed(self) -> list[dict]:
        if self._store is None:
            self._store = Store(self.db_path)
        return self._store.setgid_walks()

    def close(self) -> None:
        """Stop: a running pass notices within a directory and saves where it was."""
        self._closing = True
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _drain_logged(self) -> int:
        try:
            return self.drain()
        except Exception:
            log.exception("setgid walk failed; it is tried again at the next grant's end "
                          "or start")
            return 0

    def drain(self) -> int:
        """One pass (in the thread): returns the number of setgid bits cleared."""
        with self._lock:
            self._queued = False
        if not self._prioritised:
            self._prioritised = True
            if not idle_priority():  # the unit's IOSchedulingClass=idle has it anyway
                log.info("setgid walk: ioprio_set refused on %s", platform.machine())
        if self._store is None:
            self._store = Store(self.db_path)
        store = self._store
        rows = [r for r in store.setgid_walks() if r["grant_id"] not in self._waiting]
        targets = []
        for r in rows:
            gids = {gid: name for name, gid in r["gids"]
                    if not self.is_member(r["user"], name)}  # given back since: not owed
            if gids:
                targets.append((setgid.Target(r["grant_id"], r["uid"], r["user"], gids,
                                              r["since"]), r["position"]))
            else:
                store.forget_walk(r["grant_id"])
        if not targets:
            return 0
        return self._pass(store, targets)

    def _pass(self, store: Store, owed: list[tuple[setgid.Target, tuple[str, str]]]) -> int:
        ids = [t.grant_id for t, _ in owed]
        after = min(pos for _, pos in owed)  # the least advanced: the others redo a bit
        points, every = self.mounts()
        if not points:  # no mount table: nothing was walked, so nothing is done
            self._incomplete(owed, "no mount to walk (the mount table could not be read)",
                             [])
            return 0
        deadline = self.clock() + self.bound
        saved = [self.clock()]

        def progress(pos: tuple[str, str]) -> None:
            if pos[1] == setgid.DONE or self.clock() - saved[0] >= SAVE_EVERY:
                store.walk_progress(ids, pos)
                saved[0] = self.clock()

        walk = setgid.Walk([t for t, _ in owed], self._found,
                           lambda: self._closing or self.clock() > deadline, progress)
        finished = True
        for point in points:  # each mount walked apart; the others are not entered
            walk.skip = every - {point}
            if not walk.run([point], after):
                finished = False
                break
        if walk.too_deep:
            self._incomplete(owed, f"{len(walk.too_deep)} directories deeper than "
                             f"{setgid.MAX_DEPTH} levels were not walked",
                             walk.too_deep)
        if finished:
            for grant_id in ids:
                store.forget_walk(grant_id)
        elif not self._closing:
            self._incomplete(owed, f"the walk stopped after {self.bound:.0f} s (the "
                             "bound); it goes on from where it stopped at the next "
                             "grant's end or hostd start", [])
        return walk.cleared

    def _found(self, path: str, mode: int, t: setgid.Target) -> None:
        group = ", ".join(sorted(t.gids.values()))
        self.events.emit(
            "privilege_residue", f"setgid bit cleared on {path} (mode {mode:05o}, group "
            f"{group}): grant {t.grant_id} of {t.user} ended", user=t.user, uid=t.uid,
            grant_id=t.grant_id, groups=sorted(t.gids.values()), decision="cleared",
            path=path, mode=f"{mode:05o}", count=1)

    def _incomplete(self, owed: list[tuple[setgid.Target, tuple[str, str]]], why: str,
                    dirs: list[str]) -> None:
        users = sorted({t.user for t, _ in owed})
        self.events.emit(
            "privilege_residue", f"setgid walk incomplete for grants "
            f"{', '.join(t.grant_id for t, _ in owed)}: {why}", user=", ".join(users),
            grant_id=owed[0][0].grant_id, decision="incomplete", reason=why,
            groups=sorted({n for t, _ in owed for n in t.gids.values()}),
            path="; ".join(dirs[:MAX_NAMED]), count=len(dirs) or None)


UNIT = "jit-setgid-walk.service"


def for_server(db_path: Path, events: Events, proc_root: Path, sandbox_root: Path | None,
               is_member: Callable[[str, str], bool]) -> SetgidWalks:
    """The walks of a daemon. Production: UNIT does them (`jit-hostd --setgid-walk`):
    hostd's own unit may neither see /home and /tmp (ProtectHome, PrivateTmp) nor
    chmod others' files, and should not. Under --root: in a thread of hostd, over the
    sandbox alone (a sandbox hostd never walks the host)."""
    if sandbox_root is not None:
        return SetgidWalks(db_path, events, lambda: ([str(sandbox_root)], frozenset()),
                           is_member)
    return SetgidWalks(db_path, events, lambda: mount_points(proc_root), is_member,
                       unit=UNIT)


def walk_owed(db_path: Path, events: Events, proc_root: Path,
              is_member: Callable[[str, str], bool]) -> int:
    """`jit-hostd --setgid-walk` (UNIT): walk until no walk is owed or a pass ends
    incomplete (the bound; the next start of the unit goes on). Returns bits cleared."""
    walks = SetgidWalks(db_path, events, lambda: mount_points(proc_root), is_member)
    cleared = 0
    try:
        while True:
            before = len(walks.owed())
            cleared += walks.drain()
            after = len(walks.owed())
            if not after or after >= before:
                return cleared
    finally:
        walks.close()


def warn_exposed(events: Events, proc_root: Path) -> list[tuple[str, str]]:
    """At start: one warning event naming the user-writable places where set-id bits
    take effect (none when all are nosuid)."""
    table = read_mounts(proc_root)
    if table is None:
        return []
    found = mounts.exposed(table)
    if found:
        events.emit("privilege_residue", mounts.exposure_text(found), decision="exposed",
                    path="; ".join(p for p, _ in found), count=len(found))
    return found

