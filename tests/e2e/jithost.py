"""jitaccess on a booted container: install the .deb, configure it, read its journal.

Shared by the e2e tests and the demo so both drive the package the same way, through
the command line of DESIGN.md §12 and the journal of §10, as an administrator would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from container import Container, log

REPO = Path(__file__).resolve().parents[2]
# JIT_E2E_DIST: test a package built elsewhere (default: the tree's own `make deb`).
DIST = Path(os.environ.get("JIT_E2E_DIST") or REPO / "dist")

USERS = {"alice": 1001, "bob": 1002, "carol": 1003}
CORP_KEY = "/etc/jit/keys/corp.key"

ISSUER_TOML = """\
name = "corp"
public_keys = ["/etc/jit/keys/corp.key.pub"]
algorithms = ["EdDSA"]
username_claim = "sub"
"""

# The host policy of the scenarios (DESIGN.md §4 keys only). alice may also ask for the
# role herself (`jit request`), and bob approves.
POLICY_TOML = """\
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host"]
requesters = ["alice", "%developers"]
approvers = ["bob"]
approvals = 1
"""

T = TypeVar("T")


@dataclass
class Host:
    """A booted container with jitaccess installed, and what was seen while installing."""

    box: Container
    state_after_install: str


def find_deb(dist: Path = DIST) -> Path:
    """The newest built package; a missing one is an error (make test-e2e builds it)."""
    debs = sorted(dist.glob("jitaccess_*.deb"), key=lambda p: p.stat().st_mtime)
    if not debs:
        raise FileNotFoundError(
            f"no {dist}/jitaccess_*.deb: build it first with `make deb` "
            "(`make test-e2e` and `make demo` do)")
    return debs[-1]


def add_users(box: Container) -> None:
    """alice, bob, carol (uids 1001-1003), groups docker and developers (alice in it)."""
    for name, uid in USERS.items():
        box.run(["groupadd", "--gid", str(uid), name])
        box.run(["useradd", "--uid", str(uid), "--gid", str(uid), "--create-home",
                 "--shell", "/bin/bash", name])
    box.run(["groupadd", "docker"])
    box.run(["groupadd", "developers"])
    box.run(["gpasswd", "-a", "alice", "developers"])


def install_deb(box: Container, deb: Path) -> subprocess.CompletedProcess[str]:
    """`apt install ./jitaccess_*.deb` inside; the rootfs already has every dependency,
    and the container has no network, so a missing dependency fails here, loudly."""
    inside = box.copy_in(deb, f"/root/{deb.name}")
    return box.run(["apt-get", "install", "-y",
                    "-o", "Acquire::Retries=0", inside], timeout=300)


def configure(box: Container, policy: str = POLICY_TOML) -> None:
    """Make the corp issuer key, trust it, write the policy, have hostd re-read it."""
    if not box.path(CORP_KEY).exists():
        box.run(["jit", "keygen", "--out", CORP_KEY])
    box.write("/etc/jit/issuers.d/corp.toml", ISSUER_TOML)
    box.write("/etc/jit/jit.toml", policy)
    box.run(["jit", "check-config"])
    box.run(["systemctl", "reload-or-restart", "jit-hostd.service"])


def issue(box: Container, user: str, role: str, duration: str, reason: str = "e2e") -> str:
    """A token signed with the corp key (as an issuer's own machine would make it)."""
    proc = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user", user,
                    "--role", role, "--for", duration, "--reason", reason])
    return proc.stdout.strip()


def grants(box: Container, user: str | None = None) -> list[dict]:
    """`jit grants --json` as `user` (root: --all)."""
    args = ["jit", "grants", "--json"] + (["--all"] if user is None else [])
    data = json.loads(box.run(args, user=user).stdout)
    assert data["ok"], data
    return data["grants"]


def groups_of(box: Container, user: str) -> list[str]:
    return box.run(["id", "-nG", user]).stdout.split()


def journal(box: Container, *args: str) -> list[dict]:
    """`journalctl -o json ARGS` parsed, one dict per entry."""
    out = box.run(["journalctl", "-o", "json", "--no-pager", *args], timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def events(box: Container, event: str | None = None, grant_id: str | None = None,
           *args: str) -> list[dict]:
    """jit-hostd's events, optionally only one type and one grant."""
    out = journal(box, "-t", "jit-hostd", *args)
    return [e for e in out
            if (event is None or e.get("JIT_EVENT") == event)
            and (grant_id is None or e.get("JIT_GRANT_ID") == grant_id)]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float,
             interval: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` saying what."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


UTMP_APPEND = r"""
import os, struct, sys, time
user, line = sys.argv[1], sys.argv[2]
rec = struct.pack("<hxxi32s4s32s256shhiii4i20s", 7, os.getpid(), line.encode(),
                  line[-4:].encode(), user.encode(), b"", 0, 0, 0, int(time.time()), 0,
                  0, 0, 0, 0, b"")
with open("/run/utmp", "ab") as fh:
    fh.write(rec)
"""


def terminal(box: Container, user: str) -> Path:
    """A real pty of `user` (script(1), `mesg y` as login leaves it) listed in utmp, as a
    logged-in approver has; returns the file recording what the terminal shows. Stop it
    with `pkill -u USER script`."""
    box.run(["runuser", "-u", user, "--", "sh", "-c",
             f"setsid script -q -f -c 'tty; sleep 120' /home/{user}/typescript"
             " </dev/null >/dev/null 2>&1 &"])
    shown = box.path(f"/home/{user}/typescript")
    tty = wait_for(f"{user}'s pty", lambda: re.search(
        r"/dev/(pts/\d+)", shown.read_text() if shown.exists() else ""), timeout=15)
    box.run(["python3", "-c", UTMP_APPEND, user, tty.group(1)])
    return shown


def prepare(box: Container, deb: Path) -> str:
    """Boot, add users, install; returns hostd's state right after installation."""
    box.boot()
    add_users(box)
    started = time.monotonic()
    install_deb(box, deb)
    log(f"{box.name}: installed {deb.name} in {time.monotonic() - started:.1f} s")
    return box.run(["systemctl", "is-active", "jit-hostd.service"], check=False).stdout.strip()
