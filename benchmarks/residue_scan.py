#!/usr/bin/python3
"""What one residue scan costs (the /proc pass at the end of a grant), against procps.

hostd scans /proc once when a grant ends, once more after the SIGTERM grace, and then
until nothing holds a taken group; the scan runs in a thread of its own but holds the
GIL while it parses. This times `residue.scan` over this host's real /proc (a uid and a
gid nothing holds, so every process is read and none is found), side by side with the
baseline an administrator would use for the same question, `ps -e -o pid=,uid=,supgid=`
(procps, one process start included). Prints milliseconds per scan and the ratio;
asserts nothing.

    /usr/bin/python3 benchmarks/residue_scan.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostd.server import residue

UID, GID = 59_999, 59_998  # held by nothing: every process is read, none matches


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    procs = sum(1 for name in os.listdir("/proc") if name.isdigit())
    scan = timed(lambda: residue.scan(Path("/proc"), UID, {GID}), rounds)
    ps = timed(lambda: subprocess.run(["ps", "-e", "-o", "pid=,uid=,supgid="],
                                      capture_output=True, check=True), rounds)
    a, b = statistics.median(scan) * 1000, statistics.median(ps) * 1000
    print(f"{procs} processes, {rounds} rounds, median ms per scan")
    print(f"  residue.scan                 {a:8.2f} ms  ({a * 1000 / procs:.1f} us/process)")
    print(f"  baseline ps -e -o supgid     {b:8.2f} ms")
    print(f"  ratio scan/baseline          {a / b:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
