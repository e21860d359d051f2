"""pam_jit.so replacing the pam_python module, in a booted Debian 12: the package built
from main's commit 56b2adc (pam_python) installed and gating, then upgraded to this tree's
package in dpkg's two steps, with logins checked in between (the window in which the old
module's file is gone and postinst has not yet run); then a real OpenSSH login, whose
sshd process has pam_jit.so mapped and no Python interpreter. One container of its own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import CACHE_DIR, Container
from jithost import (
    POLICY_TOML,
    REPO,
    add_users,
    configure,
    events,
    grants,
    install_deb,
    issue,
    wait_for,
)

OLD_COMMIT = "56b2adc"
OLD_MODULE = "/usr/lib/jitaccess/pam_jit.py"
UPGRADE_COPY = "/var/lib/jitaccess-upgrade/pam_jit.py"
NEW_MODULE = "/lib/x86_64-linux-gnu/security/pam_jit.so"
# openssh-server and what Debian 12's minbase rootfs lacks of its dependencies
SSH_DEBS = ("openssh-server", "openssh-client", "openssh-sftp-server", "libedit2",
            "libfido2-1", "libcbor0.8", "libwrap0", "lsb-base", "runit-helper", "ucf",
            "sensible-utils")
POLICY = POLICY_TOML + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true

[login]
require_grant = ["alice"]
"""
REFUSED = re.compile(r"jit: logging in to \S+ requires an active grant")


def _old_deb() -> Path:
    """The package as main's commit 56b2adc builds it (cached by commit)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", OLD_COMMIT],
                            capture_output=True, text=True, check=True).stdout.strip()
    cached = CACHE_DIR / f"jitaccess-{commit[:12]}.deb"
    if cached.exists():
        return cached
    with tempfile.TemporaryDirectory(prefix="jit-old-") as tmp:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", commit],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        subprocess.run([f"{tmp}/packaging/build-deb.sh"], env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LINTIAN": "0", "HOME": "/root"},
            capture_output=True, check=True, timeout=900)
        built = next(Path(tmp, "dist").glob("jitaccess_*.deb"))
        shutil.copy(built, f"{cached}.tmp")
        Path(f"{cached}.tmp").rename(cached)
    return cached


def _ssh_debs() -> list[Path]:
    """openssh-server and its missing dependencies, fetched once with apt-get download."""
    where = CACHE_DIR / "debs-openssh"
    if not all(list(where.glob(f"{name}_*.deb")) for name in SSH_DEBS):
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", *SSH_DEBS], cwd=where, capture_output=True,
                       check=True, timeout=300)
    return [next(where.glob(f"{name}_*.deb")) for name in SSH_DEBS]


@pytest.fixture(scope="module")
def box(deb: Path) -> Iterator[Container]:
    old = _old_deb()
    b = Container.create("jit-e2e-pamc")
    try:
        b.boot()
        add_users(b)
        install_deb(b, old)
        b.copy_in(deb, "/root/new.deb")
        yield b
    finally:
        b.close()


def pamtester(box: Container, user: str, *ops: str) -> subprocess.CompletedProcess[str]:
    return box.run(["pamtester", "-v", "login", user, *ops], check=False, timeout=60)


def stacks(box: Container) -> str:
    return "".join(box.path(f"/etc/pam.d/{s}").read_text()
                   for s in ("common-account", "common-session"))


def assert_gated(box: Container) -> None:
    """alice (gated, no login grant) refused with the message; bob and root admitted."""
    r = pamtester(box, "alice", "acct_mgmt")
    assert r.returncode != 0 and REFUSED.search(r.stdout + r.stderr), r.stdout + r.stderr
    for user in ("bob", "root"):
        r = pamtester(box, user, "acct_mgmt", "open_session", "close_session")
        assert r.returncode == 0, r.stdout + r.stderr


def test_the_old_package_gates_through_pam_python(box):
    configure(box, POLICY)
    assert f"pam_python.so {OLD_MODULE}" in stacks(box)
    assert_gated(box)


def test_unpacked_but_not_configured_logins_stay_gated(box):
    """dpkg has removed the old module's file and not yet run postinst: the stacks name
    preinst's copy of it, and gate exactly as before."""
    box.run(["dpkg", "--unpack", "/root/new.deb"], timeout=300)
    assert not box.path(OLD_MODULE).exists()
    assert box.path(NEW_MODULE).exists()
    assert f"pam_python.so {UPGRADE_COPY}" in stacks(box)
    assert OLD_MODULE not in stacks(box)
    assert_gated(box)


def test_configured_the_stacks_name_pam_jit_so(box):
    box.run(["dpkg", "--configure", "jitaccess"], timeout=300)
    text = stacks(box)
    assert "pam_python" not in text and "pam_jit.py" not in text
    assert [line.split()[1:] for line in text.splitlines() if "pam_jit" in line] == [
        ["required", "pam_jit.so"], ["optional", "pam_jit.so"]]
    assert not box.path(UPGRADE_COPY).parent.exists()
    assert_gated(box)


def test_libpam_python_can_go_and_a_login_grant_admits(box):
    box.run(["apt-get", "remove", "-y", "libpam-python"], timeout=300)
    assert_gated(box)
    out = box.run(["jit", "activate", "--json", issue(box, "alice", "console", "30m")])
    grant_id = json.loads(out.stdout)["grant"]["id"]
    r = pamtester(box, "alice", "acct_mgmt", "open_session", "close_session")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"(grant {grant_id})" in r.stdout + r.stderr


