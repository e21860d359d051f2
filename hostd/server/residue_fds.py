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
can run code in. Root (fsuid 0: no group is needed) and system accounts (services)
are not looked at: see DESIGN §13 "Residue beyond processes" for the cost behind this.

Each descriptor costs one stat(2) through /proc/PID/fd/N; fdinfo and readlink only
for the few that match.
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


def _candidate(uids: tuple[int, ...], uid: int) -> bool:
    fsuid = uids[3]
    if fsuid == 0:
        return False
    return all(u == uid for u in uids[:4]) or (fsuid >= LOGIN_UID_MIN and fsuid != NOBODY)


def descriptors(proc_root: Path, pid: int, fsuid: int, groups: frozenset[int],
                gids: frozenset[int], sockets: Sockets) -> list[tuple[int, str, int, tuple]]:
    """(fd, what, gid, ident) of the process's descriptors that are residue."""
    base = f"{os.fspath(proc_root)}/{pid}/fd"
    try:
        dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    out = []
    try:
        for name in os.listdir(dfd):
            try:
                st = os.stat(name, dir_fd=dfd)  # follows the magic link to the file
            except OSError:
                continue
            if stat.S_ISSOCK(st.st_mode):
                hit = sockets.get(st.st_ino)
                if hit and hit[2] not in groups and hit[1] != fsuid:
                    out.append((int(name), f"socket to {hit[0]}", hit[2],
                                (st.st_dev, st.st_ino)))
                continue
            if st.st_gid not in gids or st.st_gid in groups or st.st_uid == fsuid:
                continue
            want = needed(proc_root, pid, int(name))
            if want & ~st.st_mode & 0o007:  # others lack a bit the descriptor uses
                try:
                    what = os.readlink(name, dir_fd=dfd)
                except OSError:
                    what = "?"
                out.append((int(name), what, st.st_gid, (st.st_dev, st.st_ino)))
    finally:
        os.close(dfd)
    return out


def scan(proc_root: Path, uid: int, gids: frozenset[int] | set[int],
         skip: frozenset[int] = frozenset(),
         peers: Callable[[], list] = unix_peers) -> tuple[list[residue.Proc], list[Held]]:
    """One pass over /proc: (the user's processes holding a group, as residue.scan;
    descriptors that are residue, lowest pid first). Each status is read once."""
    if uid == 0 or not gids:
        return [], []
    gids = frozenset(gids)
    sockets = guarded_sockets(gids, peers)
    try:
        names = os.listdir(proc_root)
    except OSError:
        return [], []
    procs, held = [], []
    base = os.fspath(proc_root)
    for name in names:
        if not name.isdigit() or int(name) in skip:
            continue
        leader = residue._status(f"{base}/{name}/status")
        if leader is None or not _candidate(leader[0], uid):
            continue
        pid = int(name)
        mine = all(u == uid for u in leader[0])
        if mine:
            p = residue.read_proc(proc_root, pid, uid)
            if p is not None and residue.holds(p, uid, gids) and not residue.zombie(
                    proc_root, pid):
                procs.append(p)
                continue  # ended or named for its credentials already
        groups = frozenset(leader[1])
        if gids <= groups:
            continue
        for fd, what, gid, ident in descriptors(proc_root, pid, leader[0][3], groups, gids,
                                                sockets):
            held.append(Held(pid, leader[0][3], fd, what, gid, ident,
                             residue.command_of(proc_root, pid)))
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


async def end_holders(server, e, gids: dict[int, str]) -> list[Held]:
    """terminate-sessions, after the credential pass: each process holding a residue
    descriptor gets SIGTERM, then SIGKILL if it still holds it TERM_WAIT later; one
    session_terminated event for the batch."""
    wanted = frozenset(gids)
    _, held = await server._in_thread(scan, server.proc_root, e.uid, wanted)
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
