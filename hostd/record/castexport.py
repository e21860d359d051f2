"""Export a recording (hostd/record/castfile.py) in util-linux `script` classic format,
so `scriptreplay` plays it where asciinema is not installed (`jit recordings export`)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

from hostd.record.castfile import END_PREFIX, RECORDING_ID


def export_events(path: Path, header: dict, events: Iterable[tuple[float, str, str]],
                  directory: Path) -> tuple[Path, Path]:
    """Write `ID.log` and `ID.timing` in util-linux `script` classic format into
    `directory` (new files, 0600), from the header and events of iter_cast() (a
    recording is never held in memory whole), so `scriptreplay -t ID.timing ID.log`
    plays the session: the log holds a `Script started` line, the output bytes, a
    `Script done` line; each timing line is `DELAY BYTES` for one output event."""
    directory = Path(directory)
    meta = header.get("jit") if isinstance(header.get("jit"), dict) else {}
    rid = str(meta.get("id") or Path(path).name.removesuffix(".cast"))
    if not RECORDING_ID.fullmatch(rid):
        rid = "recording"
    log_path, timing_path = directory / f"{rid}.log", directory / f"{rid}.timing"
    stamp = header.get("timestamp")
    started = time.strftime("%Y-%m-%d %H:%M:%S+00:00", time.gmtime(
        stamp if isinstance(stamp, int | float) else 0))
    command = meta.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    head = f"Script started on {started} [COMMAND={json.dumps(str(command or ''))} " \
           f"COLUMNS=\"{header.get('width')}\" LINES=\"{header.get('height')}\"]\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    log_fd = os.open(log_path, flags, 0o600)
    try:
        timing_fd = os.open(timing_path, flags, 0o600)
    except BaseException:
        os.close(log_fd)
        os.unlink(log_path)
        raise
    try:
        with os.fdopen(log_fd, "wb") as log, os.fdopen(timing_fd, "w") as timing:
            log.write(head.encode("utf-8", "replace"))
            last = 0.0
            status = ""
            for t, code, text in events:
                if code == "m" and text.startswith(END_PREFIX):
                    status = text[len(END_PREFIX) + 65:]
                if code != "o":
                    continue
                data = text.encode("utf-8", "replace")
                timing.write(f"{t - last:.6f} {len(data)}\n")
                log.write(data)
                last = t
            log.write(f"\nScript done on {started} [COMMAND_EXIT_CODE="
                      f"\"{_exit_code(status)}\"]\n".encode())
    except BaseException:  # a malformed line half-way: no half export left behind
        for p in (log_path, timing_path):
            p.unlink(missing_ok=True)
        raise
    return log_path, timing_path


def _exit_code(status: str) -> str:
    m = re.fullmatch(r"(?:exit|status)[ =](\d{1,3})(?:\D.*)?", status, re.DOTALL)
    return m.group(1) if m else "?"
