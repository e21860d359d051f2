"""Session recordings: asciicast v2 files with a hash chain (DESIGN.md §9, §13).

A recording is `/var/log/jit/sessions/ID.cast` (ID: 16 lowercase hex characters), written
by hostd alone. The file is plain asciicast v2, so `asciinema cat FILE` and `asciinema
play FILE` (Debian's asciinema 2.2, which unpacks every event line as exactly `[time,
code, data]`) show it; the chain lives in marker events (`"m"`), which asciinema skips.

Format `jit-cast/1` (a major.minor discipline as in tlog: a new major is incompatible,
a new minor only adds fields):

* line 1, the header: `{"version": 2, "width", "height", "timestamp", "env", "jit":
  {"format": "jit-cast/1", "id", "user", "runas", "command", "grant_id", "host",
  "started", "session_id", ...}}`;
* then event lines `[t, "o"|"i"|"r"|"m", data]`, t in seconds since the start (6
  decimals, never decreasing), text decoded from UTF-8 (invalid bytes become U+FFFD);
* the chain: h1 = SHA-256(line 1), hN = SHA-256(hN-1 || line N), over each line's bytes
  without its newline. A marker `[t, "m", "jit-chain sha256:HEX"]` carries the chain
  value of every line before it: one right after the header, then at least every 64
  events or 64 KiB; the last line is `[t, "m", "jit-end sha256:HEX STATUS"]` (HEX: the
  chain up to the line before). The digest of the recording is the chain value after
  that last line: close() returns it and hostd logs it (JIT_RECORDING_SHA256).

The chain alone catches damage and naive edits (an edited, deleted, moved or added line
breaks the next marker; a missing end line is a truncation); someone who can rewrite the
file can also recompute the chain, which the digest in the journal (written by hostd,
beyond the recorded user's reach) catches: verify() takes it as `expected_digest`.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "jit-cast/1"
RECORDING_ID = re.compile(r"[0-9a-f]{16}")
MARK_EVERY = 64                # events between chain markers
MARK_BYTES = 64 * 1024         # or bytes of event lines, whichever comes first
MAX_LINE = 16 * 1024 * 1024    # a longer line is malformed (the writer never makes one)
CHAIN_PREFIX = "jit-chain sha256:"
END_PREFIX = "jit-end sha256:"
_ASCIICAST_KEYS = ("width", "height", "timestamp", "env", "title", "idle_time_limit")
_CODES = ("o", "i", "r", "m")


class CastError(ValueError):
    """A recording that cannot be read: says which file, which line and why."""

    def __init__(self, path: Path | str, line: int | None, reason: str) -> None:
        where = f"{path}" + (f" line {line}" if line else "")
        super().__init__(f"{where}: {reason}")
        self.path, self.line, self.reason = str(path), line, reason


def new_id() -> str:
    """A recording id: 16 lowercase hex characters."""
    import secrets
    return secrets.token_hex(8)


def _dumps(value: Any) -> bytes:
    # ASCII-only JSON: every control character and every non-ASCII one is escaped, so a
    # line never holds a raw CR or LF (asciinema reads the file in text mode), and
    # CPython's ASCII escaper is the fast one (~3x the other on terminal text).
    return json.dumps(value).encode("ascii")


_escape = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def _event_line(t: float, code: str, text: str) -> bytes:
    """json.dumps([t, code, text]), byte for byte, without the encoder's machinery."""
    return f'[{t!r}, "{code}", {_escape(text)}]'.encode("ascii")


def build_header(header: dict) -> dict:
    """The header line's object: asciicast keys at the top, the rest under "jit"."""
    out: dict[str, Any] = {"version": 2, "width": 80, "height": 24,
                           "timestamp": int(time.time())}
    meta: dict[str, Any] = {}
    for key, value in header.items():
        if key in _ASCIICAST_KEYS:
            out[key] = value
        elif key == "jit" and isinstance(value, dict):
            meta.update(value)
        elif key != "version":
            meta[key] = value
    for key in ("width", "height"):
        if not isinstance(out[key], int) or isinstance(out[key], bool) or not (
                0 < out[key] < 100000):
            raise ValueError(f"header {key} must be a positive integer")
    meta["format"] = FORMAT
    out["jit"] = meta
    return out


