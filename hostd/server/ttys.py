"""Session terminals handed over by pam_jit: hostd's notices reach a login's own
terminal whatever `mesg` says, without hostd opening any device (it has no
CAP_DAC_OVERRIDE, and a login tty is 0620 alice:tty, or 0600 after `mesg n`).

At open_session, pam_jit.so (root, inside login, sshd, su...) opens PAM_TTY itself
(O_NOCTTY, only a character device that is a tty) and sends it here with SCM_RIGHTS on
a socket of its own, `terminal.sock` next to hostd.sock: hostd's main socket is read by
asyncio streams, whose recv would drop the descriptor (the kernel closes it), so the
handover never touches that path. One line in (`{"v": 1, "op": "pam.terminal", "user":
...}` with one descriptor), one line out, on a connection from root only (SO_PEERCRED);
the descriptor belongs to the peer's pid, the PAM process of the login.

hostd keeps it for the session's life: it is closed at close_session (same pid), when
that process is gone, or when a write fails (a hung-up terminal answers EIO). Writes are
one non-blocking write each; a full terminal loses the notice, never hostd's time.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("jit-hostd")

MAX_REQUEST = 4096  # one short line: op, user, service, tty, rhost
MAX_TERMINALS = 4096  # held at once, all users: a descriptor each
MAX_PER_USER = 64
PRUNE_EVERY = 60.0  # seconds


@dataclass(frozen=True)
class Terminal:
    fd: int
    pid: int  # the PAM process that handed it over
    uid: int
    rdev: int  # the device, to skip it on the utmp and /dev/pts paths


@dataclass
class _Pending:
    """A handover connection until its line is complete."""

    conn: socket.socket
    data: bytes = b""
    fds: list[int] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


def _received_fds(ancillary: list) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[:len(data) - len(data) % arr.itemsize])
            fds.extend(arr)
    return fds


def _is_terminal(fd: int) -> int | None:
    """The device number of a character device that is a tty, else None."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_rdev if stat.S_ISCHR(st.st_mode) and os.isatty(fd) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Terminals:
    """The registry: written from the side threads (warnings, notices), filled from the
    loop; one lock."""

    def __init__(self, path: Path, uid_of: Callable[[str], int | None]) -> None:
        self.path, self.uid_of = path, uid_of
        self._lock = threading.Lock()
        self._held: list[Terminal] = []
        self._sock: socket.socket | None = None
        self._prune: asyncio.TimerHandle | None = None

    # the handover ------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind terminal.sock (root only: 0600) and serve it on the loop."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK
                             | socket.SOCK_CLOEXEC)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o600)
        sock.listen(64)
        self._sock = sock
        loop.add_reader(sock.fileno(), self._accept, loop)
        self._prune_later(loop)

    def _prune_later(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every minute, let go of terminals whose PAM process is gone: a held pty keeps
        its number allocated until the last descriptor closes."""
        def prune() -> None:
            if self._sock is None:
                return
            with self._lock:
                self._held = [t for t in self._held if self._keep(t)]
            self._prune_later(loop)

        self._prune = loop.call_later(PRUNE_EVERY, prune)

    def _accept(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        conn.setblocking(False)
        pending = _Pending(conn)
        pending.timer = loop.call_later(3.0, self._finish, loop, pending, None)  # silent
        loop.add_reader(conn.fileno(), self._read, loop, pending)

    def _read(self, loop: asyncio.AbstractEventLoop, pending: _Pending) -> None:
        """Gather the request line (it may come in pieces) and the descriptors that came
        with any piece; then answer and hang up."""
        try:
            data, anc, _flags, _ = pending.conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(4 * 4))
        except BlockingIOError:
            return
        except OSError:
            data, anc = b"", []
        pending.fds.extend(_received_fds(anc))
        pending.data += data
        if data and not pending.data.endswith(b"\n") and len(pending.data) < MAX_REQUEST:
            return
        self._finish(loop, pending, self.receive(pending.conn, pending.data, pending.fds))

    def _finish(self, loop: asyncio.AbstractEventLoop, pending: _Pending,
                answer: dict | None) -> None:
        pending.timer.cancel()
        loop.remove_reader(pending.conn.fileno())
        if answer is not None:
            with contextlib.suppress(OSError):
                pending.conn.send(json.dumps(answer).encode() + b"\n", socket.MSG_DONTWAIT)
        else:  # timed out: whatever came is not kept
            for fd in pending.fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        pending.conn.close()

    def receive(self, conn: socket.socket, data: bytes, fds: list[int]) -> dict:
        """Check and keep the one descriptor of a pam.terminal request; the answer."""
        keep = fds[0] if len(fds) == 1 else None
        kept: int | None = None
        try:
            pid, uid, _gid = conn_credentials(conn)
            req = json.loads(data.decode("utf-8")) if data.endswith(b"\n") else None
            user = req.get("user") if isinstance(req, dict) else None
            user_uid = self.uid_of(user) if isinstance(user, str) else None
            rdev = _is_terminal(keep) if keep is not None else None
            if uid != 0:
                return _refusal("permission_denied", "only root may hand over a terminal")
            if not isinstance(req, dict) or req.get("op") != "pam.terminal" or user_uid is None:
                return _refusal("bad_request", "expected pam.terminal for a known user")
            if rdev is None:
                return _refusal("bad_request", "expected one descriptor of a terminal")
            if not self.add(Terminal(keep, pid, user_uid, rdev)):
                return _refusal("busy", "too many terminals held")
            kept = keep
            return {"ok": True, "code": "ok", "message": ""}
        except (ValueError, UnicodeDecodeError, OSError):
            return _refusal("bad_request", "malformed request")
        finally:
            for fd in fds:
                if fd != kept:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    # the registry --------------------------------------------------------------------

    def add(self, term: Terminal) -> bool:
        with self._lock:
            self._held = [t for t in self._held if self._keep(t)]
            if len(self._held) >= MAX_TERMINALS or sum(
                    t.uid == term.uid for t in self._held) >= MAX_PER_USER:
                return False
            self._held.append(term)
            return True

    def _keep(self, t: Terminal) -> bool:
        """Still wanted (its PAM process alive); closed otherwise. Under the lock."""
        if _alive(t.pid):
            return True
        with contextlib.suppress(OSError):
            os.close(t.fd)
        return False

    def close_pid(self, pid: int) -> int:
        """close_session of that PAM process: its terminals go; how many."""
        with self._lock:
            gone = [t for t in self._held if t.pid == pid]
            self._held = [t for t in self._held if t.pid != pid]
        for t in gone:
            with contextlib.suppress(OSError):
                os.close(t.fd)
        return len(gone)

    def write(self, uid: int, text: str) -> tuple[int, set[int]]:
        """`text` on each held terminal of `uid`: (how many took it, their devices)."""
        data = text.encode("utf-8", "replace")
        reached: set[int] = set()
        with self._lock:
            self._held = [t for t in self._held if self._keep(t)]
            for t in [t for t in self._held if t.uid == uid]:
                try:
                    os.write(t.fd, data)
                    reached.add(t.rdev)
                except BlockingIOError:
                    continue  # full: this notice is lost, the terminal stays
                except OSError:  # hung up (EIO) or gone: the session is over
                    self._held.remove(t)
                    with contextlib.suppress(OSError):
                        os.close(t.fd)
        return len(reached), reached

    def users(self) -> set[int]:
        with self._lock:
            return {t.uid for t in self._held}

    def close(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        for t in held:
            with contextlib.suppress(OSError):
                os.close(t.fd)
        if self._sock is not None:
            self._prune.cancel()
            self._sock.close()
            self._sock = None


def conn_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the peer, from the kernel."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    return struct.unpack("iII", raw)


def _refusal(code: str, message: str) -> dict:
    return {"ok": False, "code": code, "message": message}
