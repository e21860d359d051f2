"""Client library for hostd's socket: one bounded request, one bounded answer.

Every failure to get an answer becomes JitError with code `unreachable` or `timeout`
(exit code 3), so callers fail closed with a clear message.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from .errors import JitError
from .protocol import encode

MAX_ANSWER = 32 * 1024 * 1024  # grant lists of a busy host can be large


class Client:
    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    def call(self, req: dict) -> dict:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            try:
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError):
                raise JitError("unreachable", f"jit-hostd is not running (no answer on "
                                              f"{self.path})") from None
            except PermissionError:
                raise JitError("unreachable", f"no permission to reach {self.path}") from None
            sock.sendall(encode(req))
            return self._read(sock)
        except TimeoutError:
            raise JitError("timeout", "jit-hostd did not answer in time") from None
        except (ConnectionError, OSError) as exc:
            raise JitError("unreachable", f"lost connection to jit-hostd: {exc}") from None
        finally:
            sock.close()

    def _read(self, sock: socket.socket) -> dict:
        buf = bytearray()
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > MAX_ANSWER:
                raise JitError("unreachable", "answer from jit-hostd too large")
        try:
            answer = json.loads(buf.decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise JitError("unreachable", "jit-hostd closed the connection or answered "
                                          "garbage") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            raise JitError("unreachable", "malformed answer from jit-hostd")
        return answer
