"""`jit sessions`, `jit replay`, `jit verify-recording` on the installed package in a
booted Debian 12: the digest comes from the real journal, only root's entries count,
and scriptreplay plays an export. The recording is written with the package's own
CastWriter, as hostd writes it (the recorder's own e2e test drives a real session)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest
from jithost import Host, wait_for

RID = "0e2e0e2e0e2e0e2e"
SESSIONS = "/var/log/jit/sessions"
PATH = f"{SESSIONS}/{RID}.cast"
OUTPUT = ["$ ", "cat .env\r\n", "DB_PASSWORD=**************\r\n", "$ "]

WRITE = f"""
import json, sys
from pathlib import Path
from hostd.record.castfile import CastWriter
w = CastWriter(Path({PATH!r}), {{"width": 80, "height": 24, "id": {RID!r}, "user": "alice",
    "runas": "root", "command": ["/bin/bash"], "grant_id": "g-e2e", "host": "e2e"}},
    mode=0o640)  # as hostd writes it (hostd/record/recordings.py: group adm reads)
for i, text in enumerate(json.loads(sys.argv[1])):
    w.output(0.2 * i, text.encode())
print(w.close(1.0, "exit 0"))
"""
LOG = """
import sys
from systemd import journal
journal.send("session recorded", SYSLOG_IDENTIFIER="jit-hostd",
             JIT_RECORDING=sys.argv[1], JIT_RECORDING_SHA256=sys.argv[2])
"""


def logged(box, rid: str, digest: str) -> bool:
    out = box.run(["journalctl", "-o", "json", "--no-pager", f"JIT_RECORDING={rid}"]).stdout
    return any(json.loads(line).get("JIT_RECORDING_SHA256") == digest
               for line in out.splitlines() if line.strip())


@pytest.fixture(scope="module")
def recorded(host: Host) -> Iterator[tuple[Host, str]]:
    box = host.box
    box.run(["mkdir", "-p", SESSIONS])
    box.run(["rm", "-f", PATH])
    digest = box.run(["python3", "-c", WRITE, json.dumps(OUTPUT)]).stdout.strip()
    box.run(["python3", "-c", LOG, RID, digest])
    # alice plants a digest of her own: it must not count (sent by uid 1001, not root)
    box.run(["python3", "-c", LOG, RID, "0" * 64], user="alice")
    wait_for("the digests in the journal", lambda: logged(box, RID, digest)
             and logged(box, RID, "0" * 64), timeout=20)
    yield host, digest
    box.run(["rm", "-rf", PATH, "/root/export", "/root/saved.cast"])  # a shared host


def test_verify_reads_roots_digest_from_the_journal(recorded):
    host, digest = recorded
    proc = host.box.run(["jit", "verify-recording", RID, "--json"], check=False)
    answer = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (answer["digest"], answer["digest_from"]) == (digest, "the journal")


def test_sessions_lists_it_for_root_and_refuses_others(recorded):
    host, _ = recorded
    rows = json.loads(host.box.run(["jit", "sessions", "--json"]).stdout)["sessions"]
    row = next(r for r in rows if r["id"] == RID)
    assert (row["user"], row["runas"], row["status"], row["duration"]) == (
        "alice", "root", "exit 0", 1.0)
    proc = host.box.run(["jit", "sessions", "--json"], user="bob", check=False)
    assert proc.returncode == 1 and json.loads(proc.stdout)["code"] == "permission_denied"
    # group adm lists and verifies as installed (issue 20: it once got a traceback)
    box = host.box
    modes = {d: box.run(["stat", "-c", "%U:%G %a", d]).stdout.split()
             for d in ("/var/log/jit", SESSIONS)}
    assert modes == {"/var/log/jit": ["root:root", "755"], SESSIONS: ["root:adm", "2750"]}
    box.run(["usermod", "-aG", "adm", "carol"])
    try:
        rows = json.loads(box.run(["jit", "sessions", "--json"], user="carol").stdout)
        row = next(r for r in rows["sessions"] if r["id"] == RID)
        assert (row["user"], row["status"]) == ("alice", "exit 0")
        proc = box.run(["jit", "verify-recording", RID], user="carol", check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = box.run(["jit", "verify-recording", RID], user="bob", check=False)
        assert proc.returncode == 1 and proc.stderr.startswith("jit: permission_denied: ")
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    finally:
        box.run(["gpasswd", "-d", "carol", "adm"])


def test_replay_and_scriptreplay_show_the_output(recorded):
    box = recorded[0].box
    # base64 on the way out: the harness reads text with universal newlines
    proc = box.run(f"jit replay {RID} --speed 100 | base64 -w0")
    assert base64.b64decode(proc.stdout) == "".join(OUTPUT).encode()
    assert proc.stderr.startswith(f"jit: replaying {RID}: alice as root")
    box.run(["rm", "-rf", "/root/export"])
    box.run(["mkdir", "/root/export"])
    box.run(["jit", "replay", RID, "--export-script", "/root/export"])
    proc = box.run(["jit", "replay", RID, "--export-script", "/root/no/such"], check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("jit: usage: /root/no/such: no such directory (--export-script "
                           "names a directory that exists)\n")
    played = box.run(f"scriptreplay -t /root/export/{RID}.timing -d 100 "
                     f"/root/export/{RID}.log | base64 -w0").stdout
    assert base64.b64decode(played) == "".join(OUTPUT).encode() + b"\n"


def test_an_edit_is_caught_and_a_missing_recording_exits_2(recorded):
    box = recorded[0].box
    box.run(["cp", PATH, "/root/saved.cast"])
    try:
        box.run(["sed", "-i", "s/cat .env/cat .xyz/", PATH])
        proc = box.run(["jit", "verify-recording", RID], check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stderr.startswith(f"jit: tampered: {RID}: chain broken")
    finally:
        box.run(["cp", "/root/saved.cast", PATH])
    proc = box.run(["jit", "verify-recording", "ffffffffffffffff"], check=False)
    assert proc.returncode == 2 and "not_found" in proc.stderr
