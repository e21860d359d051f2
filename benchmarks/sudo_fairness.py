#!/usr/bin/python3
"""One user's wrong passwords against another's sudo (issue 17, item 4).

In one booted Debian 12 container with the built .deb installed (the e2e suite's), bob
runs authenticated sudos (`echo PW | sudo -S /usr/bin/whoami`, the password checked by
hostd through PAM; --gap seconds apart, so they span the stream) and each is timed:
first alone, then while alice starts 10 wrong-password sudos a second (each costs
pam_unix's ~2 s fail delay).
Prints bob's p50, p99 and failures for both runs side by side, and the ratio of the
p99s. Goal: p99 with alice <= 1 s.

`--deb PATH` measures another build (e.g. one made from an older commit with
./packaging/build-deb.sh in an exported tree) the same way, for a before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

from container import Container  # noqa: E402
from jithost import add_users, configure, find_deb, install_deb, issue  # noqa: E402

POLICY = """\
[roles.secure]
groups = []
max_ttl = "1h"
issuers = ["corp"]
record = "never"
sudo = [ { runas = "root", commands = ["/usr/bin/whoami"] } ]

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""

# Runs in the container as root: bob's timed sudos, optionally with alice's flood.
DRIVER = r'''
import json, subprocess, sys, threading, time
runs, rate, flood = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "flood"
gap = float(sys.argv[4])
stop = threading.Event()
alice = []

def wrong():
    while not stop.is_set():
        alice.append(subprocess.Popen(
            ["runuser", "-u", "alice", "--", "sh", "-c",
             "echo wrong | sudo -S /usr/bin/whoami"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        stop.wait(1 / rate)

if flood:
    threading.Thread(target=wrong, daemon=True).start()
    time.sleep(5)  # load generation: alice's stream is established before bob starts
times, failures = [], []
for _ in range(runs):
    t = time.monotonic()
    r = subprocess.run(["runuser", "-u", "bob", "--", "sudo", "-S", "/usr/bin/whoami"],
                       input="battery staple\n", capture_output=True, text=True)
    times.append(time.monotonic() - t)
    if r.returncode != 0 or r.stdout.strip() != "root":
        failures.append(r.stderr.strip()[-120:])
    time.sleep(gap)  # bob's sudos spread over the stream, as a person's would be
stop.set()
told = [p.communicate()[1] for p in alice]
print(json.dumps({"times": times, "failures": failures, "alice": len(alice),
                  "alice_busy": sum("password checks" in t for t in told),
                  "alice_unreachable": sum("cannot reach" in t for t in told)}))
'''


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(box: Container, runs: int, rate: float, flood: bool, gap: float) -> dict:
    out = box.run(["python3", "/root/fairness.py", str(runs), str(rate),
                   "flood" if flood else "alone", str(gap)], timeout=1800).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="the .deb to measure (default: dist/)")
    parser.add_argument("--runs", type=int, default=40, help="bob's sudos per run")
    parser.add_argument("--rate", type=float, default=10.0, help="alice's sudos a second")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between bob's sudos")
    opts = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (boots a container with systemd-nspawn)")
    deb = opts.deb or find_deb()
    box = Container.create("jit-bench-fair")
    try:
        box.boot()
        add_users(box)
        install_deb(box, deb)
        configure(box)
        configure(box, POLICY)
        box.run(["jit", "setup", "sudo", "--enable"])
        box.run(["chpasswd"], input="alice:correct horse\nbob:battery staple\n")
        for user in ("alice", "bob"):
            box.run(["jit", "activate", issue(box, user, "secure", "1h")], user=user)
        box.write("/root/fairness.py", DRIVER)
        alone = measure(box, opts.runs, opts.rate, False, opts.gap)
        loaded = measure(box, opts.runs, opts.rate, True, opts.gap)
    finally:
        box.close()
    print(f"{deb}: bob's authenticated sudo, {opts.runs} runs each, {opts.gap:g} s apart")
    print(f"{'':28} {'p50':>8} {'p99':>8} {'max':>8}  failed")
    for name, r in (("alone", alone), (f"alice {opts.rate:g} wrong/s", loaded)):
        t = r["times"]
        print(f"{name:28} {quantile(t, .5):7.3f}s {quantile(t, .99):7.3f}s "
              f"{max(t):7.3f}s  {len(r['failures'])}/{len(t)}")
    print(f"alice's sudos: {loaded['alice']}, told her checks are queued: "
          f"{loaded['alice_busy']}, 'cannot reach the access daemon': "
          f"{loaded['alice_unreachable']}")
    if loaded["failures"]:
        print(f"bob's failures, first: {loaded['failures'][0]}")
    ratio = quantile(loaded["times"], .99) / quantile(alone["times"], .99)
    print(f"p99 with alice / alone: ratio {ratio:.2f}   goal: p99 with alice <= 1 s "
          f"({'met' if quantile(loaded['times'], .99) <= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    main()
