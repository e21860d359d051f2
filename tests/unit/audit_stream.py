"""Synthetic hostd event streams for `jit audit`'s tests and benchmark, and a writer of
real journal files from them (systemd-journal-remote reading the journal export format),
so the Reader is exercised on a true journal without root's system journal.

Events are built by hostd's own Events class (journal off), so they have exactly the
fields and escaping hostd writes; only the time and host are added here.
"""

from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from hostd.events import EVENT_TYPES, escape
from hostd.events import value as field_value
from hostd.policy.durations import rfc3339
from hostd.state.journal import Events

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
BOOT_ID = "0123456789abcdef0123456789abcdef"
HOST = "audit-test"

# Events other helpers are adding (sudo/PAM/recording) and one nobody knows: the
# exporters map them by name or fall back, and the output must still validate.
EXTRA_TYPES = ("privilege_residue", "login_refused", "login_denied", "recording_started",
               "recording_failed", "recording_removed", "recording_ended", "session_resumed",
               "totally_new_event")

HOSTILE = "rm -rf / \x1b[2J\x1b]0;owned\x07\n2026-01-01 fake line \u202e<script>alert(1)</script>"


def _events() -> Events:
    return Events(mirror=None, journal=False)


def record(event: str, message: str, at_usec: int, host: str = HOST,
           **fields: object) -> dict[str, str]:
    """One event as the journal holds it (hostd's fields + time, host, our uid)."""
    if event in EVENT_TYPES:
        rec = _events()._emit(event, message, **fields)
    else:  # an event type this hostd does not know, written by a newer one
        rec = {"MESSAGE": escape(message), "MESSAGE_ID": "0" * 31 + "1", "PRIORITY": "6",
               "SYSLOG_IDENTIFIER": "jit-hostd", "JIT_EVENT": event}
        rec.update({"JIT_" + k.upper(): field_value(v) for k, v in fields.items()
                    if v not in (None, "", [])})
    return dict(rec, __REALTIME_TIMESTAMP=str(at_usec), _HOSTNAME=host)


GRANT = {"user": "alice", "uid": 1001, "role": "docker", "issuer": "corp",
         "not_after": "2026-11-30T08:00:00Z", "groups": ["docker"], "reason": HOSTILE,
         "ticket": "OPS-1"}


def one_of_each(at_usec: int = 1_796_000_000_000_000) -> list[dict[str, str]]:
    """Every catalog event type (and EXTRA_TYPES) once, with the fields hostd gives it
    and hostile text wherever a user chooses the value."""
    g = dict(GRANT, grant_id="g-1")
    req = {"user": "alice", "uid": 1001, "role": "docker", "request_id": "r-1",
           "reason": HOSTILE, "ticket": "OPS-1"}
    sudo = {"user": "alice", "uid": 1001, "runas": "root", "command": HOSTILE, "tty": "pts/1",
            "grant_id": "g-1", "role": "docker"}
    fields: dict[str, dict] = {
        "grant_activated": dict(g, decision="activated"),
        "grant_refused": {"user": "bob", "uid": 1002, "code": "wrong_user",
                          "decision": "refused", "reason": "not yours"},
        "grant_expired": dict(g, decision="expired"),
        "grant_revoked": dict(g, decision="revoked", approver="root"),
        "membership_added": dict(g, groups=["docker"]),
        "membership_removed": dict(g, groups=["docker"]),
        "config_error": {"reason": "bad policy"},
        "hostd_started": {},
        "timer_failed": {"grant_id": "g-1"},
        "revocations_loaded": {"issuer": "corp", "count": 3, "path": "/etc/jit/r/corp.jwt",
                               "revocation_list": "corp#7"},
        "revocations_refused": {"issuer": "corp", "code": "rollback", "reason": "seq 6",
                                "path": "/etc/jit/r/corp.jwt"},
        "revocations_stale": {"issuer": "corp", "mode": "strict",
                              "revocation_list": "corp#7"},
        "request_created": dict(req, decision="pending"),
        "request_approved": dict(req, approver="bob", decision="approve"),
        "request_denied": dict(req, approver="bob", decision="deny"),
        "request_expired": dict(req, decision="expired"),
        "breakglass": dict(req, grant_id="g-2", decision="self-service"),
        "notify_failed": {"request_id": "r-1", "user": "alice", "role": "docker"},
        "sudo_allowed": dict(sudo, decision="allowed"),
        "sudo_denied": dict(sudo, decision="denied", code="no_grant"),
        "sudo_pending": dict(sudo, decision="pending", request_id="r-3", guardrail=0),
        "login_denied": {"user": "carol", "uid": 1003, "tty": "pts/2", "code": "no_grant",
                         "decision": "denied"},
        "session_opened": {"user": "alice", "uid": 1001, "session_id": "7", "tty": "pts/1",
                           "grant_id": "g-1"},
        "session_closed": {"user": "alice", "uid": 1001, "session_id": "7"},
        "session_terminated": {"user": "alice", "uid": 1001, "session_id": "7",
                               "grant_id": "g-1", "reason": "grant expired"},
        "recording_closed": {"user": "alice", "uid": 1001, "session_id": "s-9",
                             "recording": "/var/log/jit/sessions/s-9.cast",
                             "recording_sha256": "ab" * 32},
        "refusals_suppressed": {"uid": 1002, "user": "bob", "count": 42,
                                "decision": "suppressed"},
        "privilege_residue": {"user": "alice", "uid": 1001, "role": "docker",
                              "grant_id": "g-1", "groups": ["docker"], "decision": "kept",
                              "reason": "still in group docker", "count": 1, "pids": [4242]},
        "login_refused": {"user": "carol", "uid": 1003, "code": "no_grant"},
        "recording_started": {"user": "alice", "session_id": "s-9",
                              "recording": "/var/log/jit/sessions/s-9.cast"},
        "recording_ended": {"user": "alice", "session_id": "s-9", "recording": "s-9"},
        "recording_failed": {"user": "alice", "session_id": "s-9", "reason": "disk full",
                             "recording": "/var/log/jit/sessions/s-9.cast"},
        "recording_removed": {"reason": "older than 90 days",
                              "recording": "/var/log/jit/sessions/s-8.cast"},
        "session_resumed": {"user": "alice"},
        "idp_refreshed": {"issuer": "corp-idp", "count": 2},
        "idp_refresh_failed": {"issuer": "corp-idp", "reason": HOSTILE},
        "revocations_fetch_failed": {"issuer": "corp-idp", "reason": HOSTILE},
        "totally_new_event": {"reason": HOSTILE},
    }
    names = list(EVENT_TYPES) + [n for n in EXTRA_TYPES if n not in EVENT_TYPES]
    out = []
    for i, name in enumerate(names):
        out.append(record(name, f"{name}: {HOSTILE}", at_usec + i * 1000,
                          **fields.get(name, {"user": "alice"})))
    return out