class CastWriter:
    """Writes one recording. Not thread-safe: one writer, one thread at a time (hostd
    calls it from its worker, off the event loop)."""

    def __init__(self, path: Path, header: dict, *, mode: int = 0o600,
                 group: int | None = None) -> None:
        """Create `path` (O_EXCL|O_NOFOLLOW: never an existing file or a symlink) with
        `mode` (0600; 0640 with `group`, e.g. adm, lets that group read it) and write the
        header line and the first chain marker."""
        self.path = Path(path)
        self.header = build_header(header)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, mode & 0o640)
        try:
            if group is not None:
                os.fchown(fd, -1, group)
            os.fchmod(fd, mode & 0o640)  # whatever the umask
        except BaseException:
            os.close(fd)
            os.unlink(self.path)
            raise
        self._fh = os.fdopen(fd, "wb", buffering=256 * 1024)
        self._out = codecs.getincrementaldecoder("utf-8")("replace")
        self._in = codecs.getincrementaldecoder("utf-8")("replace")
        self._t = 0.0
        self._since_mark = 0
        self._bytes_since_mark = 0
        self._closed = False
        line = _dumps(self.header)
        self._h = hashlib.sha256(line).digest()
        self.lines = 1
        self._fh.write(line + b"\n")
        self._mark()

    @property
    def digest(self) -> str:
        """The chain value after the last line written (sha256 hex)."""
        return self._h.hex()

    def _time(self, t: float) -> float:
        if not isinstance(t, int | float) or not math.isfinite(t):
            raise ValueError("event time must be a finite number")
        self._t = max(self._t, round(float(t), 6))
        return self._t

    def _line(self, t: float, code: str, text: str) -> None:
        if self._closed:
            raise ValueError("recording is closed")
        line = _event_line(t, code, text)
        h = hashlib.sha256(self._h)
        h.update(line)
        self._h = h.digest()
        self._fh.write(line + b"\n")
        self.lines += 1
        self._since_mark += 1
        self._bytes_since_mark += len(line) + 1

    def _event(self, t: float, code: str, text: str) -> None:
        self._line(self._time(t), code, text)
        if self._since_mark >= MARK_EVERY or self._bytes_since_mark >= MARK_BYTES:
            self._mark()

    def _mark(self) -> None:
        self._line(self._t, "m", CHAIN_PREFIX + self.digest)
        self._since_mark = self._bytes_since_mark = 0
        self._fh.flush()  # what is chained is on disk up to here if hostd dies

    def output(self, t: float, data: bytes) -> None:
        """Terminal output at t seconds; a UTF-8 sequence split between calls is kept."""
        text = self._out.decode(data)
        if text:
            self._event(t, "o", text)

    def input(self, t: float, data: bytes) -> None:
        """Keyboard input (recorded only when the role asks for it, masked by then)."""
        text = self._in.decode(data)
        if text:
            self._event(t, "i", text)

    def resize(self, t: float, cols: int, rows: int) -> None:
        if not all(isinstance(v, int) and 0 < v < 100000 for v in (cols, rows)):
            raise ValueError("terminal size must be positive integers")
        self._event(t, "r", f"{cols}x{rows}")

    def close(self, t: float, status: str) -> str:
        """Write what the decoders hold and the end line, fsync; return the digest."""
        if self._closed:
            return self.digest
        self._time(t)
        for decoder, code in ((self._out, "o"), (self._in, "i")):
            text = decoder.decode(b"", final=True)
            if text:
                self._line(self._t, code, text)
        self._line(self._t, "m", f"{END_PREFIX}{self.digest} {status}")
        self._closed = True
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        try:
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return self.digest
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return self.digest

    def __enter__(self) -> CastWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close(self._t, "error")


