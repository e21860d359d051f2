"""Processes that still hold a group a grant took away.

gpasswd -d changes /etc/group, not the credentials of running processes: a shell
started while the grant was live keeps the group in its supplementary groups until it
exits. This module finds such processes by reading `/proc/PID/status` (`Uid:` and
`Groups:`) under a proc root, so tests run it over a fake tree, and signals one only
after checking again, through a pidfd, that it is still what was found.

Only processes whose four uids (real, effective, saved, filesystem) are all the user's
are candidates: root's processes, a set-uid program the user started and other users'
processes are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

MAX_COMMAND = 256  # characters of a command line kept for the event


@dataclass(frozen=True)
class Proc:
    pid: int
    uids: tuple[int, ...]  # real, effective, saved, filesystem; then other threads' own
    groups: tuple[int, ...]  # supplementary groups, then real/effective/saved/fs gids
    command: str  # the command line, arguments joined by spaces, cut; "[comm]" if none


def _ints(text: str, key: str) -> tuple[int, ...] | None:
    """The numbers on the `key:` line of a status text (starting with a newline)."""
    start = text.find("\n" + key + ":")
    if start < 0:
        return None
    start += len(key) + 2
    end = text.find("\n", start)
    try:
        return tuple(int(v) for v in text[start:end if end >= 0 else None].split())
    except ValueError:
        return None


def parse_status(text: str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(uids, gids held) from a status file's text: the supplementary groups, then any
    of the four gids not among them (`newgrp GROUP` and `sg` make a group the primary
    one, which `Groups:` does not list). None if a line is missing or bad. Only these
    lines are looked at (the kernel escapes newlines in `Name:`, the one value a
    process chooses, so no line can be forged)."""
    text = "\n" + text
    uids, gids, groups = _ints(text, "Uid"), _ints(text, "Gid"), _ints(text, "Groups")
    if uids is None or len(uids) != 4 or gids is None or len(gids) != 4 or groups is None:
        return None
    return uids, groups + tuple(sorted(set(gids) - set(groups)))


def _read(path: Path | str, limit: int = 65536) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:  # gone, or not ours to read: either way not a candidate
        return None


def command_of(proc_root: Path, pid: int) -> str:
    raw = _read(proc_root / str(pid) / "cmdline", 4096) or b""
    text = b" ".join(part for part in raw.split(b"\0") if part).decode("utf-8", "replace")
    if not text:
        comm = (_read(proc_root / str(pid) / "comm", 64) or b"?").decode("utf-8", "replace")
        text = f"[{comm.strip()}]"
    return text[:MAX_COMMAND]


def _status(path: Path | str) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    raw = _read(path)
    return parse_status(raw.decode("utf-8", "replace")) if raw is not None else None


def read_proc(proc_root: Path, pid: int, uid: int | None = None) -> Proc | None:
    """The process as its leader's status gives it; for a process of `uid`, with every
    uid and group of its other threads too: credentials are per thread, and a raw
    setgroups(2) in one thread would otherwise hide a group the others keep."""
    leader = _status(proc_root / str(pid) / "status")
    if leader is None:
        return None
    uids, groups = list(leader[0]), list(leader[1])
    if uid is not None and set(uids) == {uid}:
        try:
            tids = [t for t in os.listdir(proc_root / str(pid) / "task")
                    if t.isdigit() and t != str(pid)]
        except OSError:
            tids = []
        for tid in tids:
            thread = _status(proc_root / str(pid) / "task" / tid / "status")
            if thread is not None:  # None: the thread is gone
                uids += [u for u in thread[0] if u not in uids]
                groups += [g for g in thread[1] if g not in groups]
    return Proc(pid, tuple(uids), tuple(groups), command_of(proc_root, pid))


def holds(p: Proc, uid: int, gids: frozenset[int] | set[int]) -> bool:
    """The choice of what to end: a process of `uid` alone (every uid the user's, and
    never root) that still holds one of `gids`."""
    return uid != 0 and all(u == uid for u in p.uids) and bool(gids.intersection(p.groups))


