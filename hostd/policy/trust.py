"""Reading trust files: the policy, issuer files and issuer keys (DESIGN.md §13).

A user who can change a trusted key can mint grants, so, like sshd's StrictModes, a
trust file and every directory a lookup of it passes through (symlinks resolved, one
name at a time) must be owned by root and not writable by group or others. Every file
is opened without blocking and must be a regular file: a FIFO would hang the reader.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hostd.errors import ConfigError

MAX_SYMLINKS = 40


def problem(st: os.stat_result) -> str | None:
    """Why a file or directory with this status could be changed by someone but root."""
    if st.st_uid != 0:
        return f"owned by uid {st.st_uid}, must be owned by root"
    if st.st_mode & 0o022:
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _exempt(directory: str, top: Path) -> bool:
    """A sandbox root's ancestors (/tmp) are the test harness's business, not ours."""
    d = Path(directory)
    return d != top and top.is_relative_to(d)


def check(path: Path, top: Path = Path("/")) -> str:
    """The real path of `path` after checking it and every directory its lookup passes
    through, from `/` (or the sandbox root `top`) down; ConfigError naming the culprit."""
    todo = list(reversed((Path.cwd() / path).parts))  # no lexical "..": symlinks decide
    current, checked, hops = "/", set(), 0
    while todo:
        name = todo.pop()
        if name == "/" or name == "..":
            current = "/" if name == "/" else os.path.dirname(current)
            continue
        if current not in checked:
            bad = None if _exempt(current, top) else problem(os.stat(current))
            if bad:
                raise ConfigError(str(path), "", f"directory {current} is {bad}")
            checked.add(current)
        nxt = os.path.join(current, name)
        st = os.lstat(nxt)
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > MAX_SYMLINKS:
                raise ConfigError(str(path), "", "too many levels of symbolic links")
            todo.extend(reversed(Path(os.readlink(nxt)).parts))
            continue
        current = nxt
    bad = problem(os.stat(current))
    if bad:
        where = "" if current == str(path) else f"{current} (its symlink target) is "
        raise ConfigError(str(path), "", where + bad)
    return current


def read_file(path: Path, top: Path | None = None) -> bytes:
    """A regular file's bytes, read without blocking; with `top`, only a trusted one
    (check()). OSError (missing, unreadable) is left to the caller to word."""
    real = check(path, top) if top is not None else str(path)
    fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(str(path), "", "not a regular file")
        bad = problem(st) if top is not None else None
        if bad:  # changed since check(): only root could have, but say so
            raise ConfigError(str(path), "", bad)
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()
