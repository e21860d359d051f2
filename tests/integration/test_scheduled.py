"""Scheduled grants against a real jit-hostd in a sandbox root (issue 22 §2): pending
grants listed, cancelled by `jit revoke`, started by their timer, and after "downtime"
(hostd stopped, its clock moved on) started or dropped by the start-up reconcile."""

from __future__ import annotations

import pytest
from test_requests import make


def _schedule(sandbox, start: str = "+1h", duration: str = "1h") -> dict:
    token = sandbox.issue("alice", duration=duration, start=start)
    rc, out = sandbox.jit_json("activate", token, user="alice")
    assert rc == 0 and out["ok"], out
    assert out["grant"]["state"] == "pending", out
    return out["grant"]


def test_a_grant_for_later_is_pending_listed_and_gives_nothing(sandbox):
    g = _schedule(sandbox)
    assert "alice" not in sandbox.members("docker")
    rc, pending = sandbox.jit_json("grants", "--pending", user="alice")
    assert rc == 0 and [p["id"] for p in pending["grants"]] == [g["id"]]
    assert pending["grants"][0]["state"] == "pending"
    _, listed = sandbox.jit_json("grants", user="alice")
    assert [(x["id"], x["state"]) for x in listed["grants"]] == [(g["id"], "pending")]
    text = sandbox.jit("grants", user="alice").stdout
    assert "no active grants" in text and "pending (they start later)" in text and g["id"] in text
    (ev,) = sandbox.events("grant_scheduled")
    assert (ev["JIT_GRANT_ID"], ev["JIT_NOT_BEFORE"]) == (g["id"], g["not_before"])
    rc, other = sandbox.jit_json("grants", "--pending", user="bob")
    assert other["grants"] == []


def test_revoke_cancels_a_pending_grant(sandbox):
    g = _schedule(sandbox, start="+3s", duration="1h")
    r = sandbox.jit("revoke", g["id"], "--reason", "postponed", user="alice")
    assert r.returncode == 0, r.stderr
    (ev,) = sandbox.events("grant_revoked")
    assert (ev["JIT_GRANT_ID"], ev["JIT_DECISION"]) == (g["id"], "cancelled")
    _, listed = sandbox.jit_json("grants", user="alice")
    assert listed["grants"] == []
    # past its start: nothing starts it (the sweep runs every second in the sandbox)
    sandbox.advance_clock(10)
    assert sandbox.jit("revoke", g["id"], user="alice").returncode == 1
    assert sandbox.events("grant_activated") == [] and "alice" not in sandbox.members("docker")


def test_the_timer_at_the_start_activates_it(sandbox):
    g = _schedule(sandbox, start="+2s", duration="1h")
    assert sandbox.wait_for(lambda: sandbox.events("grant_activated"), timeout=10)
    (ev,) = sandbox.events("grant_activated")
    assert ev["JIT_GRANT_ID"] == g["id"]
    assert "alice" in sandbox.members("docker") and "alice" in sandbox.members("docker",
                                                                                "gshadow")
    _, listed = sandbox.jit_json("grants", user="alice")
    assert [(x["id"], x["state"]) for x in listed["grants"]] == [(g["id"], "active")]


def test_reconcile_after_downtime_activates_what_is_still_in_its_window(sandbox):
    g = _schedule(sandbox, start="+1h", duration="1h")
    sandbox.stop()
    sandbox.advance_clock(3600 + 600)  # down across the start, back before the end
    sandbox.start()
    assert "alice" in sandbox.members("docker")
    (ev,) = sandbox.events("grant_activated")
    assert ev["JIT_GRANT_ID"] == g["id"]


def test_reconcile_after_downtime_drops_what_ended_meanwhile(sandbox):
    g = _schedule(sandbox, start="+1h", duration="1h")
    sandbox.stop()
    sandbox.advance_clock(3 * 3600)  # down across the whole window
    sandbox.start()
    assert "alice" not in sandbox.members("docker")
    (ev,) = sandbox.events("grant_dropped")
    assert (ev["JIT_GRANT_ID"], ev["JIT_CODE"]) == (g["id"], "window_passed")
    _, listed = sandbox.jit_json("grants", user="alice")
    assert listed["grants"] == []


@pytest.fixture
def requests_box():
    box = make()  # the requests tests' policy: docker requested by %developers, %sre approve
    yield box
    box.cleanup()


def test_request_for_a_window_approved_before_it_starts(requests_box):
    sandbox = requests_box
    rc, out = sandbox.jit_json("request", "docker", "--start", "+1h", "--for", "30m",
                               "--reason", "change window", user="alice")
    assert rc == 0, out
    r = out["request"]
    assert r["starts"] and r["ends"] and r["state"] == "pending"
    rc, out = sandbox.jit_json("approve", r["id"], user="bob")
    assert rc == 0, out
    rc, pending = sandbox.jit_json("grants", "--pending", user="alice")
    assert [p["id"] for p in pending["grants"]] == [out["request"]["grant_id"]]
    assert pending["grants"][0]["not_before"] == r["starts"]
    assert "alice" not in sandbox.members("docker")


def test_too_far_ahead_is_refused(sandbox):
    token = sandbox.issue("alice", duration="1h", start="+8d")
    rc, out = sandbox.jit_json("activate", token, user="alice")
    assert rc == 1 and out["code"] == "not_yet_valid", out
    assert "7d" in out["message"]


def test_audit_held_at_shows_a_scheduled_grant_as_pending(sandbox):
    g = _schedule(sandbox, start="+1h", duration="1h")
    rc, out = sandbox.jit_json("audit", "--held-at", "now")
    assert rc == 0, out
    assert out["held"] == []
    assert [(p["grant_id"], p["state"], p["not_before"]) for p in out["pending"]] == [
        (g["id"], "pending", g["not_before"])]
    text = sandbox.jit("audit", "--held-at", "now").stdout
    assert "nobody held a role" in text and "pending (scheduled, not yet held):" in text
