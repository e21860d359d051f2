#!/usr/bin/python3
"""What pam_jit adds to each phase of a login, measured inside one process (issue 19).

benchmarks/pam_overhead.sh times whole `pamtester` processes: each run also pays a
process start, the loading of every module and libjson-c, and whatever else the
machine does meanwhile, so on a shared 2-core machine its medians move by a
millisecond between identical runs. Here one Python process calls libpam itself
(pam_start, pam_acct_mgmt, pam_open_session, pam_close_session, pam_end through
ctypes) and times every phase, for the login stack with pam_jit.so and for the same
stack without it (the profile's lines taken out), the two alternating login by login:
what a login waits for on its own path, phase by phase.

In one booted Debian 12 container with this tree's package installed (dist/), alice
gated with a login grant and bob not gated, both lingering (as in pam_overhead.sh).
LOGINS (default 300) logins per stack and user, ROUNDS (default 2) rounds; medians in
ms. Prints, asserts nothing.

    /usr/bin/python3 benchmarks/pam_phases.py          # as root on the host
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
PHASES = ("start", "account", "open", "close", "end")
STACKS = ("jit-phases-without", "login")

# the part that runs inside the container (python3 there, no jitaccess imports)
INSIDE = r'''
import ctypes, json, sys, time
pam = ctypes.CDLL("libpam.so.0")
CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                        ctypes.c_void_p)
conv_fn = CONV(lambda n, msg, resp, data: 19)  # PAM_CONV_ERR: nobody to show notices
class Conv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata", ctypes.c_void_p)]
conv = Conv(conv_fn, None)

def login(service, user):
    h = ctypes.c_void_p()
    t = [time.perf_counter()]
    rc = pam.pam_start(service.encode(), user.encode(), ctypes.byref(conv), ctypes.byref(h))
    t.append(time.perf_counter())
    for step in (pam.pam_acct_mgmt, pam.pam_open_session, pam.pam_close_session):
        if rc != 0:
            sys.exit(f"{service} {user}: PAM error {rc}")
        rc = step(h, 0)
        t.append(time.perf_counter())
    pam.pam_end(h, rc)
    t.append(time.perf_counter())
    return [b - a for a, b in zip(t, t[1:])]

stacks, user, n = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
seen = {s: [] for s in stacks}
for i in range(n):
    for s in (stacks if i % 2 == 0 else stacks[::-1]):
        seen[s].append(login(s, user))
print(json.dumps(seen))
'''


def stacks_script() -> str:
    """The login stack without pam_jit, as pam_overhead.sh builds it."""
    return ("cd /etc/pam.d && for p in account session; do "
            "grep -v -e pam_jit.so -e 'uid eq 0' -e 'service in jit-sudo' common-$p "
            "> jit-phases-without-$p; done && "
            "sed -e 's/^@include common-account$/@include jit-phases-without-account/' "
            "-e 's/^@include common-session$/@include jit-phases-without-session/' "
            "login > jit-phases-without && ! grep -q pam_jit jit-phases-without*")


def main() -> int:
    import json

    if os.geteuid() != 0:
        sys.exit("pam_phases: run as root (boots a container with systemd-nspawn)")
    sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))
    from container import Container
    from jithost import POLICY_TOML, add_users, configure, find_deb, install_deb, issue

    policy = POLICY_TOML + ('\n[roles.console]\ngroups = ["docker"]\nmax_ttl = "1h"\n'
                            'issuers = ["corp"]\nlogin = true\n\n'
                            '[login]\nrequire_grant = ["alice"]\n')
    logins, rounds = int(os.environ.get("LOGINS", "300")), int(os.environ.get("ROUNDS", "2"))
    box = Container.create("jit-bench-phases")
    try:
        box.boot()
        add_users(box)
        install_deb(box, find_deb())
        configure(box, policy)
        box.run(["jit", "activate", issue(box, "alice", "console", "1h")])
        box.run(["sh", "-c", stacks_script()])
        box.run(["loginctl", "enable-linger", "alice", "bob"])
        box.write("/root/pam_phases_inside.py", INSIDE)
        seen: dict[tuple[str, str], list[list[float]]] = {}
        for _ in range(rounds):
            for user in ("bob", "alice"):
                argv = ["python3", "/root/pam_phases_inside.py", ",".join(STACKS), user]
                box.run([*argv, "20"])  # warm: modules loaded, hostd's caches filled
                out = json.loads(box.run([*argv, str(logins)]).stdout)
                for stack, rows in out.items():
                    seen.setdefault((user, stack), []).extend(rows)
        report(seen, logins, rounds)
        return 0
    finally:
        box.close()


def report(seen: dict, logins: int, rounds: int) -> None:
    print(f"ms per phase, median of {rounds} x {logins} logins in one process "
          "(added = the login stack minus the same stack without pam_jit):")
    print(f"{'user':<7}{'stack':<22}" + "".join(f"{p:>9}" for p in PHASES) + f"{'total':>9}")
    for user, gated in (("bob", "ungated"), ("alice", "gated")):
        med = {}
        for stack in STACKS:
            rows = seen[(user, stack)]
            med[stack] = [statistics.median(r[i] for r in rows) * 1000
                          for i in range(len(PHASES))]
            med[stack].append(statistics.median(sum(r) for r in rows) * 1000)
            print(f"{user:<7}{stack:<22}" + "".join(f"{v:9.3f}" for v in med[stack]))
        added = [a - b for a, b in zip(med["login"], med[STACKS[0]], strict=True)]
        print(f"{user:<7}{'added (' + gated + ')':<22}" + "".join(f"{v:+9.3f}" for v in added))


if __name__ == "__main__":
    sys.exit(main())
