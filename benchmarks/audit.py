#!/usr/bin/python3
"""`jit audit --json` over 100,000 events, against `journalctl -o json` over the same.

The events (a busy host's grants, requests, sudo commands and expiries, built by hostd's
own Events class) are written into a separate journal file with systemd-journal-remote,
never into the host's journal: 100,000 entries would flood it (and journald's rate limit
would drop most of them). Both readers are pointed at that file: `jit audit
--journal-file` (a hidden test/benchmark option) and `journalctl --file`. Each runs as a
whole process (Python start-up included) with its output going to /dev/null, ROUNDS
times, alternating; the medians and their ratio are printed. Goal: jit audit <= 2 s.
Prints, asserts nothing.

    /usr/bin/python3 benchmarks/audit.py [N] [ROUNDS]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from audit_stream import lifecycle, write_journal  # noqa: E402

GOAL = 2.0


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, cwd=REPO)
    return time.perf_counter() - started


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        path = Path(tmp) / "bench.journal"
        started = time.perf_counter()
        write_journal(lifecycle(n, int((time.time() - 86400) * 1e6)), path)
        print(f"wrote {n} events to a journal file ({path.stat().st_size >> 20} MiB) in "
              f"{time.perf_counter() - started:.1f} s")
        jit = [sys.executable, "-m", "hostd.cli", "audit", "--json",
               "--journal-file", str(path)]
        anchor = ["journalctl", "-o", "json", "--no-pager", "--file", str(path)]
        count = subprocess.run(jit, capture_output=True, check=True, cwd=REPO).stdout.count(b"\n")
        shown = subprocess.run(anchor, capture_output=True, check=True).stdout.count(b"\n")
        print(f"jit audit --json prints {count} events, journalctl -o json {shown}")
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(timed(jit))
            theirs.append(timed(anchor))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"jit audit --json      median {a:.3f} s  (min {min(ours):.3f}, max {max(ours):.3f})"
              f"  goal <= {GOAL:.1f} s: {'met' if a <= GOAL else 'MISSED'}")
        print(f"journalctl -o json    median {b:.3f} s  (min {min(theirs):.3f}, "
              f"max {max(theirs):.3f})")
        print(f"ratio jit audit / journalctl: {a / b:.2f}")


if __name__ == "__main__":
    main()
