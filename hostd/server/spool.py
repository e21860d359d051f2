"""The webhook spool: how hostd hands a notice to jit-webhook.service and stays off the
network (DESIGN §13 "hostd off the network").

`<state>/webhook/` (root, 0700) holds `tmp/` and `queue/`, as a maildir does: a notice is
written to `tmp/` (created exclusively, fsynced) and renamed into `queue/`, so the sender
never sees half a notice and jit-webhook.path (DirectoryNotEmpty= on `queue/`) fires
only for whole ones. File names start with the time in nanoseconds, so sorting them is
age order. The queue is bounded: past MAX_NOTICES the oldest are dropped (the caller logs
each as `notify_failed`), so an endpoint that is down cannot fill the disk. Files live
on disk, so a notice survives hostd (and the sender) restarting.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from pathlib import Path

MAX_NOTICES = 500  # queued notices kept; ~2 KiB each, well under 1 MiB in all
MAX_NOTICE_BYTES = 64 * 1024  # a notice is bounded by what hostd escapes and cuts
STALE_TMP = 600.0  # seconds after which a tmp/ file is a crashed writer's leftover


class SpoolError(Exception):
    """A queued file that is not a notice hostd wrote (why, for the event)."""


class Spool:
    """One directory of queued notices: hostd puts, the sender takes."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.tmp = base / "tmp"
        self.queue = base / "queue"

    def ensure(self) -> None:
        """The three directories, root-only (a crafted mode or a symlink is put right or
        refused: mkdir never follows one, chmod on a symlink would)."""
        for d in (self.base, self.tmp, self.queue):
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass
            st = d.lstat()
            if not stat.S_ISDIR(st.st_mode):
                raise OSError(f"{d} is not a directory")
            if stat.S_IMODE(st.st_mode) != 0o700:
                os.chmod(d, 0o700)

    def put(self, notice: dict) -> list[dict]:
        """Queue one notice atomically; the notices dropped to stay within MAX_NOTICES,
        oldest first. OSError or ValueError (too big) when it could not be queued."""
        data = json.dumps(notice, sort_keys=True).encode()
        if len(data) > MAX_NOTICE_BYTES:
            raise ValueError(f"notice of {len(data)} bytes (at most {MAX_NOTICE_BYTES})")
        self.ensure()
        name = f"{time.time_ns():020d}-{secrets.token_hex(6)}.json"
        tmp = self.tmp / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self.queue / name)
        _fsync_dir(self.queue)
        return self.trim()

    def trim(self, keep: int = MAX_NOTICES) -> list[dict]:
        """Drop the oldest notices past `keep`; what they were (empty when unreadable)."""
        names = self.pending()
        dropped = []
        for path in names[:max(0, len(names) - keep)]:
            try:
                dropped.append(self.load(path))
            except SpoolError:
                dropped.append({})
            self.remove(path)
        return dropped

    def pending(self) -> list[Path]:
        """Queued notices, oldest first."""
        try:
            names = os.listdir(self.queue)
        except FileNotFoundError:
            return []
        return [self.queue / n for n in sorted(names)
                if n.endswith(".json") and not n.startswith(".")]

    def load(self, path: Path) -> dict:
        """A queued notice, checked: a regular file of ours, bounded, a JSON object with
        a string `url` and an object `body`. SpoolError otherwise."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SpoolError(f"cannot open: {exc.strerror}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise SpoolError("not a regular file owned by the spool's user")
            if st.st_size > MAX_NOTICE_BYTES:
                raise SpoolError(f"{st.st_size} bytes (at most {MAX_NOTICE_BYTES})")
            data = os.read(fd, MAX_NOTICE_BYTES + 1)
        finally:
            os.close(fd)
        try:
            notice = json.loads(data)
        except ValueError as exc:
            raise SpoolError("not JSON") from exc
        if not (isinstance(notice, dict) and isinstance(notice.get("url"), str)
                and isinstance(notice.get("body"), dict)):
            raise SpoolError("not a notice (url and body)")
        return notice

    def remove(self, path: Path) -> None:
        """Delivered, failed or dropped: gone (already gone is fine: hostd may have
        dropped it while the sender was posting it)."""
        try:
            path.unlink()
        except FileNotFoundError:
            pass

    def clear_stale_tmp(self, now: float | None = None) -> int:
        """Remove tmp/ files a writer that crashed mid-write left (older than STALE_TMP)."""
        now = time.time() if now is None else now
        removed = 0
        try:
            entries = list(os.scandir(self.tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if now - entry.stat(follow_symlinks=False).st_mtime > STALE_TMP:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
