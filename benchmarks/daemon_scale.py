#!/usr/bin/python3
"""hostd at scale (issue 2 goals): 10,000 active grants -> start-up reconcile <= 2 s,
daemon RSS <= 60 MB; then activation + revocation round trips per second.

Runs a real jit-hostd in a sandbox root (as root). The 10,000 grants and their
memberships are seeded straight into state.db and etc/group (as 10,000 activations would
leave them) so the run takes seconds; the round trips then go through the real socket,
real verification and real `gpasswd -Q` against that 10,000-member group. Prints only.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

from sandbox import Sandbox  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.protocol import request  # noqa: E402
from hostd.state.store import Store  # noqa: E402

N = 10_000
ROUND_TRIPS = 200
POLICY = '[roles.docker]\ngroups = ["docker"]\nmax_ttl = "4h"\nissuers = ["corp"]\n'


def add_members(box: Sandbox, group: str = "docker", n: int = N) -> list[str]:
    """n users u00000... in the sandbox's passwd, all members of `group`."""
    users = [f"u{i:05d}" for i in range(n)]
    with open(box.root / "etc/passwd", "a") as fh:
        fh.writelines(f"{u}:x:{10000 + i}:{10000 + i}::/:/bin/sh\n" for i, u in enumerate(users))
    for name in ("group", "gshadow"):
        path = box.root / "etc" / name
        lines = path.read_text().splitlines()
        out = [line + ("," if line.split(":")[3] else "") + ",".join(users)
               if line.startswith(f"{group}:") else line for line in lines]
        path.write_text("\n".join(out) + "\n")
    return users


def seed(box: Sandbox) -> None:
    users = add_members(box)
    store = Store(box.root / "var/lib/jit/state.db")
    now = int(time.time())
    for i, u in enumerate(users):
        gid = f"{i:012x}"
        store.insert_grant({"id": gid, "jti": f"seed-{i}", "issuer": "corp", "user": u,
                            "uid": 10000 + i, "role": "docker", "groups": ["docker"],
                            "not_before": now, "exp": now + 3600 + i % 600, "reason": "bench",
                            "ticket": "", "approved_by": [], "hosts": ["*"],
                            "state": "active", "activated_at": now}, [("docker", False)])
        store.set_membership(gid, "docker", "applied")
    store.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (real gpasswd in a sandbox root)")
    box = Sandbox(POLICY)
    try:
        t = time.perf_counter()
        seed(box)
        print(f"seeded {N} active grants in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        box.start()
        ready = time.perf_counter() - t
        assert box.proc is not None
        client = Client(box.socket_path)
        status = client.call(request("status"))
        print(f"start-up with {status['active_grants']} live grants (process start, reconcile,"
              f" socket ready): {ready:.2f}s   goal 2.0s   ratio {ready / 2:.2f}")
        time.sleep(2)  # let the background re-arming of 10,000 timers finish
        rss = rss_mb(box.proc.pid)
        print(f"daemon RSS: {rss:.1f} MB   goal 60 MB   ratio {rss / 60:.2f}")

        tokens = [box.issue("alice", duration="1h") for _ in range(ROUND_TRIPS)]
        t = time.perf_counter()
        for token in tokens:
            g = client.call(request("grant.activate", token=token))["grant"]
            client.call(request("grant.revoke", id=g["id"]))
        elapsed = time.perf_counter() - t
        print(f"activate + revoke round trips: {ROUND_TRIPS / elapsed:.1f}/s "
              f"({elapsed / ROUND_TRIPS * 1000:.1f} ms each, two gpasswd runs on a "
              f"{N}-member group)")
        print(f"daemon RSS after: {rss_mb(box.proc.pid):.1f} MB")
    finally:
        box.cleanup()


if __name__ == "__main__":
    main()
