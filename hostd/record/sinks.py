"""Where a `jit-record` session goes: hostd's `record.open` stream (the sudo path) or
a local asciicast file (`--file`), and the masker for it. The recorder's proxy
(recorder_proxy) writes to either the same way; a sink that cannot go on raises
SinkFailed and the role's record_failure decides."""

from __future__ import annotations

import binascii
import os
import time

TYPE_CHECKING = False  # not typing's: it costs milliseconds at every start
if TYPE_CHECKING:
    from hostd.record.options import Options

FRAME = 32 * 1024  # raw bytes per frame: its base64 fits hostd's 64 KiB line
SEND_TIMEOUT = 10.0


def say(text: str) -> None:
    """A line from the recorder itself, on stderr: `\\r\\n` since the terminal may be raw."""
    try:
        os.write(2, f"\r\njit-record: {text}\r\n".encode())
    except OSError:
        pass


# sinks ----------------------------------------------------------------------

class SinkFailed(Exception):
    """The recording cannot go on (hostd gone, disk full)."""


class FileSink:
    """A local asciicast file (`--file`): no hostd, the user's own recording."""

    def __init__(self, path: str, width: int, height: int, argv: list[str]) -> None:
        from pathlib import Path

        from hostd.record.castfile import CastWriter

        header = {"version": 2, "width": width, "height": height,
                  "timestamp": int(time.time()), "command": " ".join(argv),
                  "env": {"TERM": os.environ.get("TERM", ""),
                          "SHELL": os.environ.get("SHELL", "")}}
        self.writer = CastWriter(Path(path), header)
        self.id = os.path.basename(path)

    def fileno(self) -> int | None:
        return None

    def output(self, t: float, data: bytes) -> None:
        self.writer.output(t, data)

    def input(self, t: float, data: bytes) -> None:
        self.writer.input(t, data)

    def resize(self, t: float, cols: int, rows: int) -> None:
        self.writer.resize(t, cols, rows)

    def frames(self) -> list[dict]:
        return []

    def close(self, t: float, status: str) -> str:
        return self.writer.close(t, status)


class HostdSink:
    """Frames to hostd over the `record.open` stream, built as bytes (no json.dumps on
    the data path): raw frames (wire.RECORD_FRAME, up to 64 KiB each) when hostd said
    `raw`, else `{"t":T,"o":"BASE64"}` lines of at most FRAME bytes each."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.sock = stream.client._sock
        self.sock.settimeout(SEND_TIMEOUT)
        self.id = stream.opened.get("id", "")
        self.raw = stream.opened.get("raw") is True

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, line: bytes) -> None:
        try:
            self.sock.sendall(line)
        except OSError as exc:
            raise SinkFailed(f"lost the connection to jit-hostd ({exc.strerror or exc})") \
                from None

    def _data(self, key: bytes, t: float, data: bytes) -> None:
        if self.raw:
            from hostd.wire import MAX_RAW, RAW, RECORD_FRAME

            for start in range(0, len(data), MAX_RAW):
                chunk = data[start:start + MAX_RAW]
                self._send(RECORD_FRAME.pack(RAW, key, t, len(chunk)) + chunk)
            return
        for start in range(0, len(data), FRAME):
            chunk = binascii.b2a_base64(data[start:start + FRAME], newline=False)
            self._send(b'{"t":%.6f,"%s":"%s"}\n' % (t, key, chunk))

    def output(self, t: float, data: bytes) -> None:
        self._data(b"o", t, data)

    def input(self, t: float, data: bytes) -> None:
        self._data(b"i", t, data)

    def resize(self, t: float, cols: int, rows: int) -> None:
        self._send(b'{"t":%.6f,"r":[%d,%d]}\n' % (t, cols, rows))

    def frames(self) -> list[dict]:
        """What hostd sent (a hangup); SinkFailed when it closed the stream."""
        from hostd.errors import JitError

        try:
            frame = self.stream.recv(timeout=SEND_TIMEOUT)
        except JitError as exc:
            raise SinkFailed(exc.message) from None
        if frame is None:
            raise SinkFailed("jit-hostd closed the recording stream")
        return [frame]

    def close(self, t: float, status: str) -> str:
        import json

        from hostd.errors import JitError

        self._send(json.dumps({"t": round(t, 6), "end": status[:64]}).encode() + b"\n")
        try:
            while True:
                frame = self.stream.recv(timeout=SEND_TIMEOUT)
                if frame is None:
                    raise SinkFailed("jit-hostd closed the stream before the recording's end")
                if "ok" in frame:
                    break
        except JitError as exc:
            raise SinkFailed(exc.message) from None
        finally:
            self.stream.close()
        if not frame.get("ok"):
            raise SinkFailed(str(frame.get("message", "the recording could not be closed")))
        return str(frame.get("sha256", ""))


def open_hostd(opts: Options, width: int, height: int, pty_mode: bool):
    """record.open with the one-time token: (sink, the answer)."""
    from hostd.client import Client
    from hostd.errors import JitError

    client = Client(opts.socket, timeout=SEND_TIMEOUT, trusted=True)
    fields = {"token": opts.token, "width": width, "height": height,
              "term": os.environ.get("TERM", "")[:64], "pty": pty_mode}
    try:
        stream = client.stream("record.open", raw=True, **fields)
    except JitError as exc:  # a hostd older than raw frames refuses the field (and
        if exc.code != "bad_request" or "'raw'" not in exc.message:  # keeps the token)
            raise
        stream = client.stream("record.open", **fields)
    return HostdSink(stream), stream.opened


def make_masker(rules: list, builtins: bool, fields=(), optional=()):
    """A masker of what the terminal shows (hostd.masking.screen), or None when there is
    nothing to mask (the fast path). `fields` and `optional` come from [masking]."""
    if not rules and not builtins:
        return None
    from hostd.masking.screen import ScreenMasker

    return ScreenMasker([(str(n), str(r)) for n, r in rules], builtins=builtins,
                        fields=[str(f) for f in fields or ()],
                        optional=[str(o) for o in optional or ()])


