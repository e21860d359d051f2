"""Setgid files a group grant let its user plant, found and defused when the grant ends.

While alice holds `jitops` she can `chgrp jitops ~/f; chmod 2755 ~/f`; removing her from
/etc/group does not touch the file, and `~/f` runs with gid jitops for ever after. A
user can only `chgrp` to a group they hold, so every such file was made while a grant
(or some root path) gave the group. At a grant's end hostd walks every mounted
filesystem where set-id bits take effect and clears the setgid bit of each regular file
that is residue of it (`residue_of`), keeping every other bit.

Race safety: the walk opens each directory relative to its parent's descriptor with
O_NOFOLLOW, so a directory swapped for a symlink mid-walk leads nowhere; a candidate is
opened O_PATH|O_NOFOLLOW, checked again through its descriptor (same inode, still a
regular setgid file of the group, still residue) and changed through
/proc/self/fd/N, which names that inode and no other.

The walk is pure: mounts and targets in, callbacks out (found, progress). The driver
that runs it in a thread, at idle I/O priority and bounded in time, with its progress in
SQLite, is hostd/server/setgid_walks.py.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

DONE = "\U0010ffff"  # a position past every name: the mount is walked
MAX_DEPTH = 2048  # directories open at once; deeper is reported, never skipped silently


@dataclass(frozen=True)
class Target:
    """One ended grant's residue question: setgid files of `gids` that `uid` owns, or
    that anyone's changed since `since` (the grant's activation)."""
    grant_id: str
    uid: int
    user: str
    gids: dict[int, str]
    since: int


def residue_of(st: os.stat_result, targets: list[Target]) -> Target | None:
    """The target a setgid file of a target's group is residue of: the user's own file
    whenever it was made; another owner's (root's included) only if its inode changed
    (ctime) at or after the grant began, since only a root path (sudo, docker) could
    have handed it over, and an older file predates anything the grant let happen."""
    for t in targets:
        if st.st_gid in t.gids and (st.st_uid == t.uid or int(st.st_ctime) >= t.since):
            return t
    return None


def clear(dir_fd: int, name: str, seen: os.stat_result,
          targets: list[Target]) -> tuple[int, Target] | None:
    """Clear the setgid bit of `name` in `dir_fd` if it is still the file seen and still
    residue; (mode before, target), or None if it changed meanwhile."""
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        target = residue_of(st, targets)
        if (not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_ISGID
                or (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) or target is None):
            return None
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) & ~stat.S_ISGID)
        return stat.S_IMODE(st.st_mode), target
    except OSError:
        return None
    finally:
        os.close(fd)


Found = Callable[[str, int, Target], None]  # path, mode before, target


@dataclass
class Walk:
    """One walk over mounts for a batch of targets. `stop()` says when to give up (the
    time bound, hostd stopping); `progress(position)` is told each finished top-level
    entry as (mount point, name) so a later walk can start after it."""
    targets: list[Target]
    found: Found
    stop: Callable[[], bool]
    progress: Callable[[tuple[str, str]], None]
    skip: frozenset[str] = frozenset()  # mount points not to enter (walked on their own)
    too_deep: list[str] | None = None  # directories left unwalked at MAX_DEPTH

    def __post_init__(self) -> None:
        self.gids = frozenset(g for t in self.targets for g in t.gids)
        self.cleared = 0
        if self.too_deep is None:
            self.too_deep = []

    def run(self, points: list[str], after: tuple[str, str] = ("", "")) -> bool:
        """Walk each mount point in order, starting after `after`; True if all done."""
        for point in sorted(points):
            if (point, DONE) <= after:
                continue
            if not self._mount(point, after[1] if after[0] == point else ""):
                return False
            self.progress((point, DONE))
        return True

    def _mount(self, point: str, after: str) -> bool:
        try:
            fd = os.open(point, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return True  # gone or unreadable: nothing there to walk
        dev = os.fstat(fd).st_dev
        try:
            with os.scandir(fd) as it:
                names = sorted(e.name for e in it)
        except OSError:
            os.close(fd)
            return True
        try:
            prefix = "" if point == "/" else point
            for name in names:
                if after and name <= after:
                    continue
                if self.stop() or not self._entry(fd, prefix, name, dev):
                    return False
                self.progress((point, name))
            return True
        finally:
            os.close(fd)

    def _entry(self, dir_fd: int, prefix: str, name: str, dev: int) -> bool:
        """One top-level entry: a file looked at, or a directory walked depth first;
        False if the walk was stopped inside it."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return True
        if stat.S_ISREG(st.st_mode):
            self._file(dir_fd, prefix, name, st)
        elif stat.S_ISDIR(st.st_mode):
            return self._tree(dir_fd, f"{prefix}/{name}", name, dev)
        return True

    def _file(self, dir_fd: int, prefix: str, name: str, st: os.stat_result) -> None:
        if st.st_mode & stat.S_ISGID and st.st_gid in self.gids and residue_of(
                st, self.targets) is not None:
            done = clear(dir_fd, name, st, self.targets)
            if done is not None:
                self.cleared += 1
                self.found(f"{prefix}/{name}", done[0], done[1])

    def _open_dir(self, dir_fd: int, path: str, name: str,
                  dev: int) -> tuple[int, Iterator[os.DirEntry]] | None:
        if path in self.skip:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError:
            return None
        try:
            if os.fstat(fd).st_dev == dev:  # else another filesystem mounted here: -xdev
                return fd, os.scandir(fd)
        except OSError:
            pass
        os.close(fd)
        return None

    def _tree(self, dir_fd: int, path: str, name: str, dev: int) -> bool:
        """Depth first over descriptors: (fd, path, scandir iterator) per open level;
        False if stopped before the end."""
        opened = self._open_dir(dir_fd, path, name, dev)
        if opened is None:
            return True
        stack = [(opened[0], path, opened[1])]
        while stack:
            top_fd, top_path, it = stack[-1]
            try:
                pushed = self._level(stack, top_fd, top_path, it, dev)
            except OSError:  # the directory went away mid-read: what is left of it is gone
                pushed = False
            if not pushed:
                it.close()
                os.close(top_fd)
                stack.pop()
                if stack and self.stop():
                    for fd_, _, it_ in stack:
                        it_.close()
                        os.close(fd_)
                    return False
        return True

    def _level(self, stack: list, top_fd: int, top_path: str, it, dev: int) -> bool:
        """Go on reading one directory: True when a subdirectory was pushed (to be
        walked first), False when this one is finished."""
        gids, want = self.gids, stat.S_ISGID
        for e in it:
            if e.is_dir(follow_symlinks=False):
                if len(stack) >= MAX_DEPTH:
                    self.too_deep.append(f"{top_path}/{e.name}")
                    continue
                child = self._open_dir(top_fd, f"{top_path}/{e.name}", e.name, dev)
                if child is not None:
                    stack.append((child[0], f"{top_path}/{e.name}", child[1]))
                    return True
            elif e.is_file(follow_symlinks=False):
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if st.st_mode & want and st.st_gid in gids:
                    self._file(top_fd, top_path, e.name, st)
        return False
