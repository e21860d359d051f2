#!/usr/bin/python3
"""sudo.check under load (issue 8): 50 concurrent clients asking as the sudo plugin
asks (root, sudo's vectors, an active grant, no password) against a real jit-hostd in a
sandbox root. Goal: >= 1,000 checks/s and p99 <= 10 ms. Prints throughput, p50/p99 and
their ratios to the goals.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

from sandbox import POLICY, Sandbox  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.protocol import request  # noqa: E402

CLIENTS = 50
SECONDS = 5.0
GOAL_RATE, GOAL_P99_MS = 1000, 10.0
SUDO_POLICY = POLICY + """
[roles.sudo-ops]
groups = []
max_ttl = "1h"
issuers = ["corp"]
authenticate = false
sudo = [ { runas = "root", commands = ["/usr/bin/true"] } ]
"""
VECTORS = {"settings": ["runas_user=root", "noninteractive=true"],
           "user_info": ["user=alice", "uid=1001", "gid=1001", "cwd=/", "tty=/dev/pts/1",
                         "pid=1", "ppid=1", "host=testhost"],
           "argv": ["/usr/bin/true"], "env": ["TERM=xterm", "PATH=/usr/bin:/bin"]}


def client(path: Path, until: float, results) -> None:
    """One client process (not a thread: the benchmark's GIL must not be what it
    measures), asking in turn until `until`; its latencies in ms go to `results`."""
    out = []
    with Client(path, trusted=True) as c:
        while time.time() < until:
            t = time.perf_counter()
            answer = c.call(request("sudo.check", mode="run", **VECTORS))
            out.append((time.perf_counter() - t) * 1000)
            assert answer.get("decision") == "allow", answer
    results.put(out)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (a real daemon in a sandbox root)")
    box = Sandbox(SUDO_POLICY)
    try:
        box.start()
        rc, out = box.jit_json("activate", box.issue("alice", role="sudo-ops"), user="alice")
        assert rc == 0, out
        ctx = multiprocessing.get_context("fork")
        results = ctx.Queue()
        started = time.time()
        procs = [ctx.Process(target=client, args=(box.socket_path, started + SECONDS, results))
                 for _ in range(CLIENTS)]
        for p in procs:
            p.start()
        every = [x for _ in procs for x in results.get(timeout=60)]
        elapsed = time.time() - started
        for p in procs:
            p.join()
        q = statistics.quantiles(every, n=100, method="inclusive")
        rate = len(every) / elapsed
        print(f"sudo.check, {CLIENTS} concurrent clients, {elapsed:.1f} s: {rate:,.0f}/s "
              f"(goal >= {GOAL_RATE:,}: ratio {rate / GOAL_RATE:.2f}); p50 {q[49]:.2f} ms, "
              f"p99 {q[98]:.2f} ms (goal <= {GOAL_P99_MS:.0f} ms: ratio "
              f"{q[98] / GOAL_P99_MS:.2f})")
    finally:
        box.cleanup()


if __name__ == "__main__":
    main()
