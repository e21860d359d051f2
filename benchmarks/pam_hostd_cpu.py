#!/usr/bin/python3
"""What one login costs hostd in CPU (issue 19): the answer to "how much of a login is
hostd's own work", measured so that other load on a shared machine cannot move it.

`benchmarks/pam_overhead.sh` times whole logins, and on a shared 2-core machine a
busy minute moves its medians by milliseconds. CPU time does not move with the load:
here each login (`pamtester login USER acct_mgmt open_session close_session` through
the installed stack, pam_systemd included, so the PAM process is in a real logind
session) is counted in microseconds of CPU (utime + stime, all threads) of jit-hostd,
and of systemd-logind, dbus-daemon and systemd-journald, which hostd's work can make
busy too.

Side by side in one booted Debian 12 container: the package of BASE (a git commit,
default the one before the hot-path work: 1d881d0) and this tree's dist/ package,
installed in turn (dpkg -i, hostd restarted), in ROUNDS rounds (default 2) of LOGINS
logins (default 300) per user, alice (gated, holding a login grant) and bob (not
gated); the medians over the rounds are printed with the ratio after/before.

Run as root on the host (boots the container with systemd-nspawn); `--inside` is the
part that runs in the container.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
UNITS = ("jit-hostd", "systemd-logind", "dbus", "systemd-journald")
OPS = ("acct_mgmt", "open_session", "close_session")


def _cpu(pid: int) -> float:
    """Seconds of CPU of the process, every thread (live and exited) counted."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _main_pid(unit: str) -> int:
    return int(subprocess.run(["systemctl", "show", "-P", "MainPID", unit],
                              capture_output=True, text=True, check=True).stdout)


def inside(deb: str, logins: int) -> None:
    """In the container: install `deb`, then per user µs of CPU per login, one line."""
    subprocess.run(["dpkg", "-i", deb], capture_output=True, check=True)
    subprocess.run(["systemctl", "restart", "jit-hostd"], check=True)
    pids = {u: _main_pid(u) for u in UNITS}
    for user in ("alice", "bob"):
        login = ["pamtester", "login", user, *OPS]
        for _ in range(5):  # hostd's first answers load modules, fill caches
            subprocess.run(login, capture_output=True, check=True)
        before = {u: _cpu(p) for u, p in pids.items()}
        for _ in range(logins):
            subprocess.run(login, capture_output=True, check=True)
        after = {u: _cpu(p) for u, p in pids.items()}
        print(user, *(f"{(after[u] - before[u]) / logins * 1e6:.0f}" for u in UNITS),
              flush=True)


def base_deb(commit: str) -> Path:
    """The package as `commit` builds it (cached by commit, like the e2e's old package)."""
    full = subprocess.run(["git", "-C", str(REPO), "rev-parse", commit],
                          capture_output=True, text=True, check=True).stdout.strip()
    cache = Path(os.environ.get("JIT_E2E_CACHE", "/var/cache/jitaccess-e2e"))
    cached = cache / f"jitaccess-{full[:12]}.deb"
    if cached.exists():
        return cached
    with tempfile.TemporaryDirectory(prefix="jit-base-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", full],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        subprocess.run([f"{tmp}/packaging/build-deb.sh"], env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LINTIAN": "0", "HOME": "/root"},
            capture_output=True, check=True, timeout=900)
        built = next(Path(tmp, "dist").glob("jitaccess_*.deb"))
        shutil.copy(built, f"{cached}.tmp")
        Path(f"{cached}.tmp").rename(cached)
    return cached


def on_host() -> int:
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    from container import Container
    from jithost import POLICY_TOML, add_users, configure, find_deb, install_deb, issue

    policy = POLICY_TOML + ('\n[roles.console]\ngroups = ["docker"]\nmax_ttl = "1h"\n'
                            'issuers = ["corp"]\nlogin = true\n\n'
                            '[login]\nrequire_grant = ["alice"]\n')
    logins, rounds = int(os.environ.get("LOGINS", "300")), int(os.environ.get("ROUNDS", "2"))
    base = os.environ.get("BASE", "1d881d0")
    debs = {"before": base_deb(base), "after": find_deb()}
    box = Container.create("jit-bench-cpu")
    try:
        box.boot()
        add_users(box)
        install_deb(box, debs["after"])
        configure(box, policy)
        box.run(["jit", "activate", issue(box, "alice", "console", "1h")])
        box.copy_in(HERE, "/root/pam_hostd_cpu.py")
        for name, deb in debs.items():
            box.copy_in(deb, f"/root/{name}.deb")
        seen: dict[tuple[str, str], list[list[int]]] = {}
        for _ in range(rounds):
            for name in debs:
                r = box.run(["python3", "/root/pam_hostd_cpu.py", "--inside",
                             f"/root/{name}.deb", str(logins)], timeout=3600)
                for line in r.stdout.split("\n"):
                    if line.strip():
                        user, *cpu = line.split()
                        seen.setdefault((name, user), []).append([int(x) for x in cpu])
        report(seen, base, logins, rounds)
        return 0
    finally:
        box.close()


def report(seen: dict, base: str, logins: int, rounds: int) -> None:
    print(f"µs of CPU per login (median of {rounds} rounds of {logins} logins; "
          f"before = {base}, after = this tree)")
    print(f"{'user':<7}{'package':<8}" + "".join(f"{u:>18}" for u in UNITS))
    for user in ("alice", "bob"):
        med = {}
        for name in ("before", "after"):
            rows = seen[(name, user)]
            med[name] = [statistics.median(r[i] for r in rows) for i in range(len(UNITS))]
            print(f"{user:<7}{name:<8}" + "".join(f"{v:>18.0f}" for v in med[name]))
        b, a = med["before"][0], med["after"][0]
        print(f"{user}: jit-hostd {a:.0f} µs per login after, {b:.0f} before: "
              f"ratio {a / b:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--inside"]:
        inside(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if os.geteuid() != 0:
        print("pam_hostd_cpu: run as root (boots a container with systemd-nspawn)",
              file=sys.stderr)
        sys.exit(2)
    sys.exit(on_host())
