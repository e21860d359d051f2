"""Open descriptors that keep a group's access after the grant that gave the group.

A file is checked for access when it is opened, never again: a descriptor opened while
alice held `jitops` reads a root:jitops 0640 file for as long as it stays open, in her
process or in any process she passed it to (SCM_RIGHTS, or inherited across `su`). The
same for a Unix stream socket connected to a group-guarded socket file
(/var/run/docker.sock root:docker 0660). The /proc pass (residue.py) looks at
credentials; this extends it, in the same walk over /proc, to descriptors.

A descriptor is residue of the taken groups `gids` when
- its file's group is among `gids`, the access it was opened for (read and/or write,
  from the flags in /proc/PID/fdinfo/N; O_PATH needs none) is not all given to others
  by the file's mode, and the holder is neither the file's owner (fsuid) nor holds the
  group now (its credentials); or
- it is a Unix socket whose peer is bound to a path whose file is of a group among
  `gids` without write for others (connect(2) needs write), on the same terms. The
  peer and its path come from sock_diag (pyroute2), one dump per pass.
Holders looked at: the user's own processes, and those of every other login account
(uid >= LOGIN_UID_MIN, not nobody): a descriptor passed on lands in a process the user
can run code in; both are ended under terminate-sessions. Root's and system accounts'
processes are looked at only in the user's own slice (user-UID.slice: a setuid program
they started, su, sudo), and only named (decision `named`), never signalled; system
daemons elsewhere are not looked at (DESIGN §13 "Descriptor pass: cost and reach").
The owner exemption does not hold for root (it owns nothing less for being root).

Per process, /proc/PID's owner (one stat: the euid, root when not dumpable) says
whether to look; a status is read only for the user's and root-owned processes or at
a holder's first descriptor of a taken group. Each descriptor costs one stat(2)
through /proc/PID/fd/N; fdinfo and readlink only for the few that match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hostd.events import carried
from hostd.server import residue

log = logging.getLogger("jit-hostd")

LOGIN_UID_MIN = 1000  # Debian's UID_MIN: below are system accounts
NOBODY = 65534
O_PATH = 0o10000000
R, W = 4, 2


@dataclass(frozen=True)
class Held:
    pid: int
    fsuid: int
    fd: int
    what: str  # the file's path, or "socket to PATH"
    gid: int
    ident: tuple[int, int]  # st_dev, st_ino of what the descriptor names
    command: str
    kind: str = "login"  # MINE and LOGIN holders are ended; PRIVILEGED ones only named


Sockets = dict[int, tuple[str, int, int]]  # socket inode -> (peer path, its uid, gid)


def unix_peers() -> list[tuple[int, str | None, int | None]]:
    """(inode, bound name, peer inode) of every Unix socket in hostd's network
    namespace, through sock_diag; [] when pyroute2 or the kernel cannot say."""
    try:
        from pyroute2 import DiagSocket
        from pyroute2.netlink.diag import UDIAG_SHOW_NAME, UDIAG_SHOW_PEER
    except ImportError:
        log.warning("pyroute2 missing: sockets are not looked at for residue")
        return []
    try:
        with DiagSocket() as ds:
            ds.bind()
            msgs = ds.get_sock_stats(show=UDIAG_SHOW_NAME | UDIAG_SHOW_PEER)
    except Exception as exc:  # netlink refused (no sock_diag module): say so, go on
        log.warning("sock_diag failed, sockets are not looked at for residue: %s", exc)
        return []
    return [(m["udiag_ino"], m.get_attr("UNIX_DIAG_NAME"), m.get_attr("UNIX_DIAG_PEER"))
            for m in msgs]


def guarded_sockets(gids: frozenset[int],
                    peers: Callable[[], list] = unix_peers) -> Sockets:
    """Sockets connected to a path-bound socket whose file needs a group in `gids`."""
    found = peers()
    names = {ino: name for ino, name, _ in found if name}
    files: dict[str, os.stat_result | None] = {}
    out: Sockets = {}
    for ino, _, peer in found:
        name = names.get(peer) if peer else None
        if not name or not name.startswith("/"):  # abstract or relative: no file mode
            continue
        if name not in files:
            try:
                files[name] = os.stat(name)
            except OSError:
                files[name] = None
        st = files[name]
        if st is not None and st.st_gid in gids and not st.st_mode & W:
            out[ino] = (name, st.st_uid, st.st_gid)
    return out


def needed(proc_root: Path, pid: int, fd: int) -> int:
    """The permission bits the descriptor was opened with (R, W), from fdinfo flags."""
    raw = residue._read(proc_root / str(pid) / "fdinfo" / str(fd), 4096) or b""
    for line in raw.split(b"\n"):
        if line.startswith(b"flags:"):
            try:
                flags = int(line.split()[1], 8)
            except (IndexError, ValueError):
                return R | W
            if flags & O_PATH:
                return 0
            return {os.O_RDONLY: R, os.O_WRONLY: W}.get(flags & os.O_ACCMODE, R | W)
    return R | W  # unreadable: assume the most (fail closed)


MINE, LOGIN, PRIVILEGED = "mine", "login", "privileged"


def kind_of(uids: tuple[int, ...], uid: int) -> str:
    """Whose the holder is: the user's own (every uid), a login account's (fsuid), or
    privileged (root, a system account): the last are named, never ended."""
    if all(u == uid for u in uids[:4]):
        return MINE
    fsuid = uids[3]
    return LOGIN if fsuid >= LOGIN_UID_MIN and fsuid != NOBODY else PRIVILEGED


def in_user_slice(base: str, pid: str, uid: int) -> bool:
    """The process runs in the user's own cgroup (user-UID.slice: their sessions and
    user@UID.service): a setuid program they started (su, sudo, newgrp) is there, a
    system daemon is not. Only root can move a process out of it."""
    raw = residue._read(f"{base}/{pid}/cgroup", 4096) or b""
    mark = f":/user.slice/user-{uid}.slice/".encode()  # v2 `0::`, v1 `name=systemd:`
    return mark in raw


def slice_pids(cgroup_root: Path, uid: int) -> frozenset[int] | None:
    """Every pid in the user's slice, from the unified hierarchy's cgroup.procs files
    (a few reads, not one /proc/PID/cgroup per process); None without a unified
    hierarchy (v1, a sandbox) or when a file cannot be read: the caller then reads
    each process's cgroup. Called after /proc is listed: a listed process in the
    slice was in it before, and only root moves a process out."""
    if not (cgroup_root / "cgroup.controllers").exists():
        cgroup_root = cgroup_root / "unified"  # the hybrid layout's v2 tree
        if not (cgroup_root / "cgroup.controllers").exists():
            return None
    found: set[int] = set()
    failed: list[OSError] = []
    for at, _, _ in os.walk(cgroup_root / "user.slice" / f"user-{uid}.slice",
                            onerror=failed.append):
        try:
            with open(os.path.join(at, "cgroup.procs"), "rb") as fh:
                found.update(int(p) for p in fh.read().split())
        except FileNotFoundError:  # the cgroup went, with its last process
            continue
        except (OSError, ValueError):
            return None
    if any(not isinstance(e, FileNotFoundError) for e in failed):
        return None  # a directory not listed: its processes would be missed
    return frozenset(found)


Creds = tuple[tuple[int, ...], tuple[int, ...]]  # (uids, groups) as residue.parse_status


def _target(st: os.stat_result, gids: frozenset[int],
            sockets: Sockets) -> tuple[str, int, int] | None:
    """(what, owner uid, gid) of a descriptor whose file or socket peer is of a taken
    group; None for the others (nearly all: no further syscall for them)."""
    if stat.S_ISSOCK(st.st_mode):
        hit = sockets.get(st.st_ino)
        return (f"socket to {hit[0]}", hit[1], hit[2]) if hit else None
    if st.st_gid not in gids:
        return None
    return "", st.st_uid, st.st_gid


def descriptors(proc_root: Path, pid: int, gids: frozenset[int], sockets: Sockets,
                creds: Callable[[], Creds | None]) -> tuple[list[tuple], Creds | None]:
    """(fd, what, gid, ident) of the process's descriptors that are residue, and its
    credentials if they were needed: `creds` is called once, at the first descriptor
    of a taken group (most processes have none, so their status is never read)."""
    base = f"{os.fspath(proc_root)}/{pid}/fd"
    try:
        dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return [], None
    out, have = [], None
    try:
        look = os.stat
        for name in os.listdir(dfd):
            try:
                st = look(name, dir_fd=dfd)  # follows the magic link to the file
            except OSError:
                continue
            if st.st_gid not in gids and st.st_ino not in sockets:
                continue  # nearly every descriptor: a superset test, no call
            found = _target(st, gids, sockets)
            if found is None:
                continue
            have = have or creds()
            if have is None:  # gone
                return [], None
            what, owner, gid = found
            if gid in have[1] or owner == have[0][3] != 0:  # root is named: see scan
                continue
            if not what:
                want = needed(proc_root, pid, int(name))
                if not want & ~st.st_mode & 0o007:  # others have every bit it uses
                    continue
                try:
                    what = os.readlink(name, dir_fd=dfd)
                except OSError:
                    what = "?"
            out.append((int(name), what, gid, (st.st_dev, st.st_ino)))
    finally:
        os.close(dfd)
    return out, have


def _looked_at(base: str, name: str, uid: int,
               pids: frozenset[int] | None) -> tuple[bool, Creds | None]:
    """Whether the process's descriptors are looked at, and its credentials if they
    had to be read to say. /proc/PID's owner is the euid (root when the process is not
    dumpable): a login account's process needs no status read here, a system
    account's is looked at only in the user's slice; the user's and root-owned ones
    are read (a login account's process can make itself not dumpable). `pids`: the
    user's slice (slice_pids), None to read each process's cgroup."""

    def in_slice() -> bool:
        return int(name) in pids if pids is not None else in_user_slice(base, name, uid)

    try:
        owner = os.stat(f"{base}/{name}").st_uid
    except OSError:
        return False, None
    if owner in (uid, 0):
        leader = residue._status(f"{base}/{name}/status")
        if leader is None:
            return False, None
        if kind_of(leader[0], uid) == PRIVILEGED and not in_slice():
            return False, None
        return True, leader
    if owner < LOGIN_UID_MIN or owner == NOBODY:
        return in_slice(), None
    return True, None


def scan(proc_root: Path, uid: int, gids: frozenset[int] | set[int],
         skip: frozenset[int] = frozenset(),
         peers: Callable[[], list] = unix_peers) -> tuple[list[residue.Proc], list[Held]]:
    """One pass over /proc: (the user's processes holding a group, as residue.scan;
    descriptors that are residue, lowest pid first). A status is read at most once,
    and only for the user's and root-owned processes or a holder of a taken group's
    file."""
    if uid == 0 or not gids:
        return [], []
    gids = frozenset(gids)
    sockets = guarded_sockets(gids, peers)
    try:
        names = os.listdir(proc_root)
    except OSError:
        return [], []
    in_slice = slice_pids(proc_root.parent / "sys" / "fs" / "cgroup", uid)  # after
    procs, held = [], []
    base = os.fspath(proc_root)
    for name in names:
        if not name.isdigit() or int(name) in skip:
            continue
        look, leader = _looked_at(base, name, uid, in_slice)
        if not look:
            continue
        pid = int(name)
        if leader is not None and kind_of(leader[0], uid) == MINE:
            p = residue.read_proc(proc_root, pid, uid)
            if p is not None and residue.holds(p, uid, gids) and not residue.zombie(
                    proc_root, pid):
                procs.append(p)
                continue  # ended or named for its credentials already
        if leader is not None and gids <= frozenset(leader[1]):
            continue
        status = f"{base}/{name}/status"
        found, creds = descriptors(proc_root, pid, gids, sockets,
                                   lambda known=leader, at=status: known or residue._status(at))
        for fd, what, gid, ident in found:
            held.append(Held(pid, creds[0][3], fd, what, gid, ident,
                             residue.command_of(proc_root, pid), kind_of(creds[0], uid)))
    return sorted(procs, key=lambda p: p.pid), sorted(held, key=lambda h: (h.pid, h.fd))


def still_held(proc_root: Path, h: Held) -> bool:
    """The descriptor is still open and still names the same file or socket."""
    try:
        st = os.stat(f"{os.fspath(proc_root)}/{h.pid}/fd/{h.fd}")
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == h.ident and not residue.zombie(proc_root, h.pid)


def signal_holder(proc_root: Path, h: Held, signo: int) -> bool:
    """Signal a holder through a pidfd opened before the descriptor is checked again:
    a pid reused in between gets nothing. True if a signal was sent."""
    try:
        pidfd = os.pidfd_open(h.pid)
    except OSError:
        return False
    try:
        if not still_held(proc_root, h):
            return False
        signal.pidfd_send_signal(pidfd, signo)
        return True
    except ProcessLookupError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(pidfd)


def describe(h: Held, names: dict[int, str]) -> str:
    """`PID fd N PATH (group) command` for an event (escaped there)."""
    return f"{h.pid} fd {h.fd} {h.what} ({names.get(h.gid, str(h.gid))}) {h.command}"


# carrying it out (hostd/server/sessions.py calls these) -----------------------------------

TERM_WAIT = 2.0  # as sessions.TERM_WAIT: seconds after SIGTERM before SIGKILL
POLL = 0.05
MAX_LISTED = 100


def _fields(event: str, e, gids: dict[int, str], held: list[Held]) -> dict:
    """The event's fields: the ending's own (events.carried) and the holders."""
    return carried(event, e, groups=sorted(gids.values()), count=len(held),
                   pids=sorted({h.pid for h in held}),
                   processes="; ".join(describe(h, gids) for h in held[:MAX_LISTED]))


def _signal_all(root: Path, held: list[Held], signo: int) -> int:
    return sum(signal_holder(root, h, signo) for h in held)


def _still(root: Path, held: list[Held]) -> list[Held]:
    return [h for h in held if still_held(root, h)]


def residue_event(events, e, gids: dict[int, str], held: list[Held]) -> None:
    """keep-sessions: the descriptors that outlive the grant, named, nothing ended."""
    events.emit(
        "privilege_residue", f"grant {e.grant_id} {e.reason} but {len(held)} open "
        f"descriptors still give {', '.join(sorted(gids.values()))} access "
        "(on_expiry = keep-sessions)", decision="kept",
        **_fields("privilege_residue", e, gids, held))


def named_event(events, e, gids: dict[int, str], held: list[Held]) -> None:
    """terminate-sessions: root's and system accounts' processes (in the user's slice)
    holding a residue descriptor are named, never signalled: a daemon or a setuid
    program ended blindly can take the host with it."""
    events.emit(
        "privilege_residue", f"grant {e.grant_id} {e.reason} but {len(held)} open "
        f"descriptors held by root's or system accounts' processes still give "
        f"{', '.join(sorted(gids.values()))} access (named, not ended)", decision="named",
        **_fields("privilege_residue", e, gids, held))


async def end_holders(server, e, gids: dict[int, str]) -> list[Held]:
    """terminate-sessions, after the credential pass: each process of the user or of a
    login account holding a residue descriptor gets SIGTERM, then SIGKILL if it still
    holds it TERM_WAIT later; one session_terminated event for the batch. Privileged
    holders are named in a privilege_residue event instead."""
    wanted = frozenset(gids)
    _, found = await server._in_thread(scan, server.proc_root, e.uid, wanted)
    named = [h for h in found if h.kind == PRIVILEGED]
    if named:
        named_event(server.core.events, e, gids, named)
    held = [h for h in found if h.kind != PRIVILEGED]
    if not held:
        return []
    root = server.proc_root
    await server._in_thread(_signal_all, root, held, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TERM_WAIT
    left = held
    while left and loop.time() < deadline:
        await asyncio.sleep(POLL)
        left = await server._in_thread(_still, root, left)
    if left:
        await server._in_thread(_signal_all, root, left, signal.SIGKILL)
    decision = "killed" if left else "terminated"
    server.core.events.emit(
        "session_terminated", f"{len({h.pid for h in held})} processes holding "
        f"descriptors that need {', '.join(sorted(gids.values()))} {decision}: grant "
        f"{e.grant_id} {e.reason}", decision=decision,
        **_fields("session_terminated", e, gids, held))
    return held
