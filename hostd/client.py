"""Client library for hostd's socket: bounded requests, bounded answers, named failures.

Standard library only (a test keeps it so): the recorder and the expiry timer's
`jit-hostd --expire` import it on hot paths. The PAM module (pam/pam_jit.py) does not
import it: it writes the same wire format with built-in modules only. The socket path is
always an explicit argument: code that runs as root on behalf of users must never take
it from the environment (only the `jit` CLI reads JIT_ROOT, in hostd.paths.client_paths).

Every failure to get an answer becomes JitError `unreachable` or `timeout` (exit code
3), so callers fail closed with a clear message. One `Client` holds one connection and
may make several calls in turn; `stream()` turns it into a two-way frame channel.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import time

from hostd.errors import JitError
from hostd.wire import MAX_LINE, encode, request

MAX_ANSWER = 32 * 1024 * 1024  # grant lists of a busy host can be large


class Client:
    """One connection to hostd, opened on first use, reused for later calls.

    `trusted=True` is for callers running as root on behalf of someone else (PAM, sudo,
    the recorder): the socket must be a socket owned by root and the peer must be root,
    as SSSD's client checks before it sends anything.
    """

    def __init__(self, path: os.PathLike | str, timeout: float = 10.0,
                 trusted: bool = False) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.trusted = trusted
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._used = False  # a reused connection may have been closed by hostd's idle timer

    # connection -------------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._used = None, False
        self._buf.clear()

    def _connect(self, deadline: float) -> socket.socket:
        if self._sock is not None:
            return self._sock
        if self.trusted:
            self._check_socket_file()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(_remaining(deadline))
            sock.connect(self.path)
            if self.trusted:
                _, uid, _ = struct.unpack("3I", sock.getsockopt(
                    socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3I")))
                if uid != 0:
                    raise JitError("unreachable", f"{self.path} is not served by root")
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise JitError("unreachable", f"jit-hostd is not running (no answer on "
                                          f"{self.path})") from None
        except PermissionError:
            sock.close()
            raise JitError("unreachable", f"no permission to reach {self.path}") from None
        except BaseException:
            sock.close()
            raise
        self._sock, self._used = sock, False
        return sock

    def _check_socket_file(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            raise JitError("unreachable", f"jit-hostd is not running (no {self.path})") from None
        except OSError as exc:
            raise JitError("unreachable", f"cannot reach {self.path}: {exc.strerror}") from None
        if not stat.S_ISSOCK(st.st_mode) or st.st_uid != 0:
            raise JitError("unreachable", f"{self.path} is not a socket owned by root")

    # calls ------------------------------------------------------------------------------

    def call(self, req: dict, timeout: float | None = None) -> dict:
        """Send one request, read its one answer (a `wait` op's answer may come late:
        give a timeout longer than the wait). A connection hostd closed while it sat idle
        is reopened once; anything else is not retried (the request may have acted)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        for attempt in (1, 2):
            reused = self._used
            try:
                sock = self._connect(deadline)
                self._used = True
                _send(sock, encode(req), deadline)
                return _answer(self._read_line(sock, deadline, MAX_ANSWER))
            except _Closed:
                self.close()
                if reused and attempt == 1:
                    continue
                raise JitError("unreachable", "jit-hostd closed the connection without "
                                              "answering") from None
            except JitError:
                self.close()
                raise
            except TimeoutError:
                self.close()
                raise JitError("timeout", "jit-hostd did not answer in time") from None
            except OSError as exc:
                self.close()
                if reused and attempt == 1 and isinstance(exc, (BrokenPipeError,
                                                                ConnectionResetError)):
                    continue
                raise JitError("unreachable", f"lost connection to jit-hostd: "
                                              f"{exc.strerror or exc}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def ask(self, op: str, timeout: float | None = None, **fields: object) -> dict:
        """call() for one op; a refusal becomes JitError with hostd's code and message."""
        answer = self.call(request(op, **fields), timeout)
        if not answer["ok"]:
            raise JitError(str(answer.get("code")), str(answer.get("message", "")))
        return answer

    def stream(self, op: str, **fields: object) -> Stream:
        """Open a `stream` op: its first answer, then frames both ways on this connection."""
        answer = self.ask(op, **fields)
        return Stream(self, answer)

    def _read_line(self, sock: socket.socket, deadline: float | None, limit: int) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                return line
            if len(self._buf) > limit:
                raise JitError("unreachable", "answer from jit-hostd too large")
            sock.settimeout(None if deadline is None else _remaining(deadline))
            chunk = sock.recv(65536)
            if not chunk:
                raise _Closed()
            self._buf += chunk


class Stream:
    """A stream op's channel: send frames, receive frames, close. Frames are JSON
    objects on one line each, at most 64 KiB, as requests are."""

    def __init__(self, client: Client, opened: dict) -> None:
        self.client = client
        self.opened = opened

    def send(self, frame: dict, timeout: float | None = None) -> None:
        sock = self._sock()
        try:
            _send(sock, encode(frame), time.monotonic() + (timeout or self.client.timeout))
        except (TimeoutError, OSError) as exc:
            self.client.close()
            raise JitError("unreachable", f"lost connection to jit-hostd: {exc}") from None

    def recv(self, timeout: float | None = None) -> dict | None:
        """The next frame from hostd, or None when hostd ended the stream."""
        line = self.recv_line(timeout)
        return None if line is None else _frame(line)

    def recv_line(self, timeout: float | None = None) -> bytes | None:
        """The next frame's line as it came (a caller with a fast path of its own for
        frames it knows, `jit watch`'s output), or None when hostd ended the stream."""
        sock = self._sock()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            line = self.client._read_line(sock, deadline, MAX_LINE)
        except _Closed:
            self.client.close()
            return None
        except TimeoutError:
            raise JitError("timeout", "no frame from jit-hostd in time") from None
        except OSError as exc:
            self.client.close()
            raise JitError("unreachable", f"lost connection to jit-hostd: {exc}") from None
        return line

    @staticmethod
    def parse(line: bytes) -> dict:
        """A line from recv_line as its frame (as recv would have returned it)."""
        return _frame(line)

    def fileno(self) -> int:
        return self._sock().fileno()

    def close(self) -> None:
        self.client.close()

    def _sock(self) -> socket.socket:
        if self.client._sock is None:
            raise JitError("unreachable", "the stream to jit-hostd is closed")
        return self.client._sock


class _Closed(Exception):
    """hostd closed the connection before a whole line arrived."""


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _send(sock: socket.socket, data: bytes, deadline: float) -> None:
    """All of data; MSG_NOSIGNAL so a closed peer is EPIPE, never SIGPIPE in the host
    process (sshd, sudo, login)."""
    view = memoryview(data)
    while view:
        sock.settimeout(_remaining(deadline))
        sent = sock.send(view, socket.MSG_NOSIGNAL)
        view = view[sent:]


def _frame(line: bytes) -> dict:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise JitError("unreachable", "jit-hostd answered garbage") from None
    if not isinstance(obj, dict):
        raise JitError("unreachable", "malformed answer from jit-hostd")
    return obj


def _answer(line: bytes) -> dict:
    answer = _frame(line)
    if not isinstance(answer.get("ok"), bool):
        raise JitError("unreachable", "malformed answer from jit-hostd")
    return answer
