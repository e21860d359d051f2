#!/usr/bin/python3
"""Typing echo in a recorded terminal session (issue 23's second round): the time from
a key written to the user's terminal to its echo coming back out of it, through
`jit-record --file` (the pty path, the built-in masking on) around `cat`, against the
same keys through `cat` on a bare pty. One key every 20 ms (KEYS keys), p50/p99/max of
each, side by side in one run; no goal of its own (the masker's idle flush used to
hold each echo up to 50 ms: DESIGN §13 "Live watching: the two missed goals").

Prints, asserts nothing.

    /usr/bin/python3 benchmarks/echo_latency.py [KEYS] [REPO]

REPO (default: this checkout) is the tree whose recorder runs, so that two trees can
be measured side by side.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
PYTHON = "/usr/bin/python3"


def session(argv: list[str], repo: Path) -> tuple[subprocess.Popen, int]:
    """`argv` on a new pty (the user's terminal): (the process, the master)."""
    master, slave = pty.openpty()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(repo), "TERM": "xterm",
           "LANG": "C.UTF-8", "HOME": "/tmp"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, pass_fds=(), cwd="/tmp",
                            preexec_fn=lambda: __import__("fcntl").ioctl(
                                0, __import__("termios").TIOCSCTTY, 0))
    os.close(slave)
    return proc, master


def read_until(master: int, want: bytes, deadline: float) -> bool:
    """Read the master until `want` came (True) or the deadline passed."""
    got = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            continue
        try:
            got += os.read(master, 4096)
        except OSError:
            return False
        if want in got:
            return True
    return False


def echoes(argv: list[str], repo: Path, keys: int) -> list[float]:
    """Seconds from each key written to its echo read back."""
    proc, master = session(argv, repo)
    try:
        os.write(master, b"ready\n")
        if not read_until(master, b"ready\r\n", time.monotonic() + 15):
            sys.exit(f"echo_latency.py: {argv[0]} did not start")
        time.sleep(0.3)  # let the start-up output settle (a measurement, not a sync)
        while select.select([master], [], [], 0)[0]:
            os.read(master, 4096)
        delays = []
        for i in range(keys):
            key = b"abcdefghijklmnopqrstuvwxyz"[i % 26:i % 26 + 1]
            sent = time.monotonic()
            os.write(master, key)
            if read_until(master, key, sent + 2):
                delays.append(time.monotonic() - sent)
            if i % 20 == 19:  # a line now and then: cat's own output comes too
                os.write(master, b"\n")
                read_until(master, key + b"\r\n", time.monotonic() + 2)
            time.sleep(0.02)
        os.write(master, b"\x04")
        return delays
    finally:
        proc.kill()
        proc.wait(10)
        os.close(master)


def percentiles(delays: list[float]) -> str:
    d = sorted(delays)
    at = lambda q: d[min(len(d) - 1, int(q * len(d)))] * 1000  # noqa: E731
    return f"p50 {at(0.5):5.1f} ms, p99 {at(0.99):5.1f} ms, max {d[-1] * 1000:5.1f} ms"


def main() -> int:
    keys = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    repo = Path(sys.argv[2]).resolve() if len(sys.argv) > 2 else HERE.parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        cast = str(Path(tmp) / "echo.cast")
        recorded = echoes([PYTHON, "-m", "hostd.record.main", "--file", cast, "--", "/bin/cat"],
                          repo, keys)
        bare = echoes(["/bin/cat"], repo, keys)
    print(f"typing echo, {keys} keys 20 ms apart ({repo}):")
    print(f"  bare pty, cat          {percentiles(bare)}")
    print(f"  jit-record (masked)    {percentiles(recorded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
