"""`jit audit` on the installed package against the real journal, after a grant, a
request approved, a revoke and an expiry: what it reads back is what journald holds,
--held-at answers who held what, the exports validate, and only journal readers may
run it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jithost import Host, events, grants, issue, journal, wait_for

from hostd.events import EVENT_TYPES

VALIDATOR = Path(__file__).resolve().parents[1] / "unit" / "audit_validate.py"
VENV_PYTHON = "/var/cache/jitaccess-tools/venv/bin/python"


def _new_grant(box, user: str, before: set[str]) -> str:
    (gid,) = [g["id"] for g in grants(box, user=user) if g["id"] not in before]
    return gid


@pytest.fixture(scope="module")
def story(host: Host):
    """carol's grant (revoked by root), alice's request approved by bob (still live),
    carol's 15 s grant (expired); the times in between."""
    box = host.box
    since = time.time() - 1
    before = {g["id"] for g in grants(box)}
    box.run(["jit", "activate", issue(box, "carol", "docker", "10m", reason="audit: grant")],
            user="carol")
    revoked = _new_grant(box, "carol", before)
    rid = json.loads(box.run(["jit", "request", "docker", "--for", "10m", "--reason",
                              "audit: request", "--json"], user="alice").stdout)["request"]["id"]
    approved = json.loads(box.run(["jit", "approve", rid, "--json"], user="bob").stdout)
    live = approved["request"]["grant_id"]
    time.sleep(1.1)
    both_held = time.time()
    time.sleep(1.1)
    box.run(["jit", "revoke", revoked, "--reason", "audit: done"])
    before = {g["id"] for g in grants(box)}
    box.run(["jit", "activate", issue(box, "carol", "docker", "15s", reason="audit: expiry")],
            user="carol")
    expired = _new_grant(box, "carol", before)
    wait_for("the 15 s grant to expire", lambda: events(box, "grant_expired", expired),
             timeout=40)
    yield {"since": since, "revoked": revoked, "live": live, "expired": expired,
           "request": rid, "both_held": both_held}
    box.run(["jit", "revoke", live, "--reason", "audit e2e done"], check=False)


