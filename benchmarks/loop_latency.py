#!/usr/bin/python3
"""Nothing slow on hostd's event loop (issue 7): p50/p99 of `status` and `grant.list`
while 20 activations and revocations run against a 10,000-member group.

A real jit-hostd in a sandbox root (as root): every activation and revocation runs real
`gpasswd -Q` on a group of 10,000 members (18-60 ms each). A probe thread asks `status`
and `grant.list` over its own connection the whole time; the same probe first runs with
nothing else going on, side by side in one run. Goal: p99 <= 5 ms under load.
`--repo DIR` measures another checkout's hostd (say, an older commit) the same way.
Prints only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))
sys.path.insert(0, str(HERE.parent))

import sandbox  # noqa: E402
from daemon_scale import add_members  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.protocol import request  # noqa: E402

GOAL_MS = 5.0
CHANGES = 20
POLICY = '[roles.docker]\ngroups = ["docker"]\nmax_ttl = "4h"\nissuers = ["corp"]\n'


def probe(path: Path, stop, results) -> None:
    """Ask status and grant.list in turn until told to stop; latencies in ms. Runs in a
    process of its own, so the benchmark's own threads never add to what it measures."""
    out: dict[str, list[float]] = {"status": [], "grant.list": []}
    with Client(path) as client:
        while not stop.is_set():
            for op, fields in (("status", {}), ("grant.list", {"all": True})):
                t = time.perf_counter()
                answer = client.call(request(op, **fields))
                out[op].append((time.perf_counter() - t) * 1000)
                assert answer["ok"], answer
            time.sleep(0.001)
    results.put(out)


def percentiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=100, method="inclusive")
    return q[49], q[98]


def measure(box: sandbox.Sandbox, tokens: list[str] | None, idle_seconds: float) -> dict:
    ctx = multiprocessing.get_context("fork")
    stop, results = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=probe, args=(box.socket_path, stop, results))
    prober.start()
    time.sleep(0.2)
    t = time.perf_counter()
    if tokens is None:
        time.sleep(idle_seconds)
    else:
        with Client(box.socket_path, timeout=60) as client:
            for token in tokens:
                g = client.call(request("grant.activate", token=token))["grant"]
                client.call(request("grant.revoke", id=g["id"]))
    elapsed = time.perf_counter() - t
    stop.set()
    out = results.get(timeout=30)
    prober.join()
    return {"elapsed": elapsed, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="measure the hostd of another checkout")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (real gpasswd in a sandbox root)")
    if args.repo:
        sandbox.REPO = Path(args.repo).resolve()
    box = sandbox.Sandbox(POLICY)
    try:
        add_members(box)
        box.start()
        tokens = [box.issue("alice", duration="1h") for _ in range(CHANGES)]
        idle = measure(box, None, 2.0)
        busy = measure(box, tokens, 0)
        print(f"hostd from {sandbox.REPO}; {CHANGES} activations + revocations on a "
              f"10,000-member group took {busy['elapsed']:.2f}s "
              f"({busy['elapsed'] / CHANGES / 2 * 1000:.0f} ms per change)")
        for op in ("status", "grant.list"):
            i50, i99 = percentiles(idle[op])
            b50, b99 = percentiles(busy[op])
            print(f"{op:<11} idle p50 {i50:6.2f} ms p99 {i99:6.2f} ms | under changes "
                  f"p50 {b50:6.2f} ms p99 {b99:6.2f} ms (n={len(busy[op])})   "
                  f"goal p99 <= {GOAL_MS:.0f} ms   ratio {b99 / GOAL_MS:.2f}")
    finally:
        box.cleanup()


if __name__ == "__main__":
    main()
