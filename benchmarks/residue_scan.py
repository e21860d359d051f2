#!/usr/bin/python3
"""What one residue scan costs (the /proc pass at the end of a grant), against procps.

hostd scans /proc once when a grant ends, once more after the SIGTERM grace, and then
until nothing holds a taken group; the scan runs in a thread of its own but holds the
GIL while it parses. This times `residue.scan` over this host's real /proc (a uid and a
gid nothing holds, so every process is read and none is found), side by side with the
baseline an administrator would use for the same question, `ps -e -o pid=,uid=,supgid=`
(procps, one process start included). Prints milliseconds per scan and the ratio;
asserts nothing.

With `--spawn N FDS` (root) it first starts N real `sleep` processes holding FDS open
descriptors each, then times today's pass (residue.scan) against the pass with
descriptors (residue_fds.scan: one stat of /proc/PID per process, a status read only
where needed, one stat per descriptor of the processes it looks at) with the N
processes run as a system account (uid 999, outside the user's slice: not looked at),
as a login account (uid 47300: every descriptor looked at), and a mix (one in ten a
login account). A third figure, the floor, only lists /proc/PID/fd of the processes
the pass looks at (no stat, no status): no pass that looks at every descriptor of
those processes can cost less.

    /usr/bin/python3 benchmarks/residue_scan.py [ROUNDS]
    /usr/bin/python3 benchmarks/residue_scan.py 20 --spawn 1000 50
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostd.server import residue, residue_fds

UID, GID = 59_999, 59_998  # held by nothing: every process is read, none matches


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def spawn(n: int, fds: int, login_every: int) -> list[subprocess.Popen]:
    """n sleeps with `fds` descriptors each (0-2 and the rest on /etc/hostname); every
    `login_every`-th one a login account's, the others a system account's."""
    held = [os.open("/etc/hostname", os.O_RDONLY) for _ in range(fds - 3)]
    out = []
    try:
        for i in range(n):
            uid = 47300 if login_every and i % login_every == 0 else 999
            out.append(subprocess.Popen(
                ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep",
                 "3600"], pass_fds=held, close_fds=True, stdin=subprocess.DEVNULL))
    finally:
        for fd in held:
            os.close(fd)
    for p in out:  # until each has become sleep (setpriv execs it)
        while (Path("/proc") / str(p.pid) / "comm").read_text() != "sleep\n":
            pass
    return out


def floor(pids: list[int], login_every: int) -> None:
    """List the descriptor directories of the processes the pass looks at."""
    for i, pid in enumerate(pids):
        if login_every and i % login_every == 0:
            os.listdir(f"/proc/{pid}/fd")


def spawned(rounds: int, n: int, fds: int) -> None:
    for label, every in (("system account", 0), ("login account", 1), ("1 in 10 login", 10)):
        procs = spawn(n, fds, every)
        try:
            total = sum(len(os.listdir(f"/proc/{p.pid}/fd")) for p in procs)
            pids = [p.pid for p in procs]
            base, new, low = [], [], []
            for _ in range(rounds):  # alternating: the machine's load hits all alike
                base += timed(lambda: residue.scan(Path("/proc"), UID, {GID}), 1)
                new += timed(lambda: residue_fds.scan(Path("/proc"), UID, {GID}), 1)
                low += timed(lambda: floor(pids, every), 1)  # noqa: B023 (run at once)
            a, b, c = (statistics.median(x) * 1000 for x in (base, new, low))
            print(f"{n} spawned processes ({label}), {total} descriptors, {rounds} rounds")
            print(f"  today: residue.scan          {a:8.2f} ms")
            print(f"  with descriptors             {b:8.2f} ms")
            print(f"  ratio                        {b / a:8.2f}")
            print(f"  floor: listing their fds     {c:8.2f} ms  (ratio {c / a:.2f})")
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    if "--spawn" in sys.argv:
        at = sys.argv.index("--spawn")
        spawned(rounds, int(sys.argv[at + 1]), int(sys.argv[at + 2]))
        return 0
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
