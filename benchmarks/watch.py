#!/usr/bin/python3
"""Live watching (issue 23): what watchers cost a recorded session, and how late they
see its output. A sandbox hostd (as root), a grant whose role records, the real
recorder started as sudo would start it (hostd's argv, token, frames over the socket,
hostd writing the cast), and real `jit watch` processes as the role's approvers.

1. Throughput, side by side in one run: the recorder around `cat FILE` (MiB of base64
   text, the built-in masking on, output to /dev/null), with no watcher and with three
   (`jit watch` as bob, carol and root, their output to /dev/null), ROUNDS times each,
   alternating. The command waits for one line on its stdin, written once the watchers
   are attached, so the clock runs over the output alone. Goal: 3 watchers >= 0.9x.
   Beside it, where the time goes: CPU seconds of the recorder (with cat), of hostd,
   and of the three `jit watch` processes from the go line on (medians).
2. Latency: the command prints CLOCK_MONOTONIC every 10 ms (LINES lines); one `jit
   watch` reads it and the benchmark stamps each line as it comes out of the watcher's
   stdout: output to the watcher's screen, p50/p99/max. Goal: p99 <= 50 ms.

Prints, asserts nothing.

    /usr/bin/python3 benchmarks/watch.py [MiB] [ROUNDS] [LINES]
"""

from __future__ import annotations

import base64
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

from sandbox import POLICY, PYTHON, USERS, Sandbox  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.protocol import request  # noqa: E402

WATCHED = POLICY + """
[roles.rec]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob", "carol"]
authenticate = false
record = "always"
sudo = [ { runas = "root", commands = ["/usr/bin/sh -c *", "/usr/bin/python3 -c *"] } ]
"""
INFO = ["user=alice", "uid=1001", "gid=1001", "cwd=/", "tty=", "pid=1", "ppid=1",
        "host=testhost"]
EMIT = ("import sys, time\n"
        "sys.stdin.readline()\n"
        "for i in range({n}):\n"
        "    print('T=%.6f' % time.monotonic(), flush=True)\n"
        "    time.sleep(0.01)\n")


