#!/usr/bin/python3
"""What jit_sudo.so costs per sudo (issue 8): `sudo -n true` through the plugin (an
active grant, no password, no recording) against sudoers with NOPASSWD, side by side in
one hyperfine run in one booted Debian 12 container with the built .deb installed.
Goal: ratio <= 1.0 (first milestone 1.10). Prints hyperfine's table and the ratio.

The container is the e2e suite's (tests/e2e/container.py) plus Debian's hyperfine; its
rootfs is cached apart, keyed by that package list. sudo has no flag to pick a
sudo.conf, so hyperfine's --prepare copies the right one in before each run (outside
the timing). `runuser -u alice` is in both commands alike.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "e2e"))

from container import PACKAGES, Container  # noqa: E402
from jithost import add_users, configure, find_deb, install_deb, issue  # noqa: E402

POLICY = """\
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp"]
authenticate = false
sudo = [ { runas = "root", commands = ["/usr/bin/true"] } ]

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""
RUNS = 300


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (boots a container with systemd-nspawn)")
    box = Container.create("jit-bench", packages=(*PACKAGES, "hyperfine"))
    try:
        box.boot()
        add_users(box)
        install_deb(box, find_deb())
        configure(box)
        configure(box, POLICY)
        box.write("/etc/sudoers.d/bench", "alice ALL=(root) NOPASSWD: /usr/bin/true\n", 0o440)
        plain = box.path("/etc/sudo.conf").read_text()
        box.run(["jit", "setup", "sudo", "--enable"])
        box.run(["cp", "/etc/sudo.conf", "/root/sudo.conf.jit"])
        box.write("/root/sudo.conf.sudoers", plain)
        token = issue(box, "alice", "ops", "1h")
        box.run(["jit", "activate", token], user="alice")
        box.run(["chmod", "0644", "/root/sudo.conf.jit", "/root/sudo.conf.sudoers"])
        out = "/root/bench.json"
        box.run(["hyperfine", "--warmup", "20", "--runs", str(RUNS), "-N", "--export-json", out,
                 "--command-name", "sudoers NOPASSWD", "--prepare",
                 "cp /root/sudo.conf.sudoers /etc/sudo.conf",
                 "runuser -u alice -- sudo -n /usr/bin/true",
                 "--command-name", "jit_sudo.so (grant)", "--prepare",
                 "cp /root/sudo.conf.jit /etc/sudo.conf",
                 "runuser -u alice -- sudo -n /usr/bin/true"], timeout=600)
        results = json.loads(box.path(out).read_text())["results"]
        base, jit = (r["mean"] for r in results)
        for r in results:
            print(f"{r['command']:<24} mean {r['mean'] * 1000:6.2f} ms  "
                  f"stddev {r['stddev'] * 1000:5.2f} ms  (n={len(r['times'])})")
        print(f"jit_sudo.so / sudoers: ratio {jit / base:.2f}   goal <= 1.0 "
              f"(first milestone 1.10)")
    finally:
        box.close()


if __name__ == "__main__":
    main()