def audit(box, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    return box.run(["jit", "audit", *args], user=user, check=False)


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_audit_reads_back_what_the_journal_holds(host: Host, story: dict) -> None:
    box = host.box
    ours = lines(audit(box, "--json", "--since", f"@{story['since']:.0f}"))
    ids = {k.message_id for k in EVENT_TYPES.values()}
    theirs = [e for e in journal(box, "-t", "jit-hostd", "--since", f"@{story['since']:.0f}")
              if e.get("MESSAGE_ID") in ids]
    assert [(e["__REALTIME_TIMESTAMP"], e["MESSAGE_ID"]) for e in ours] == [
        (e["__REALTIME_TIMESTAMP"], e["MESSAGE_ID"]) for e in theirs]
    for mine, real in zip(ours, theirs, strict=True):
        assert mine == {k: v for k, v in real.items() if k in mine}
        assert all(k.startswith("JIT_") for k in set(real) - set(mine) if k.startswith("JIT"))
    seen = {(e["JIT_EVENT"], e.get("JIT_GRANT_ID") or e.get("JIT_REQUEST_ID")) for e in ours}
    for gid in (story["revoked"], story["live"], story["expired"]):
        assert ("grant_activated", gid) in seen and ("membership_added", gid) in seen
    assert ("grant_revoked", story["revoked"]) in seen
    assert ("grant_expired", story["expired"]) in seen
    assert ("membership_removed", story["expired"]) in seen
    assert ("request_created", story["request"]) in seen
    assert ("request_approved", story["request"]) in seen


def test_filters(host: Host, story: dict) -> None:
    box = host.box
    got = lines(audit(box, "--json", "--user", "carol", "--event", "grant_revoked",
                      "--since", f"@{story['since']:.0f}"))
    assert [(e["JIT_GRANT_ID"], e["JIT_APPROVER"]) for e in got] == [(story["revoked"], "root")]
    got = lines(audit(box, "--json", "--grant", story["expired"]))
    assert {e["JIT_GRANT_ID"] for e in got} == {story["expired"]}
    assert {e["JIT_EVENT"] for e in got} >= {"grant_activated", "grant_expired"}
    got = lines(audit(box, "--json", "--until", f"@{story['since']:.0f}", "--grant",
                      story["live"]))
    assert got == []


def test_held_at(host: Host, story: dict) -> None:
    box = host.box
    then = json.loads(audit(box, "--held-at", f"@{story['both_held']:.3f}", "--json").stdout)
    held = {h["grant_id"]: h for h in then["held"]}
    assert held[story["revoked"]]["user"] == "carol"
    assert held[story["revoked"]]["state"] == "revoked"
    assert held[story["revoked"]]["ended_by"] == "root"
    assert held[story["live"]]["user"] == "alice" and held[story["live"]]["state"] == "live"
    assert story["expired"] not in held
    now = json.loads(audit(box, "--held-at", "now", "--json").stdout)
    now_held = {h["grant_id"]: h["state"] for h in now["held"]}
    assert now_held.get(story["live"]) == "live"
    assert story["revoked"] not in now_held and story["expired"] not in now_held
    text = audit(box, "--held-at", "now").stdout
    assert f"grant {story['live']}" in text and "still live" in text


def test_exports_validate_against_the_schemas(host: Host, story: dict) -> None:
    box = host.box
    since = f"@{story['since']:.0f}"
    ocsf = lines(audit(box, "--format", "ocsf", "--since", since))
    ecs = lines(audit(box, "--format", "ecs", "--since", since))
    assert len(ocsf) == len(ecs) > 0
    hostname = box.run(["hostname"]).stdout.strip()
    revoke = next(d for d in ocsf if d["metadata"]["event_code"] == "grant_revoked"
                  and d["metadata"]["correlation_uid"] == story["revoked"])
    assert (revoke["class_uid"], revoke["activity_id"]) == (3005, 2)
    assert revoke["device"]["hostname"] == hostname
    added = [d for d in ocsf if d["metadata"]["event_code"] == "membership_added"]
    assert added and {(d["class_uid"], d["activity_id"]) for d in added} == {(3006, 3)}
    assert all(d["host"]["name"] == hostname for d in ecs)
    feed = "\n".join(json.dumps({"format": fmt, "doc": d})
                     for fmt, docs in (("ocsf", ocsf), ("ecs", ecs)) for d in docs)
    proc = subprocess.run([VENV_PYTHON, str(VALIDATOR)], input=feed, text=True,
                          capture_output=True, timeout=300)
    result = json.loads(proc.stdout or "{}")
    assert result.get("checked") == len(ocsf) + len(ecs), proc.stderr[-2000:]
    assert result["errors"] == []


def test_table_escapes_and_names_the_grants(host: Host, story: dict) -> None:
    box = host.box
    hostile = "audit: \x1b[2J\x1b]0;owned\x07 fake\nline"
    before = {g["id"] for g in grants(box)}
    box.run(["jit", "activate", issue(box, "carol", "docker", "10m", reason=hostile)],
            user="carol")
    gid = _new_grant(box, "carol", before)
    box.run(["jit", "revoke", gid])
    out = audit(box, "--grant", gid).stdout
    assert gid in out and "grant_activated" in out
    assert "\x1b" not in out and "\x07" not in out
    assert all(line.count("\n") == 0 for line in out.splitlines())


def test_only_journal_readers_may_audit(host: Host, story: dict) -> None:
    box = host.box
    proc = audit(box, "--json", user="carol")
    answer = json.loads(proc.stdout)
    assert (proc.returncode, answer["code"]) == (1, "permission_denied"), proc.stdout
    assert "adm" in answer["message"] and "systemd-journal" in answer["message"]
    if box.run(["id", "auditor"], check=False).returncode != 0:
        box.run(["useradd", "--create-home", "--groups", "systemd-journal", "auditor"])
    got = lines(audit(box, "--json", "--grant", story["revoked"], user="auditor"))
    assert {e["JIT_EVENT"] for e in got} >= {"grant_activated", "grant_revoked"}


def test_html_report_names_every_grant(host: Host, story: dict) -> None:
    box = host.box
    proc = audit(box, "--since", f"@{story['since']:.0f}", "--html", "/root/audit.html")
    assert proc.returncode == 0, proc.stderr
    page = box.path("/root/audit.html")
    assert page.stat().st_mode & 0o777 == 0o600
    text = page.read_text()
    for gid in (story["revoked"], story["live"], story["expired"]):
        assert gid in text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