def lifecycle(n: int, start_usec: int, users: int = 50) -> Iterator[dict[str, str]]:
    """`n` events of a busy host: grants activated, sudo used under them, then expired
    or revoked, with requests and refusals in between; a second apart."""
    at = start_usec
    i = number = 0
    while i < n:
        user = f"user{number % users}"
        number += 1
        gid = f"g-{i}"
        g = dict(GRANT, user=user, uid=2000 + i % users, grant_id=gid, reason="deploy",
                 not_after=rfc3339(at / 1e6 + 3600))
        batch = [
            ("request_created", {"user": user, "role": "docker", "request_id": f"r-{i}",
                                 "reason": "deploy", "decision": "pending"}),
            ("request_approved", {"user": user, "role": "docker", "request_id": f"r-{i}",
                                  "approver": "bob", "decision": "approve"}),
            ("membership_added", g),
            ("grant_activated", dict(g, decision="activated")),
            *[("sudo_allowed", {"user": user, "runas": "root", "grant_id": gid,
                                "command": f"/usr/bin/systemctl restart app{k}",
                                "decision": "allowed"}) for k in range(4)],
            ("sudo_denied", {"user": user, "runas": "root", "command": "/bin/sh",
                             "code": "no_rule", "decision": "denied"}),
            ("membership_removed", g),
            ("grant_expired" if i % 3 else "grant_revoked",
             dict(g, decision="expired" if i % 3 else "revoked",
                  **({} if i % 3 else {"approver": "root"}))),
        ]
        for name, fields in batch:
            if i >= n:
                return
            yield record(name, f"{name} of {user}", at, **fields)
            at += 1_000_000
            i += 1


def _export(e: dict[str, str]) -> bytes:
    """One entry in the journal export format (binary-safe values where needed)."""
    out = bytearray()
    fields = dict(e, _UID=e.get("_UID", "0"), _BOOT_ID=BOOT_ID)
    fields.setdefault("__MONOTONIC_TIMESTAMP", "1")
    for key, value in fields.items():
        data = value.encode()
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out + b"\n")


def write_journal(events: Iterable[dict[str, str]], path: Path) -> Path:
    """A journal file holding `events` (systemd-journal-remote, from Debian's package of
    that name); journalctl --file and journal.Reader(files=...) read it."""
    proc = subprocess.Popen([JOURNAL_REMOTE, f"--output={path}", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    chunk = bytearray()
    for e in events:
        chunk += _export(e)
        if len(chunk) > 1 << 20:
            proc.stdin.write(chunk)
            chunk.clear()
    proc.stdin.write(chunk)
    proc.stdin.close()
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.wait() != 0:
        raise RuntimeError(f"systemd-journal-remote failed: {err}")
    return path
