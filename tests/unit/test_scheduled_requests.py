"""`jit request ROLE --start TIME --for D` (issue 22 §2): the window is fixed when asked,
an approval never moves it, one after the start grants what is left, after its end the
request expires. Over the approvals test's world (real Store, host signer, fake groups)."""

from __future__ import annotations

import dataclasses

import pytest
from test_approvals import NOW, World

from hostd.errors import JitError
from hostd.state import schedule

HOUR = 3600


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    yield world
    world.store.close()


def test_a_request_for_later_shows_its_window_and_stays_answerable_until_its_end(w):
    r = w.requests.create(1000, "docker", 1800, "change window", start=NOW + 2 * HOUR)
    assert (r["starts"], r["ends"]) == ("2027-01-15T10:00:00Z", "2027-01-15T10:30:00Z")
    assert r["expires"] == r["ends"]  # not the 10 minute request_ttl
    w.clock.t = NOW + 2 * HOUR + 1799
    assert w.requests.expire_due() == []


def test_an_approval_before_the_start_schedules_the_whole_window(w):
    r = w.requests.create(1000, "docker", 1800, "change window", start=NOW + 2 * HOUR)
    w.clock.t = NOW + HOUR  # approved an hour later: the window does not move
    out = w.requests.approve(1001, r["id"])
    assert out["state"] == "approved"
    p = schedule.get(w.store, out["grant_id"])
    assert (p["state"], p["not_before"], p["exp"]) == ("pending", NOW + 2 * HOUR,
                                                        NOW + 2 * HOUR + 1800)
    assert not w.accounts.listed("alice", "docker")
    (ev,) = w.events("grant_scheduled")
    assert ev["JIT_REQUEST_ID"] == r["id"]
    w.clock.t = NOW + 2 * HOUR
    w.core.sweep()
    assert w.accounts.listed("alice", "docker")
    (activated,) = w.events("grant_activated")
    assert (activated["JIT_GRANT_ID"], activated["JIT_REQUEST_ID"]) == (p["id"], r["id"])


def test_an_approval_after_the_start_grants_what_is_left(w):
    r = w.requests.create(1000, "docker", 1800, "change window", start=NOW + HOUR)
    w.clock.t = NOW + HOUR + 600
    out = w.requests.approve(1001, r["id"])
    g = w.store.get_grant(out["grant_id"])
    assert (g["not_before"], g["exp"]) == (NOW + HOUR + 600, NOW + HOUR + 1800)
    assert w.accounts.listed("alice", "docker")


def test_after_its_end_the_request_expires_and_cannot_be_approved(w):
    r = w.requests.create(1000, "docker", 1800, "change window", start=NOW + HOUR)
    w.clock.t = NOW + HOUR + 1800
    with pytest.raises(JitError) as info:
        w.requests.approve(1001, r["id"])
    assert info.value.code == "request_expired"
    assert w.store.get_request(r["id"])["state"] == "expired"
    (ev,) = w.events("request_expired")
    assert ev["JIT_REQUEST_ID"] == r["id"]
    assert w.store.grants(state=None) == []


def test_a_window_too_far_ahead_or_in_the_past_is_refused(w):
    w.core.config.roles["docker"] = dataclasses.replace(
        w.core.config.roles["docker"], max_lead_time=HOUR)
    with pytest.raises(JitError) as info:
        w.requests.create(1000, "docker", 1800, "x", start=NOW + 2 * HOUR)
    assert info.value.code == "not_yet_valid"
    with pytest.raises(JitError) as info:
        w.requests.create(1000, "docker", 1800, "x", start=NOW - HOUR)
    assert info.value.code == "bad_request"


def test_the_same_role_for_another_window_is_another_request(w):
    a = w.requests.create(1000, "docker", 1800, "x", start=NOW + HOUR)
    b = w.requests.create(1000, "docker", 1800, "x", start=NOW + 3 * HOUR)
    again = w.requests.create(1000, "docker", 1800, "x", start=NOW + HOUR)
    assert a["id"] != b["id"] and again["id"] == a["id"] and again["joined"]


def test_break_glass_for_later_is_scheduled_at_once(tmp_path):
    w = World(tmp_path, approvals_needed=0)
    try:
        r = w.requests.create(1000, "docker", 1800, "night work", start=NOW + HOUR)
        assert r["state"] == "approved"
        assert schedule.get(w.store, r["grant_id"])["state"] == "pending"
        assert not w.accounts.listed("alice", "docker")
    finally:
        w.store.close()


def test_the_approvers_notice_names_the_window(w):
    from hostd.server.notify import notice_lines

    r = w.requests.create(1000, "docker", 1800, "change window", start=NOW + 2 * HOUR)
    assert "    window: 2027-01-15T10:00:00Z to 2027-01-15T10:30:00Z" in notice_lines(
        "created", r)
    plain = w.requests.create(1000, "docker", 1800, "now please")
    assert not any("window" in line for line in notice_lines("created", plain))
