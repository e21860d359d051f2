#!/usr/bin/python3
"""What synchronous=FULL costs hostd per activation, against NORMAL, on this disk.

One activation writes the store twice before and after touching /etc/group: insert_grant
(grant, token id and pending memberships in one transaction) and one set_membership per
group. This times N activations' worth of those calls (2 groups each, as role `ops`) in
a fresh state.db under DIR (default /var/tmp: a real disk, where /tmp may be tmpfs), for
each setting, and prints milliseconds per activation. Prints, asserts nothing.

    /usr/bin/python3 benchmarks/store_sync.py [N] [DIR]
"""

from __future__ import annotations

import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostd.state.store import Store

GROUPS = ("docker", "adm")


def grant_row(n: int) -> dict:
    now = int(time.time())
    return {"id": secrets.token_hex(6), "jti": f"bench-{n}-{secrets.token_hex(4)}",
            "issuer": "corp", "user": "alice", "uid": 1000, "role": "ops",
            "groups": list(GROUPS), "not_before": now, "exp": now + 3600, "reason": "bench",
            "ticket": "", "approved_by": [], "hosts": ["*"], "state": "active",
            "activated_at": now}


def run(mode: str, n: int, where: Path) -> list[float]:
    """Seconds per activation, N of them, with PRAGMA synchronous=mode."""
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        store = Store(Path(tmp) / "state.db")
        store.db.execute(f"PRAGMA synchronous={mode}")
        times = []
        for i in range(n):
            row = grant_row(i)
            start = time.perf_counter()
            store.insert_grant(row, [(g, False) for g in GROUPS])
            for g in GROUPS:
                store.set_membership(row["id"], g, "applied")
            times.append(time.perf_counter() - start)
        store.close()
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    where = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("/var/tmp")
    print(f"{n} activations (insert_grant + {len(GROUPS)} set_membership) in {where}")
    for mode in ("NORMAL", "FULL", "NORMAL", "FULL"):
        t = sorted(run(mode, n, where))
        print(f"  synchronous={mode:6}  total {sum(t) * 1000:8.1f} ms  "
              f"median {statistics.median(t) * 1000:6.2f} ms  "
              f"p99 {t[int(len(t) * 0.99) - 1] * 1000:6.2f} ms per activation")


if __name__ == "__main__":
    main()
