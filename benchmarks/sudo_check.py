#!/usr/bin/python3
"""sudo.check under load (issue 8): 50 concurrent clients asking as the sudo plugin
asks (root, sudo's vectors, an active grant, no password) against a real jit-hostd in a
sandbox root. Goal: >= 1,000 checks/s with p99 <= 10 ms. Two phases, one run:

- paced: the 50 clients together offer the goal's 1,000 checks/s (each one every
  50 ms): the p99 a busy host sees at that rate;
- saturated: each client asks again as soon as answered: the most hostd serves, and
  the latency of a queue of 50 (Little's law: 50 / throughput).

Prints both with their ratios to the goals.
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


def client(path: Path, until: float, interval: float, results) -> None:
    """One client process (not a thread: the benchmark's GIL must not be what it
    measures), asking every `interval` seconds (0: at once again) until `until`; its
    latencies in ms go to `results`."""
    out = []
    with Client(path, trusted=True) as c:
        due = time.monotonic()
        while time.time() < until:
            if interval:
                time.sleep(max(0.0, due - time.monotonic()))
                due += interval
            t = time.perf_counter()
            answer = c.call(request("sudo.check", mode="run", **VECTORS))
            out.append((time.perf_counter() - t) * 1000)
            assert answer.get("decision") == "allow", answer
    results.put(out)


def phase(box: Sandbox, interval: float) -> tuple[float, list[float]]:
    """(checks per second, latencies in ms) of CLIENTS clients for SECONDS."""
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    started = time.time()
    procs = [ctx.Process(target=client, args=(box.socket_path, started + SECONDS, interval,
                                              results)) for _ in range(CLIENTS)]
    for p in procs:
        p.start()
    every = [x for _ in procs for x in results.get(timeout=60)]
    for p in procs:
        p.join()
    return len(every) / SECONDS, every  # the clients ask for SECONDS, from `started`


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (a real daemon in a sandbox root)")
    box = Sandbox(SUDO_POLICY)
    try:
        box.start()
        rc, out = box.jit_json("activate", box.issue("alice", role="sudo-ops"), user="alice")
        assert rc == 0, out
        for name, interval in (("paced", CLIENTS / GOAL_RATE), ("saturated", 0.0)):
            rate, every = phase(box, interval)
            q = statistics.quantiles(every, n=100, method="inclusive")
            print(f"sudo.check {name:<9} {CLIENTS} clients: {rate:7,.0f}/s (goal >= "
                  f"{GOAL_RATE:,}: ratio {rate / GOAL_RATE:.2f}); p50 {q[49]:6.2f} ms, "
                  f"p99 {q[98]:6.2f} ms (goal <= {GOAL_P99_MS:.0f} ms: ratio "
                  f"{q[98] / GOAL_P99_MS:.2f})")
    finally:
        box.cleanup()


if __name__ == "__main__":
    main()
