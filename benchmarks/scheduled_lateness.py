#!/usr/bin/python3
"""Scheduled-grant lateness with real systemd timers, beside expiry lateness (issue 22
goal: a scheduled grant activates within 1 s of its start, p99 over 50 staggered grants).

Boots one throwaway Debian 12 container, installs dist/jitaccess_*.deb with apt, and
schedules 50 grants for 50 users (`jit issue --start @T`, `jit activate`), their starts
staggered two per second from 90 s on and each lasting 60 s, so their expiries are
staggered the same way. Then prints, for the same 50 grants read back from the journal
(`journalctl -o json`): p50/p99/max of (grant_activated - nbf) and (membership_added -
nbf) for the starts, and of (grant_expired - exp) for the ends, the baseline the starts
are measured against (benchmarks/expiry_lateness.py; same machinery). Run as root after
`./packaging/build-deb.sh`. Prints, asserts nothing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

from container import Container  # noqa: E402
from jithost import CORP_KEY, configure, events, find_deb, prepare  # noqa: E402

N = 50
LENGTH = 60
POLICY = '[roles.docker]\ngroups = ["docker"]\nmax_ttl = "4h"\nissuers = ["corp"]\n'


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(label: str, late: list[float]) -> str:
    return (f"{label:<32} n={len(late)}  p50 {pct(late, .5):+.3f} s  p99 "
            f"{pct(late, .99):+.3f} s  max {max(late):+.3f} s  mean "
            f"{statistics.mean(late):+.3f} s   goal p99 <= 1 s   ratio "
            f"{pct(late, .99) / 1.0:.2f}")


def schedule(box: Container, users: list[str], first: int) -> dict[str, tuple[int, int]]:
    """grant id -> (nbf, exp) of one pending grant per user."""
    out = {}
    for i, user in enumerate(users):
        start = first + i // 2
        token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                         user, "--role", "docker", "--start", f"@{start}", "--for",
                         f"{LENGTH}s"]).stdout.strip()
        g = json.loads(box.run(["jit", "activate", token, "--json"]).stdout)["grant"]
        assert g["state"] == "pending", g
        out[g["id"]] = (start, start + LENGTH)
    return out


def main() -> None:
    deb = find_deb()
    box = Container.create("jit-bench-sched")
    try:
        prepare(box, deb)
        configure(box, POLICY)
        box.run(f"for i in $(seq -w 1 {N}); do useradd -M u$i; done", timeout=120)
        users = [f"u{i:02d}" for i in range(1, N + 1)]
        windows = schedule(box, users, int(time.time()) + 90)
        first = min(s for s, _ in windows.values())
        last = max(e for _, e in windows.values())
        print(f"{len(windows)} grants pending; first starts in {first - time.time():.0f} s, "
              f"last ends in {last - time.time():.0f} s")
        if first <= time.time():
            print("scheduling outlasted the lead: the starts were not measured on time")
        time.sleep(max(0.0, last - time.time()) + 5)  # a benchmark waits, it syncs nothing
        for kind, index in (("grant_activated", 0), ("membership_added", 0),
                            ("grant_expired", 1)):
            late = [int(e["__REALTIME_TIMESTAMP"]) / 1e6 - windows[e["JIT_GRANT_ID"]][index]
                    for e in events(box, kind) if e.get("JIT_GRANT_ID") in windows]
            print(line(f"{kind} - {'nbf' if index == 0 else 'exp'}", late))
    finally:
        box.close()


if __name__ == "__main__":
    main()
