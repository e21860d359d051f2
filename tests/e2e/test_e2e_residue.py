"""A granted group does not outlive its grant through a setgid file or an open
descriptor (issue 17, items 1 and 2), on the installed package in a booted container.

- alice, holding role `grp` (group jitops, which guards /srv/jitops/secret, 0640
  root:jitops), makes ~/sgbash a setgid copy of bash of group jitops. After expiry the
  walk (jit-setgid-walk.service, started by jit-hostd) has cleared the bit, the
  privilege_residue event names the file, and ~/sgbash no longer reads the secret.
- alice, holding the group, opens the secret and passes the descriptor over
  SCM_RIGHTS to a process of hers that never held the group. At expiry that process
  is ended (terminate-sessions) and the session_terminated event names the descriptor.
  Passed to a system account's process in her slice, it is named, not ended.
One host for the module: it changes the policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from container import Container
from jithost import Host, configure, events, issue, wait_for

POLICY = """\
[roles.grp]
groups = ["jitops"]
max_ttl = "1h"
issuers = ["corp"]
"""

SECRET = "/srv/jitops/secret"

# As alice with her groups now (jitops while granted).
GRANTED = "setpriv --reuid=alice --regid=alice --init-groups "
# As alice with no group but her own: a process that never held jitops.
NEVER = "setpriv --reuid=alice --regid=alice --clear-groups "

# Receives one descriptor on a Unix socket, says so, and keeps it open.
RECEIVER = """#!/usr/bin/python3
import os, signal, socket, sys
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
conn, _ = srv.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 1)
data = os.pread(fds[0], 100, 0).decode()
with open(path + ".got", "w") as fh:
    fh.write(f"{os.getpid()} {data}")
while True:
    signal.pause()
