"""A short grant, activated by its holder, is taken away by its systemd timer on time."""

from __future__ import annotations

import time

from container import log
from jithost import Host, events, grants, groups_of, issue, wait_for


def test_grant_applies_and_expires_within_two_seconds(host: Host) -> None:
    box = host.box
    assert "docker" not in groups_of(box, "alice")
    token = issue(box, "alice", "docker", "20s", reason="e2e expiry")
    box.run(["jit", "activate", token], user="alice")

    held = [g for g in grants(box, user="alice") if g["role"] == "docker"]
    assert len(held) == 1, held
    grant_id, exp = held[0]["id"], int(held[0]["exp"])
    assert "docker" in groups_of(box, "alice")
    assert held[0]["groups"] == ["docker"]

    timers = box.run(["systemctl", "list-timers", "--all", "--no-pager"]).stdout
    assert f"jit-expire-{grant_id}.timer" in timers, timers

    assert exp - time.time() > 5, "the grant must still be live for the checks above"
    wait_for("alice to leave docker", lambda: "docker" not in groups_of(box, "alice"),
             timeout=exp - time.time() + 15)
    removed = wait_for(
        "the membership_removed event",
        lambda: events(box, "membership_removed", grant_id), timeout=10)
    expired = events(box, "grant_expired", grant_id)
    assert expired, "no grant_expired event"
    for entry in (removed[0], expired[0]):
        at = int(entry["__REALTIME_TIMESTAMP"]) / 1e6
        log(f"{entry['JIT_EVENT']} {at - exp:+.3f} s after exp")
        assert exp <= at <= exp + 2, f"{entry['JIT_EVENT']} at {at:.3f}, exp {exp}"
    assert grants(box, user="alice") == []
    timers = box.run(["systemctl", "list-timers", "--all", "--no-pager"]).stdout
    assert f"jit-expire-{grant_id}" not in timers
