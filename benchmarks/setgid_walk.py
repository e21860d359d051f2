#!/usr/bin/python3
"""What the setgid walk at a grant's end costs, against `find` asking the same question.

Builds a temporary tree of FILES regular files (default 200,000: 400 directories of
500, every tenth directory one level deeper) of which 20 are setgid files of the
runner's own group, then times, side by side and alternating, hostd's walk
(hostd/server/setgid.py, one target: this uid and gid, since = now + 1 h so only the
owner rule applies) and `find TREE -xdev -user U -perm -2000 -group G`. The walk clears
the 20 bits on its first round; they are set again before every round so both sides
always find 20. Prints seconds per pass and the ratio; asserts nothing.

    /usr/bin/python3 benchmarks/setgid_walk.py [FILES] [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostd.server import setgid

PER_DIR = 500
PLANTED = 20


def build(root: Path, files: int) -> list[Path]:
    planted = []
    dirs = max(1, files // PER_DIR)
    for d in range(dirs):
        where = root / f"d{d:04}" / ("sub" if d % 10 == 0 else "")
        where.mkdir(parents=True, exist_ok=True)
        for f in range(PER_DIR):
            p = where / f"f{f:04}"
            p.touch()
            if len(planted) < PLANTED and f == 7 and d % (dirs // PLANTED or 1) == 0:
                planted.append(p)
    return planted


def plant(paths: list[Path]) -> None:
    for p in paths:
        os.chmod(p, 0o2755)


def walk_once(root: Path, target: setgid.Target) -> int:
    hits: list[str] = []
    w = setgid.Walk([target], lambda path, mode, t: hits.append(path), lambda: False,
                    lambda pos: None)
    w.run([str(root)])
    return len(hits)


def find_once(root: Path, uid: int, gid: int) -> int:
    out = subprocess.run(["find", str(root), "-xdev", "-user", str(uid), "-perm", "-2000",
                          "-group", str(gid)], capture_output=True, check=True).stdout
    return len(out.splitlines())


def main() -> int:
    files = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    uid, gid = os.getuid(), os.getgid()
    target = setgid.Target("bench", uid, "bench", {gid: "bench"}, int(time.time()) + 3600)
    with tempfile.TemporaryDirectory(prefix="jit-setgid-bench-") as tmp:
        root = Path(tmp)
        planted = build(root, files)
        walk_t, find_t, found = [], [], (0, 0)
        for _ in range(rounds):
            plant(planted)
            t = time.perf_counter()
            n_find = find_once(root, uid, gid)
            find_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            n_walk = walk_once(root, target)
            walk_t.append(time.perf_counter() - t)
            found = (n_walk, n_find)
        a, b = statistics.median(walk_t), statistics.median(find_t)
        print(f"{files} files, {rounds} rounds (warm cache), median seconds per pass; "
              f"found walk {found[0]} / find {found[1]} of {len(planted)} planted")
        print(f"  setgid.Walk (clears too)         {a:8.3f} s")
        print(f"  find -xdev -user -perm -group    {b:8.3f} s")
        print(f"  ratio walk/find                  {a / b:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