def recorder(box: Sandbox, argv: list[str]) -> subprocess.Popen:
    """The recorder as sudo would start it for `argv`, stdin a pipe, stdout a pipe."""
    with Client(box.socket_path, trusted=True) as client:
        answer = client.call(request("sudo.check", mode="run", settings=[], user_info=INFO,
                                     argv=argv, env=["PATH=/usr/bin:/bin"]))
    if answer.get("decision") != "allow":
        sys.exit(f"watch.py: sudo.check said {answer}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(box.lib), "LANG": "C.UTF-8"}
    return subprocess.Popen([PYTHON, "-m", "hostd.record.main", "--socket",
                             str(box.socket_path), *answer["argv"][1:]], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def session_id(box: Sandbox, seen: set[str]) -> str:
    (rid,) = box.wait_for(lambda: [e["JIT_RECORDING"] for e in box.events("recording_started")
                                   if e["JIT_RECORDING"] not in seen], timeout=30)
    seen.add(rid)
    return rid


def watcher(box: Sandbox, user: str, rid: str, out) -> subprocess.Popen:
    cmd = [PYTHON, "-m", "hostd.cli", "watch", rid]
    if user != "root":
        cmd = ["setpriv", f"--reuid={USERS[user]}", f"--regid={USERS[user]}",
               "--clear-groups", *cmd]
    return subprocess.Popen(cmd, env=box.env, stdout=out, stderr=subprocess.DEVNULL,
                            cwd=box.root)


def attached(box: Sandbox, rid: str, n: int) -> None:
    box.wait_for(lambda: len([e for e in box.events("session_watch_started")
                              if e["JIT_RECORDING"] == rid]) >= n, timeout=30)


CPU: dict[str, list[float]] = {}  # where the time goes: CPU seconds per run, by part


def cpu_of(pid: int) -> float:
    """A process's user+system CPU seconds so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hostd_cpu(box: Sandbox) -> float:
    return cpu_of(box.proc.pid)


def reaped(proc: subprocess.Popen) -> float:
    """Wait for `proc`; its CPU seconds (with its children's: the recorder's cat;
    /proc's are in clock ticks, 10 ms)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def one_run(box: Sandbox, path: Path, watchers: int, seen: set[str]) -> tuple[float, int]:
    """Seconds from the go line to the recorder's exit; watchers dropped."""
    rec = recorder(box, ["/usr/bin/sh", "-c", f"read go; exec cat {path}"])
    rid = session_id(box, seen)
    procs = [watcher(box, u, rid, subprocess.DEVNULL)
             for u in ("bob", "carol", "root")[:watchers]]
    attached(box, rid, watchers)
    hostd_before = hostd_cpu(box)
    started_up = sum(cpu_of(p.pid) for p in procs)  # `jit watch`'s imports: before go
    started = time.perf_counter()
    rec.stdin.write(b"go\n")
    rec.stdin.close()
    while rec.stdout.read(1 << 20):
        pass
    recorder_cpu = reaped(rec)
    seconds = time.perf_counter() - started
    watchers_cpu = sum(reaped(p) for p in procs) - started_up
    CPU.setdefault(f"{watchers} recorder+cat", []).append(recorder_cpu)
    CPU.setdefault(f"{watchers} hostd", []).append(hostd_cpu(box) - hostd_before)
    CPU.setdefault(f"{watchers} watchers after go", []).append(watchers_cpu)
    dropped = sum(1 for p in procs if p.returncode != 0)
    return seconds, dropped


def latency(box: Sandbox, lines: int, seen: set[str]) -> tuple[list[float], list[float]]:
    """(delays to the user's own stdout, delays to the watcher's stdout), seconds."""
    rec = recorder(box, ["/usr/bin/python3", "-c", EMIT.format(n=lines)])
    rid = session_id(box, seen)
    w = watcher(box, "bob", rid, subprocess.PIPE)
    attached(box, rid, 1)
    own: list[float] = []
    reader = threading.Thread(target=stamp, args=(rec.stdout, own, lines))
    reader.start()
    rec.stdin.write(b"go\n")
    rec.stdin.close()
    watched: list[float] = []
    stamp(w.stdout, watched, lines)
    reader.join()
    rec.wait()
    w.wait(30)
    return own, watched


def stamp(stream, delays: list[float], lines: int) -> None:
    """Each `T=<monotonic>` line's delay as it comes out of `stream`."""
    for line in stream:
        arrived = time.monotonic()
        text = line.strip().decode(errors="replace")
        if text.startswith("T="):
            delays.append(arrived - float(text[2:]))
        if len(delays) == lines:
            break


def percentiles(delays: list[float]) -> str:
    d = sorted(delays)
    at = lambda q: d[min(len(d) - 1, int(q * len(d)))] * 1000  # noqa: E731
    return f"p50 {at(0.5):5.1f} ms, p99 {at(0.99):5.1f} ms, max {d[-1] * 1000:5.1f} ms"


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("watch.py: run as root (a real hostd in a sandbox root)")
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    lines = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    box = Sandbox(WATCHED)
    box.start()
    seen: set[str] = set()
    try:
        rc, out = box.jit_json("activate", box.issue("alice", role="rec"), user="alice")
        if rc != 0:
            sys.exit(f"watch.py: activation failed: {out}")
        with tempfile.NamedTemporaryFile(dir="/var/tmp", suffix=".txt") as f:
            chunk = base64.encodebytes(os.urandom(3 << 20))
            for _ in range(mib // 4):
                f.write(chunk)
            f.flush()
            size = os.path.getsize(f.name) / (1 << 20)
            os.chmod(f.name, 0o644)
            one_run(box, Path(f.name), 0, seen)  # warm-up (byte-compiling the sandbox copy)
            plain, watched, drops = [], [], 0
            for _ in range(rounds):
                plain.append(one_run(box, Path(f.name), 0, seen)[0])
                seconds, dropped = one_run(box, Path(f.name), 3, seen)
                watched.append(seconds)
                drops += dropped
        a, b = size / statistics.median(plain), size / statistics.median(watched)
        print(f"throughput, {size:.0f} MiB through jit-record and hostd (masked), "
              f"median of {rounds}:")
        print(f"  no watcher   {a:7.1f} MiB/s  (runs: "
              f"{', '.join(f'{size / s:.1f}' for s in plain)})")
        print(f"  3 watchers   {b:7.1f} MiB/s  (runs: "
              f"{', '.join(f'{size / s:.1f}' for s in watched)}; watchers dropped: {drops})")
        print(f"  ratio        {b / a:.2f}x  (goal >= 0.90x)")
        print("  CPU seconds, median: " + ", ".join(
            f"{part} {statistics.median(v):.2f}" for part, v in CPU.items()
            if not part.endswith("after go") or part.startswith("3")))
        own, watched = latency(box, lines, seen)
        print(f"latency, {lines} lines every 10 ms, from the command's print:")
        print(f"  to the user's own stdout   {percentiles(own)}  (the recorder: masking)")
        print(f"  to the watcher's stdout    {percentiles(watched)}  (goal p99 <= 50 ms)")
        added = [b - a for a, b in zip(own, watched, strict=False)]
        print(f"  added by watching (line by line, watcher - user) {percentiles(added)}")
        return 0
    finally:
        box.cleanup()


if __name__ == "__main__":
    sys.exit(main())