def _ssh(box: Container, *cmd: str) -> list[str]:
    return ["ssh", "-i", "/root/id_e2e", "-o", "BatchMode=yes", "-o",
            "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "alice@127.0.0.1", *cmd]


def test_an_ssh_login_runs_pam_jit_so_and_loads_no_python(box):
    """alice (gated, holding a login grant from the test before) logs in over SSH: the
    sshd process that ran the PAM stack maps pam_jit.so and no libpython; her session is
    registered. Her grant revoked, the next SSH login is refused."""
    for path in _ssh_debs():
        box.copy_in(path, f"/root/ssh/{path.name}")
    box.run("dpkg -i /root/ssh/*.deb", timeout=300)
    box.run(["systemctl", "start", "ssh.service"])
    box.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/id_e2e"])
    box.run("install -d -o alice -g alice -m 0700 /home/alice/.ssh && install -o alice "
            "-g alice -m 0600 /root/id_e2e.pub /home/alice/.ssh/authorized_keys")
    login = box.popen(_ssh(box, "echo in; sleep 60"))
    try:
        assert login.stdout.readline().strip() == "in", login.stderr.read()
        pid = box.run(["pgrep", "-f", "-o", r"^sshd: alice \[priv\]"]).stdout.split()[0]
        maps = box.run(["cat", f"/proc/{pid}/maps"]).stdout
        assert "/pam_jit.so" in maps
        assert "libpython" not in maps and "pam_python" not in maps
        sessions = json.loads(box.run(["jit", "grants", "--sessions", "--all",
                                       "--json"]).stdout)["sessions"]
        assert [s["service"] for s in sessions if s["user"] == "alice"
                and s["closed"] is None] == ["sshd"]
    finally:
        login.kill()
        login.wait()
    for g in grants(box):
        box.run(["jit", "revoke", g["id"]])
    refused_before = len(events(box, "login_refused"))
    r = box.run(_ssh(box, "true"), check=False, timeout=60)
    assert r.returncode != 0
    wait_for("the refusal event", lambda: len(events(box, "login_refused")) > refused_before,
             timeout=15)
    assert events(box, "login_refused")[-1]["JIT_USER"] == "alice"


# notices through the session's own terminal (handed to hostd by pam_jit.so) -----------

NOTICE_POLICY = POLICY + """
[roles.deploy]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp", "host"]
requesters = ["bob"]
approvers = ["carol"]
"""


def login_on_a_pty(box: Container, user: str, unit: str) -> Path:
    """`login -f USER` on a pty (script, under a system unit as getty runs login), whose
    login shell turns messages off (`mesg n` in ~/.bash_profile: the pty becomes 0600,
    hostd could not open it) and waits; returns the host path of what the terminal
    shows. (login hangs up its tty first, so typed-ahead input would be lost.)"""
    out = f"/var/tmp/{unit}.out"  # /tmp is the container's own tmpfs
    box.write(f"/home/{user}/.bash_profile",
              "mesg n; echo mesg-off $(stat -c %a $(tty)); exec sleep 120\n")
    box.run(["systemd-run", "--unit", unit, "--property", f"StandardOutput=file:{out}",
             "--property", f"StandardError=file:{out}",
             "script", "-qfec", f"login -f {user}", "/dev/null"])
    shown = box.path(out)
    try:
        wait_for(f"{user}'s login with mesg n", lambda: "mesg-off 600" in (
            shown.read_text(errors="replace") if shown.exists() else ""), timeout=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the terminal showed: "
                             f"{shown.read_text(errors='replace') if shown.exists() else ''!r}"
                             ) from None
    return shown


def test_a_login_with_mesg_n_sees_the_warnings_and_the_revocation(box):
    configure(box, NOTICE_POLICY)
    shown = login_on_a_pty(box, "bob", "jit-e2e-bob-tty")
    try:
        out = box.run(["jit", "activate", "--json", issue(box, "bob", "console", "75s")])
        grant_id = json.loads(out.stdout)["grant"]["id"]
        wait_for("the 1-minute warning", lambda: re.search(
            r"jit: your grant of role console ends in (1 min 0 s|\d\d? s)",
            shown.read_text(errors="replace")), timeout=60)
        box.run(["jit", "revoke", grant_id])
        wait_for("the revocation line", lambda: "jit: your grant of role console was "
                 "revoked by root" in shown.read_text(errors="replace"), timeout=20)
    finally:
        box.run(["systemctl", "stop", "jit-e2e-bob-tty"], check=False)


def test_an_approver_with_mesg_n_sees_the_request(box):
    configure(box, NOTICE_POLICY)
    shown = login_on_a_pty(box, "carol", "jit-e2e-carol-tty")
    try:
        r = box.run(["jit", "request", "deploy", "--for", "30m", "--reason", "e2e release"],
                    user="bob")
        assert "approvers notified on 1 terminal" in r.stdout, r.stdout
        first = re.search(r"request (\w+)", r.stdout).group(1)
        wait_for("the request on carol's terminal", lambda: "jit: bob requests role deploy"
                 in shown.read_text(errors="replace"), timeout=20)
    finally:
        box.run(["systemctl", "stop", "jit-e2e-carol-tty"], check=False)
    # `systemctl stop` returns once login is gone: hostd drops a terminal whose PAM
    # process is gone, and the pty left in utmp is gone too
    # asking again for the same role would join the pending request: withdraw it first
    box.run(["jit", "requests", "--cancel", first], user="bob")
    r = box.run(["jit", "request", "deploy", "--for", "30m", "--reason", "again"], user="bob")
    assert "no approver is logged in" in r.stdout, r.stdout
