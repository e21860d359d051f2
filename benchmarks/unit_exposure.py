#!/usr/bin/python3
"""`systemd-analyze security` of jit-hostd.service, before and after hostd went off the
network (issue 21 item 2), side by side, on a booted Debian 12 container.

Boots a throwaway container, installs dist/jitaccess_*.deb with apt, and loads the unit
as it was before the change (BASELINE_COMMIT's systemd/jit-hostd.service, installed as
jit-hostd-baseline.service next to the packaged one, same ExecStart) so both are scored
by the same systemd 252 online. Prints both exposure levels, the webhook sender's, the
ratio after/before, and the lines whose verdict differs. Run as root after `make deb`.
Prints, asserts nothing.

    /usr/bin/python3 benchmarks/unit_exposure.py [BASELINE_COMMIT]
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from container import Container  # noqa: E402
from jithost import find_deb, prepare  # noqa: E402

BASELINE_COMMIT = "1d881d0"  # main before the webhook moved out of hostd
ISSUE_QUOTED = 2.3  # what issue 21 said `systemd-analyze security` gave "today"
EXPOSURE = re.compile(r"Overall exposure level for \S+: ([0-9.]+)")


def score(box: Container, unit: str) -> tuple[float, dict[str, str]]:
    """The exposure level and each check's line (name -> verdict and weight)."""
    out = box.run(["systemd-analyze", "security", "--no-pager", unit], check=False).stdout
    lines = {}
    for line in out.splitlines():
        if line[:1] in ("✓", "✗"):
            name = line[2:].split()[0]
            lines[name] = line[0] + " " + line.rstrip().rsplit("  ", 1)[-1].strip()
    found = EXPOSURE.search(out)
    return (float(found.group(1)) if found else float("nan")), lines


def main() -> None:
    commit = sys.argv[1] if len(sys.argv) > 1 else BASELINE_COMMIT
    baseline = subprocess.run(["git", "-C", str(REPO), "show",
                               f"{commit}:systemd/jit-hostd.service"],
                              capture_output=True, text=True, check=True).stdout
    box = Container.create("jit-bench-exposure")
    try:
        prepare(box, find_deb())
        box.write("/etc/systemd/system/jit-hostd-baseline.service",
                  baseline.replace("Also=jit-hostd.socket", ""))
        box.run(["systemctl", "daemon-reload"])
        before, was = score(box, "jit-hostd-baseline.service")
        after, now = score(box, "jit-hostd.service")
        sender, _ = score(box, "jit-webhook.service")
        print(f"jit-hostd.service exposure: before ({commit}) {before:.1f}   "
              f"after {after:.1f}   ratio {after / before:.2f}   (lower is better)")
        print(f"  (issue 21 quoted {ISSUE_QUOTED} for the unit before the change; the "
              f"baseline above is measured)")
        print(f"jit-webhook.service exposure: {sender:.1f}")
        for name in sorted(set(was) | set(now)):
            if was.get(name) != now.get(name):
                print(f"  {name}: {was.get(name, '-')}  ->  {now.get(name, '-')}")
        print("still open in jit-hostd.service:")
        for name, verdict in sorted(now.items()):
            if verdict.startswith("✗"):
                print(f"  {name}: {verdict}")
    finally:
        box.close()


if __name__ == "__main__":
    main()