def scan(proc_root: Path, uid: int, gids: frozenset[int] | set[int],
         skip: frozenset[int] = frozenset()) -> list[Proc]:
    """Every process under `proc_root` that `holds` one of `gids`, lowest pid first;
    zombies hold nothing and run nothing, and are left out."""
    if uid == 0 or not gids:
        return []
    try:
        names = os.listdir(proc_root)
    except OSError:
        return []
    found = []
    base = os.fspath(proc_root)
    for name in names:
        if not name.isdigit() or int(name) in skip:
            continue
        leader = _status(f"{base}/{name}/status")  # cheap first: most are not ours
        if leader is None or any(u != uid for u in leader[0]):
            continue
        p = read_proc(proc_root, int(name), uid)
        if p is not None and holds(p, uid, gids) and not zombie(proc_root, p.pid):
            found.append(p)
    return sorted(found, key=lambda p: p.pid)


def leads_a_tty_session(proc_root: Path, pid: int) -> bool:
    """Whether `pid` is a session leader with a controlling terminal: a login shell
    (`su -l`, sshd's child, a console login). Ending a session hangs its terminal up, so
    such a process also gets SIGHUP, as the kernel and systemd's SendSIGHUP give it: an
    interactive shell ignores SIGTERM and would otherwise wait out the grace."""
    try:
        stat = (proc_root / str(pid) / "stat").read_bytes()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2:].split()
    try:  # state ppid pgrp session tty_nr ...
        return int(fields[3]) == pid and int(fields[4]) != 0
    except (IndexError, ValueError):
        return False


def signal_checked(proc_root: Path, pid: int, uid: int, gids: frozenset[int] | set[int],
                   signo: int) -> bool:
    """Send `signo` to `pid` if it still `holds` one of `gids`. The pidfd is opened
    first and the status read after: if the pid was reused in between, the pidfd names
    the old, dead process and the signal goes nowhere. True if a signal was sent."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except (OSError, AttributeError):  # no pidfd (old kernel): check and kill, closely
        fd = None
    try:
        p = read_proc(proc_root, pid, uid)
        if p is None or not holds(p, uid, gids):
            return False
        try:
            if fd is None:
                os.kill(pid, signo)
            else:
                signal.pidfd_send_signal(fd, signo)
            return True
        except ProcessLookupError:
            return False
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def still_holding(proc_root: Path, procs: list[Proc], uid: int,
                  gids: frozenset[int] | set[int]) -> list[Proc]:
    """Those of `procs` still there, not zombies, and still holding a group: the cheap
    look during the SIGTERM grace (a full scan follows it)."""
    out = []
    for p in procs:
        now = read_proc(proc_root, p.pid, uid)
        if now is not None and holds(now, uid, gids) and not zombie(proc_root, p.pid):
            out.append(p)
    return out


def boot_id(proc_root: Path) -> str:
    """This boot's id (`sys/kernel/random/boot_id` under the proc root), "" if unknown.
    Exact where a boot time is not: `btime` moves when the clock is set."""
    raw = _read(proc_root / "sys" / "kernel" / "random" / "boot_id", 64) or b""
    return raw.decode("ascii", "replace").strip()


def zombie(proc_root: Path, pid: int) -> bool:
    """State Z in /proc/PID/stat, read after the last `)`: the command name before it
    is the process's own choice and may itself contain `) Z `."""
    raw = _read(proc_root / str(pid) / "stat", 1024) or b""
    fields = raw.rpartition(b")")[2].split()
    return bool(fields) and fields[0] == b"Z"


def describe(p: Proc, names: dict[int, str]) -> str:
    """`PID [group,...] command` for an event: group names where known. Raw: the event
    escapes it (events.escape), once, as every user-controlled value."""
    groups = ",".join(names.get(g, str(g)) for g in p.groups)
    return f"{p.pid} [{groups}] {p.command}"
