"""Across a power-off: a grant that fell due meanwhile is revoked at boot, before
logins; a grant still live gets its expiry timer back."""

from __future__ import annotations

import time

from container import log
from jithost import Host, events, grants, groups_of, issue, wait_for


def test_grant_expired_while_powered_off_is_revoked_before_user_sessions(
        own_host: Host) -> None:
    box = own_host.box
    box.run(["jit", "activate", issue(box, "alice", "docker", "30s", "e2e reboot")],
            user="alice")
    box.run(["jit", "activate", issue(box, "carol", "docker", "1h", "outlives reboot")],
            user="carol")
    grant = grants(box, user="alice")[0]
    grant_id, exp = grant["id"], int(grant["exp"])
    assert "docker" in groups_of(box, "alice")

    box.poweroff()
    assert time.time() < exp, "powered off after expiry: the scenario tested nothing"
    # Not a timing assertion: the host must simply stay down past the grant's end.
    time.sleep(max(0.0, exp + 2 - time.time()))
    box.boot()

    assert "docker" not in groups_of(box, "alice")
    removed = wait_for("membership_removed in this boot",
                       lambda: events(box, "membership_removed", grant_id, "-b", "0"),
                       timeout=10)
    removed_at = int(removed[0]["__MONOTONIC_TIMESTAMP"])
    sessions_up = int(box.run(["systemctl", "show", "-p", "ActiveEnterTimestampMonotonic",
                               "--value", "systemd-user-sessions.service"]).stdout.strip())
    assert sessions_up > 0, "systemd-user-sessions.service never started"
    log(f"membership removed {(sessions_up - removed_at) / 1000:.0f} ms before logins "
        f"were allowed, by {removed[0].get('_SYSTEMD_UNIT')}")
    assert removed_at < sessions_up, (
        f"membership removed at {removed_at} us, logins allowed from {sessions_up} us")
    assert removed[0].get("_SYSTEMD_UNIT") == "jit-reconcile.service"
    assert events(box, "grant_expired", grant_id, "-b", "0")
    assert grants(box, user="alice") == []


def test_live_grant_is_rearmed_after_boot(own_host: Host) -> None:
    """Runs after the reboot above: carol's hour-long grant survived it, and its expiry
    timer must come back at boot by itself, before anyone calls `jit` (a transient
    timer is gone after a reboot; without re-arming, the grant would outlive its exp
    until the periodic sweep of a hostd that nobody started)."""
    box = own_host.box
    held = [e for e in events(box, "grant_activated", None, "-b", "-1")
            if e.get("JIT_USER") == "carol"]
    assert held, "carol's grant was not activated before the reboot"
    timer = f"jit-expire-{held[-1]['JIT_GRANT_ID']}.timer"
    wait_for(f"{timer} re-armed at boot",
             lambda: timer in box.run(["systemctl", "list-timers", "--all",
                                       "--no-pager"]).stdout, timeout=10)
    live = grants(box, user="carol")
    assert [g["id"] for g in live] == [held[-1]["JIT_GRANT_ID"]]
    assert "docker" in groups_of(box, "carol")
