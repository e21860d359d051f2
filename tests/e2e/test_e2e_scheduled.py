"""Scheduled grants in a booted Debian 12 (issue 22 §2): a grant for later is pending
until its start, when the real transient systemd timer starts it (the group appears,
grant_activated read back with journalctl -o json); and one scheduled before a reboot
starts after it, its timer armed again at boot."""

from __future__ import annotations

import json
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