"""

# Opens the file (with the group) and sends the descriptor, then exits.
SENDER = """#!/usr/bin/python3
import os, socket, sys
fd = os.open(sys.argv[2], os.O_RDONLY)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
socket.send_fds(s, [b"x"], [fd])
"""


@pytest.fixture(scope="module")
def box(own_host: Host) -> Iterator[Container]:
    box = own_host.box
    box.run(["groupadd", "jitops"])
    box.run(["install", "-d", "-m", "0755", "/srv/jitops"])
    box.write(SECRET, "jitops only\n")
    box.run(["chown", "root:jitops", SECRET])
    box.run(["chmod", "0640", SECRET])
    box.write("/usr/local/bin/e2e-receiver", RECEIVER, mode=0o755)
    box.write("/usr/local/bin/e2e-sender", SENDER, mode=0o755)
    configure(box, POLICY)
    yield box


def activate(box: Container, duration: str) -> dict:
    box.run(["jit", "activate", issue(box, "alice", "grp", duration)], user="alice")
    out = box.run(["jit", "grants", "--json"], user="alice").stdout
    (g,) = [g for g in json.loads(out)["grants"] if g["role"] == "grp"]
    return g


def running(box: Container, pid: int) -> bool:
    state = box.run(["sh", "-c", f"cat /proc/{pid}/stat 2>/dev/null"], check=False).stdout
    return bool(state) and ") Z " not in state


def test_a_setgid_file_made_during_a_group_grant_loses_the_bit_at_expiry(box) -> None:
    g = activate(box, "20s")
    box.run(GRANTED + "sh -c 'cd /home/alice && cp /bin/bash sgbash && chgrp jitops sgbash && "
            "chmod 2755 sgbash'")
    assert box.run(["stat", "-c", "%a %G", "/home/alice/sgbash"]).stdout.split() == [
        "2755", "jitops"]
    reads = box.run(NEVER + "/home/alice/sgbash -p -c 'cat " + SECRET + "'", check=False)
    assert reads.stdout == "jitops only\n", "while granted the setgid copy reads it"
    (ev,) = wait_for("the privilege_residue event for ~/sgbash", lambda: [
        e for e in events(box, "privilege_residue", g["id"])
        if e.get("JIT_DECISION") == "cleared"], timeout=int(g["exp"]) - time.time() + 60)
    assert ev["JIT_PATH"] == "/home/alice/sgbash" and ev["JIT_MODE"] == "02755"
    assert ev["JIT_GROUPS"] == "jitops" and ev["JIT_USER"] == "alice"
    assert box.run(["stat", "-c", "%a %G", "/home/alice/sgbash"]).stdout.split() == [
        "755", "jitops"], "the setgid bit alone is gone"
    after = box.run(NEVER + "/home/alice/sgbash -p -c 'cat " + SECRET + "'", check=False)
    assert after.returncode != 0 and "jitops only" not in after.stdout


def test_a_descriptor_passed_to_a_process_that_never_held_the_group_is_ended(box) -> None:
    g = activate(box, "20s")
    sock = "/tmp/e2e-fd.sock"
    box.run("rm -f /tmp/e2e-fd.sock*; " + NEVER + "setsid e2e-receiver " + sock +
            " </dev/null >/dev/null 2>&1 &")
    wait_for("the receiver's socket", lambda: box.run(["test", "-S", sock],
                                                      check=False).returncode == 0, 15)
    box.run(GRANTED + f"e2e-sender {sock} {SECRET}")
    got = wait_for("the descriptor received", lambda: box.run(
        ["cat", sock + ".got"], check=False).stdout, timeout=15)
    pid = int(got.split()[0])
    assert got.split(None, 1)[1] == "jitops only\n", "it reads through the descriptor"
    groups = box.run(["sh", "-c", f"grep '^Groups:' /proc/{pid}/status"]).stdout
    gid = box.run(["getent", "group", "jitops"]).stdout.split(":")[2]
    assert gid not in groups.split(), "the receiver never held the group"
    wait_for("the receiver to be ended", lambda: not running(box, pid),
             timeout=int(g["exp"]) - time.time() + 20)
    (ev,) = wait_for("the session_terminated event naming the descriptor", lambda: [
        e for e in events(box, "session_terminated", g["id"])
        if "fd " in e.get("JIT_PROCESSES", "")], timeout=10)
    assert ev["JIT_PIDS"] == str(pid) and SECRET in ev["JIT_PROCESSES"]
    assert ev["JIT_REASON"] == "expired" and ev["JIT_GROUPS"] == "jitops"


def test_a_descriptor_passed_to_a_system_accounts_process_in_her_slice_is_named(
        box) -> None:
    """A process of a system account in alice's slice (as a setuid program she ran
    would be) receives the descriptor: it is named in a privilege_residue event and
    left running, never signalled."""
    g = activate(box, "20s")
    uid = box.run(["id", "-u", "alice"]).stdout.strip()
    sock = "/tmp/e2e-fd-daemon.sock"
    box.run(f"rm -f {sock}*; umask 0; systemd-run --quiet --scope --slice=user-{uid}.slice "
            "setpriv --reuid=daemon --regid=daemon --clear-groups setsid e2e-receiver "
            f"{sock} </dev/null >/dev/null 2>&1 &")
    wait_for("the receiver's socket", lambda: box.run(["test", "-S", sock],
                                                      check=False).returncode == 0, 15)
    box.run(GRANTED + f"e2e-sender {sock} {SECRET}")
    got = wait_for("the descriptor received", lambda: box.run(
        ["cat", sock + ".got"], check=False).stdout, timeout=15)
    pid = int(got.split()[0])
    assert got.split(None, 1)[1] == "jitops only\n", "it reads through the descriptor"
    assert f"/user-{uid}.slice/" in box.run(["cat", f"/proc/{pid}/cgroup"]).stdout
    (ev,) = wait_for("the privilege_residue event naming it", lambda: [
        e for e in events(box, "privilege_residue", g["id"])
        if e.get("JIT_DECISION") == "named"], timeout=int(g["exp"]) - time.time() + 30)
    assert ev["JIT_PIDS"] == str(pid) and SECRET in ev["JIT_PROCESSES"], ev
    assert running(box, pid), "a system account's process is named, never ended"
    assert not [e for e in events(box, "session_terminated", g["id"])
                if str(pid) in e.get("JIT_PIDS", "").split(",")]
    box.run(["kill", str(pid)])


def test_hostd_and_check_config_name_where_set_id_bits_take_effect(box) -> None:
    """/home is on the container's root filesystem, mounted without nosuid (the walk
    above cleared a file there): both hostd's start and check-config say so."""
    (ev, *_) = wait_for("the exposed event of hostd's start", lambda: [
        e for e in events(box, "privilege_residue") if e.get("JIT_DECISION") == "exposed"],
        timeout=10)
    assert "/home" in ev["JIT_PATH"].split("; ") and "nosuid" in ev["MESSAGE"]
    out = json.loads(box.run(["jit", "check-config", "--json"]).stdout)
    assert "/home" in [m["place"] for m in out["setgid_mounts"]], out
    assert any("nosuid" in w for w in out["warnings"])
