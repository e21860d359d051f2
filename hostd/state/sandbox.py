"""Test knobs of a sandbox daemon (`jit-hostd --root DIR`), never of a real host.

Integration tests drive a real hostd; two things they must not wait for in real seconds
are its clock (a grant that expires while hostd is down, a grant listed after its end)
and its idle timeout (a wait that outlives it). They set them in
DIR/etc/jit/test-knobs.json:

    {"clock_offset": 3600, "idle_timeout": 0.5}

`clock_offset` (seconds) is added to the wall clock that Core reads (grant expiry,
listings, requests); it is read again whenever the file changes, so a test moves time
forward while hostd runs. `idle_timeout` (seconds) replaces the 10 s a quick connection
may sit silent; read once at start.

Production can never use them: `knobs()` reads the file only when `paths.sandboxed`
(a --root other than /), and the packaged units start jit-hostd without --root. A knob
file under the real /etc/jit is never opened.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hostd.paths import Paths

KNOBS = "etc/jit/test-knobs.json"


@dataclass(frozen=True)
class Knobs:
    """What the daemon takes from the sandbox: its clock and its idle timeout (None:
    the server's own)."""

    clock: Callable[[], float] = field(default=time.time)
    idle_timeout: float | None = None


class OffsetClock:
    """The wall clock plus the file's `clock_offset`, re-read when the file changes (one
    stat per reading: sandbox only)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: int | None = None
        self.offset = 0.0

    def __call__(self) -> float:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._seen:
            self._seen = mtime
            self.offset = float(_read(self.path).get("clock_offset", 0.0))
        return time.time() + self.offset


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def knobs(paths: Paths) -> Knobs:
    """The sandbox's knobs; the defaults (and no file read) on a real host."""
    if not paths.sandboxed:
        return Knobs()
    path = paths.root / KNOBS
    idle = _read(path).get("idle_timeout")
    return Knobs(clock=OffsetClock(path),
                 idle_timeout=float(idle) if isinstance(idle, int | float) and idle > 0
                 else None)
