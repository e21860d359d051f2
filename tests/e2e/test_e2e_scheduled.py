"""Scheduled grants in a booted Debian 12 (issue 22 §2): a grant for later is pending
until its start, when the real transient systemd timer starts it (the group appears,
grant_activated read back with journalctl -o json); and one scheduled before a reboot
starts after it, its timer armed again at boot."""

from __future__ import annotations

import json
import re
import time

from container import log
from jithost import CORP_KEY, Host, events, groups_of, wait_for

LEAD = 25  # seconds ahead: time for the checks before the start


def schedule(box, user: str, start: int, duration: str, reason: str) -> dict:
    """`jit issue --start @EPOCH` then `jit activate` as the user: a pending grant."""
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user", user,
                     "--role", "docker", "--start", f"@{start}", "--for", duration,
                     "--reason", reason]).stdout.strip()
    out = json.loads(box.run(["jit", "activate", token, "--json"], user=user).stdout)
    assert out["ok"] and out["grant"]["state"] == "pending", out
    return out["grant"]


def pending(box, user: str) -> list[dict]:
    return json.loads(box.run(["jit", "grants", "--pending", "--json"],
                              user=user).stdout)["grants"]


def test_a_scheduled_grant_starts_at_its_start_by_its_systemd_timer(own_host: Host) -> None:
    box = own_host.box
    start = int(time.time()) + LEAD
    g = schedule(box, "alice", start, "1h", "e2e scheduled")
    assert "docker" not in groups_of(box, "alice")
    assert [p["id"] for p in pending(box, "alice")] == [g["id"]]
    timers = box.run(["systemctl", "list-timers", "--all", "--no-pager"]).stdout
    assert f"jit-expire-{g['id']}.timer" in timers, timers
    (scheduled,) = events(box, "grant_scheduled", g["id"])
    assert scheduled["JIT_USER"] == "alice"
    assert time.time() < start, "the checks above ran past the start: nothing was tested"

    activated = wait_for("grant_activated", lambda: events(box, "grant_activated", g["id"]),
                         timeout=start - time.time() + 15)
    at = int(activated[0]["__REALTIME_TIMESTAMP"]) / 1e6
    log(f"grant_activated {at - start:+.3f} s after the start")
    assert start <= at, f"activated at {at:.3f}, before its start {start}"
    assert activated[0].get("_SYSTEMD_UNIT") == "jit-hostd.service"
    assert "docker" in groups_of(box, "alice")
    assert pending(box, "alice") == []
    # the same id's timer now waits for the expiry
    wait_for("the expiry timer", lambda: f"jit-expire-{g['id']}.timer" in box.run(
        ["systemctl", "list-timers", "--all", "--no-pager"]).stdout, timeout=10)
    box.run(["jit", "revoke", g["id"]])  # as root: alice's own processes hold docker now


def test_a_grant_scheduled_before_a_reboot_starts_after_it(own_host: Host) -> None:
    box = own_host.box
    start = int(time.time()) + 3 * LEAD  # the reboot takes some of it
    g = schedule(box, "carol", start, "1h", "e2e scheduled across a reboot")
    box.poweroff()
    box.boot()
    assert time.time() < start, "the reboot outlasted the lead: nothing was tested"
    assert "docker" not in groups_of(box, "carol")
    # armed again at boot by hostd itself, before anyone calls jit
    wait_for(f"jit-expire-{g['id']}.timer armed again at boot",
             lambda: f"jit-expire-{g['id']}.timer" in box.run(
                 ["systemctl", "list-timers", "--all", "--no-pager"]).stdout, timeout=10)
    assert [p["id"] for p in pending(box, "carol")] == [g["id"]]
    activated = wait_for("grant_activated after the reboot",
                         lambda: events(box, "grant_activated", g["id"], "-b", "0"),
                         timeout=start - time.time() + 15)
    at = int(activated[0]["__REALTIME_TIMESTAMP"]) / 1e6
    log(f"after a reboot: grant_activated {at - start:+.3f} s after the start")
    assert start <= at
    assert "docker" in groups_of(box, "carol")


def test_the_readmes_change_window_example_works_as_written(own_host: Host) -> None:
    """README "Scheduling access for a change window", each command line taken from the
    README (tests/e2e/test_e2e_readme.py's reader), run as the user it names. The admin's
    part first: this host is web-1 (the README's grant says --hosts 'web-*'), and the
    issuer's key is corp.key in the directory the issuer's commands run in."""
    from test_e2e_readme import ISSUER_DIR, lines, run

    box = own_host.box
    box.write("/etc/hostname", "web-1\n")
    box.run(["hostname", "web-1"])
    box.run(["systemctl", "restart", "jit-hostd.service"])  # reads the host name anew
    box.run(["install", "-D", "-m", "0600", CORP_KEY, f"{ISSUER_DIR}/corp.key"])
    steps = lines("Scheduling access for a change window")
    assert [(u, c.split()[1]) for u, c in steps] == [
        (None, "issue"), ("alice", "activate"), ("alice", "grants"), ("alice", "revoke"),
        ("alice", "request")]
    seen: dict[str, str] = {}
    for user, cmd in steps:
        r = run(box, user, cmd, TOKEN=seen.get("token", ""), GRANT_ID=seen.get("grant", ""))
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
        if cmd.startswith("jit issue"):
            seen["token"] = r.stdout.strip()
        elif cmd.startswith("jit activate"):
            seen["grant"] = r.stdout.split()[1]
            assert r.stdout.startswith(f"grant {seen['grant']} scheduled: role docker from ")
            assert "starts in 7h 59m" in r.stdout or "starts in 8h 00m" in r.stdout, r.stdout
        elif cmd.startswith("jit grants"):
            assert seen["grant"] in r.stdout and "STARTS IN" in r.stdout
        elif cmd.startswith("jit revoke"):
            assert run(box, "alice", "jit grants --pending").stdout == "no pending grants\n"
        else:
            assert re.search(r"created: role docker for 2h 00m, from \S+Z until \S+Z, needs 1",
                             r.stdout), r.stdout
    assert "docker" not in groups_of(box, "alice")
    rid = json.loads(box.run(["jit", "requests", "--json"], user="bob").stdout)["requests"]
    (req,) = [q for q in rid if q["state"] == "pending"]
    approved = json.loads(box.run(["jit", "approve", req["id"], "--json"], user="bob").stdout)
    assert approved["request"]["state"] == "approved"
    (p,) = pending(box, "alice")
    assert (p["id"], p["not_before"], p["not_after"]) == (
        approved["request"]["grant_id"], req["starts"], req["ends"])