def _parse_header(path: Path | str, raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CastError(path, 1, "header is not JSON") from None
    if not isinstance(header, dict) or header.get("version") != 2:
        raise CastError(path, 1, "not an asciicast v2 header")
    meta = header.get("jit")
    if not isinstance(meta, dict) or not isinstance(meta.get("format"), str):
        raise CastError(path, 1, "not a jit recording (no jit.format)")
    if meta["format"].split(".")[0] != FORMAT:
        raise CastError(path, 1, f"format {meta['format']!r} is not {FORMAT}")
    return header


def _parse_event(path: Path | str, number: int, raw: bytes) -> tuple[float, str, str]:
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CastError(path, number, "event is not JSON") from None
    if not (isinstance(event, list) and len(event) == 3
            and isinstance(event[0], int | float) and not isinstance(event[0], bool)
            and math.isfinite(event[0]) and event[0] >= 0
            and event[1] in _CODES and isinstance(event[2], str)):
        raise CastError(path, number, "event is not [time, code, text]")
    return float(event[0]), event[1], event[2]


def _open(path: Path):
    """A recording opened for reading: never through a symlink, never a FIFO or a device
    (opening a FIFO planted under --dir would hang). FileNotFoundError and
    PermissionError as they are; anything else is a CastError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:
        raise CastError(path, None, f"cannot open: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CastError(path, None, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _raw_lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, whether it had one), one at a time; a line longer than
    MAX_LINE comes as its first MAX_LINE + 1 bytes, incomplete."""
    with _open(path) as fh:
        while True:
            raw = fh.readline(MAX_LINE + 1)
            if not raw:
                return
            if raw.endswith(b"\n"):
                yield raw[:-1], True
            else:
                yield raw, False
                return


def iter_cast(path: Path) -> tuple[dict, Iterator[tuple[float, str, str]]]:
    """The header, and the events one at a time (for recordings too big to hold): the
    iterator raises CastError when it reaches a malformed line."""
    fh = _open(path)
    try:
        first = fh.readline(MAX_LINE + 1)
        if not first:
            raise CastError(path, None, "empty file")
        if not first.endswith(b"\n"):
            raise CastError(path, 1, "header line is cut short (no newline)")
        header = _parse_header(path, first[:-1])
    except BaseException:
        fh.close()
        raise

    def events() -> Iterator[tuple[float, str, str]]:
        with fh:
            last = 0.0
            number = 1
            while True:
                raw = fh.readline(MAX_LINE + 1)
                number += 1
                if not raw:
                    return
                if not raw.endswith(b"\n"):
                    raise CastError(path, number, "line too long" if len(raw) > MAX_LINE
                                    else "last line is cut short (no newline)")
                event = _parse_event(path, number, raw[:-1])
                if event[0] < last:
                    raise CastError(path, number, "time goes backwards")
                last = event[0]
                yield event

    return header, events()


@dataclass
class Verdict:
    """What verify() found. `digest` is the chain value of the file as it is (after its
    last complete line); `first_bad_line` the first line (1-based) that cannot be
    trusted, None if all can; `reason` says why, in words."""

    ok: bool
    digest: str
    first_bad_line: int | None
    reason: str
    lines: int = 0
    complete: bool = False


def verify(path: Path, expected_digest: str | None) -> Verdict:
    """Check the chain line by line, the end line, and (if given) the digest the journal
    holds, reading the file once as a stream. Never raises for a damaged file
    (FileNotFoundError if there is none, PermissionError if it cannot be read)."""
    lines = _raw_lines(path)
    try:
        first = next(lines, None)
    except CastError as exc:
        return Verdict(False, "", 1, exc.reason)
    if first is None:
        return Verdict(False, "", 1, "empty file")
    h = hashlib.sha256(first[0]).digest()
    count = 1
    good = 0          # lines known good: everything up to the last matching marker
    last_t = 0.0
    ended = False

    def bad(line: int, reason: str) -> Verdict:
        return Verdict(False, h.hex(), line, reason, count, ended)

    if not first[1]:
        return bad(1, "truncated: line 1 is cut short")
    try:
        _parse_header(path, first[0])
    except CastError as exc:
        return bad(1, exc.reason)
    for number, (raw, complete) in enumerate(lines, start=2):
        count = number
        if not complete:
            return bad(number, "line too long" if len(raw) > MAX_LINE
                       else f"truncated: line {number} is cut short")
        if ended:
            return bad(number, f"line {number} follows the end line")
        try:
            t, code, text = _parse_event(path, number, raw)
        except CastError as exc:
            return bad(number, exc.reason)
        if t < last_t:
            return bad(number, "time goes backwards: lines were moved or edited")
        last_t = t
        if code == "m" and text.startswith((CHAIN_PREFIX, END_PREFIX)):
            prefix = CHAIN_PREFIX if text.startswith(CHAIN_PREFIX) else END_PREFIX
            if text[len(prefix):len(prefix) + 64] != h.hex():
                return bad(good + 1, _broken(good + 1, number))
            good = number
            ended = prefix == END_PREFIX
        step = hashlib.sha256(h)
        step.update(raw)
        h = step.digest()
    if not ended:
        return Verdict(False, h.hex(), good + 1,
                       f"truncated: no end line (lines up to {good} verified)", count, False)
    if expected_digest is not None and expected_digest.lower() != h.hex():
        return Verdict(False, h.hex(), None, "digest differs from the one hostd logged: "
                       "the file was rewritten", count, True)
    return Verdict(True, h.hex(), None, "chain intact" + (
        ", digest matches the one hostd logged" if expected_digest else ""), count, True)


def _broken(first_bad: int, number: int) -> str:
    """Why the marker on line `number` fails, naming the lines since the last good one."""
    if first_bad >= number:
        span = f"line {number}"
    elif first_bad == number - 1:
        span = f"line {first_bad}"
    else:
        span = f"lines {first_bad}-{number - 1}"
    return (f"chain broken: {span} edited, removed, moved or added (the marker on line "
            f"{number} does not match)")


def summary(path: Path) -> dict:
    """A listing row from the header and the last line only (recordings can be large):
    id, user, runas, command, grant_id, host, started, duration, size, ended (status)."""
    with _open(path) as fh:
        st = os.fstat(fh.fileno())
        first = fh.readline(MAX_LINE + 1)
        if not first.endswith(b"\n"):
            raise CastError(path, 1, "header line is cut short")
        header = _parse_header(path, first[:-1])
        tail_at = max(len(first), st.st_size - 1024 * 1024)
        fh.seek(tail_at)
        tail = fh.read()
    duration, status = 0.0, None
    pieces = tail.split(b"\n")
    pieces.pop()  # b"" after the last newline, or a line still being written
    if pieces and pieces[-1]:
        try:
            t, code, text = _parse_event(path, 0, pieces[-1])
            duration = t
            if code == "m" and text.startswith(END_PREFIX):
                status = text[len(END_PREFIX) + 65:]
        except CastError:
            pass  # damaged: verify-recording says how; the listing shows what it can
    meta = header["jit"]
    row = {key: meta.get(key) for key in
           ("id", "user", "runas", "command", "grant_id", "host", "started", "session_id")}
    row["id"] = row["id"] or Path(path).name.removesuffix(".cast")
    row.update(duration=duration, size=st.st_size, status=status,
               ended=status is not None, timestamp=header.get("timestamp"))
    return row
