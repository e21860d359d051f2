"""Scheduled grants (issue 22 §2): the window arithmetic (hostd/policy/windows.py) and
the core's pending grants (hostd/core/scheduled.py) over a real Store, a fake group
database and a clock the tests move by hand."""

from __future__ import annotations

import dataclasses

import pytest
from fakes import Clock, FakeAccounts

from hostd.core.effects import ArmTimer, CancelTimer
from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.policy import windows
from hostd.state import schedule
from hostd.state.journal import Events, read_mirror
from hostd.state.store import Store

HOUR = 3600
DAY = 86400
NOW = 1_800_000_000


# --- window arithmetic -----------------------------------------------------------------------

def test_a_start_ahead_is_scheduled_and_one_now_is_not():
    assert windows.is_scheduled(NOW + 1, NOW)
    assert not windows.is_scheduled(NOW, NOW) and not windows.is_scheduled(NOW - 5, NOW)


LEAD = [
    ("exactly-the-lead", 7 * DAY, None),
    ("lead-plus-leeway", 7 * DAY + 30, None),
    ("one-past-lead-and-leeway", 7 * DAY + 31, "not_yet_valid"),
    ("now", 0, None),
]


@pytest.mark.parametrize("ahead,code", [c[1:] for c in LEAD], ids=[c[0] for c in LEAD])
def test_lead_time_edges(ahead, code):
    if code is None:
        windows.check_lead(NOW + ahead, NOW, 7 * DAY, 30, "ops")
    else:
        with pytest.raises(JitError) as info:
            windows.check_lead(NOW + ahead, NOW, 7 * DAY, 30, "ops")
        assert info.value.code == code and "7d" in info.value.message


def test_a_request_window_is_fixed_and_capped():
    assert windows.request_window(NOW + HOUR, 2 * HOUR, NOW, DAY, 4 * HOUR, 30, "ops") == (
        NOW + HOUR, NOW + 3 * HOUR, False)
    assert windows.request_window(NOW + HOUR, 9 * HOUR, NOW, DAY, 4 * HOUR, 30, "ops") == (
        NOW + HOUR, NOW + 5 * HOUR, True)


def test_a_request_start_within_the_leeway_starts_now_and_one_in_the_past_is_refused():
    assert windows.request_window(NOW - 30, HOUR, NOW, DAY, HOUR, 30, "ops")[:2] == (
        NOW, NOW + HOUR)
    with pytest.raises(JitError) as info:
        windows.request_window(NOW - 31, HOUR, NOW, DAY, HOUR, 30, "ops")
    assert info.value.code == "bad_request"
    with pytest.raises(JitError) as info:
        windows.request_window(NOW + 2 * DAY, HOUR, NOW, DAY, HOUR, 30, "ops")
    assert info.value.code == "not_yet_valid"


GRANTED = [
    ("approved-before-start", NOW - HOUR, (NOW, NOW + HOUR)),
    ("approved-at-start", NOW, (NOW, NOW + HOUR)),
    ("approved-after-start", NOW + 600, (NOW + 600, NOW + HOUR)),
    ("approved-one-second-before-end", NOW + HOUR - 1, (NOW + HOUR - 1, NOW + HOUR)),
    ("approved-at-end", NOW + HOUR, None),
    ("approved-after-end", NOW + DAY, None),
]


@pytest.mark.parametrize("now,granted", [c[1:] for c in GRANTED], ids=[c[0] for c in GRANTED])
def test_an_approval_grants_what_is_left_of_the_window(now, granted):
    assert windows.granted_window(NOW, NOW + HOUR, now) == granted


# --- pending grants in the core --------------------------------------------------------------

class World:
    def __init__(self, tmp_path, config, host, mint) -> None:
        self.mint = mint
        self.clock = Clock(mint.now)
        self.accounts = FakeAccounts()
        self.store = Store(tmp_path / "state.db")
        self.mirror = tmp_path / "events.jsonl"
        self.core = Core(config, self.store, self.accounts, Events(self.mirror, journal=False),
                         host, clock=self.clock)

    def schedule(self, start: int = HOUR, length: int = HOUR, caller: int = 1000,
                 **claims) -> dict:
        now = self.mint.now
        token = self.mint.token(**{"nbf": now + start, "exp": now + start + length, **claims})
        return self.core.activate(token, caller)

    def events(self, name: str) -> list[dict]:
        return [e for e in read_mirror(self.mirror) if e["JIT_EVENT"] == name]

    def at(self, offset: int) -> None:
        self.clock.t = self.mint.now + offset


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    yield world
    world.store.close()


def test_a_future_start_is_kept_pending_and_gives_nothing_yet(w):
    p = w.schedule()
    assert (p["state"], p["exp"]) == ("pending", w.mint.now + 2 * HOUR)
    assert w.store.grants(state=None) == [] and not w.accounts.listed("alice", "docker")
    assert [g["id"] for g in w.core.list_grants(1000, pending=True)] == [p["id"]]
    assert w.core.list_grants(1000, pending=False) == []
    assert [g["state"] for g in w.core.list_grants(1000)] == ["pending"]
    (ev,) = w.events("grant_scheduled")
    assert (ev["JIT_GRANT_ID"], ev["JIT_DECISION"], ev["JIT_GROUPS"]) == (
        p["id"], "scheduled", "docker")
    assert w.core.take_effects() == [ArmTimer(p["id"], w.mint.now + HOUR, warn=False)]
    assert w.events("grant_activated") == []


def test_the_timer_at_the_start_applies_it_under_the_same_id(w):
    p = w.schedule()
    w.core.take_effects()
    w.at(HOUR - 1)
    assert w.core.expire(p["id"]) is False  # fired early: asks again at the start
    assert w.core.take_effects() == [ArmTimer(p["id"], w.mint.now + HOUR, warn=False)]
    w.at(HOUR)
    assert w.core.expire(p["id"]) is True
    assert w.accounts.listed("alice", "docker")
    (g,) = w.core.list_grants(1000)
    assert (g["id"], g["state"], g["exp"]) == (p["id"], "active", w.mint.now + 2 * HOUR)
    assert w.core.take_effects() == [ArmTimer(p["id"], w.mint.now + 2 * HOUR)]
    (ev,) = w.events("grant_activated")
    assert ev["JIT_GRANT_ID"] == p["id"]
    assert w.core.expire(p["id"]) is False  # a second firing: live, asks again at exp
    w.at(2 * HOUR)
    assert w.core.expire(p["id"]) is True and not w.accounts.listed("alice", "docker")


def test_the_token_is_used_once_scheduled(w):
    token = w.mint.token(nbf=w.mint.now + HOUR, exp=w.mint.now + 2 * HOUR)
    w.core.activate(token, 1000)
    with pytest.raises(JitError) as info:
        w.core.activate(token, 1000)
    assert info.value.code == "replayed"
    w.at(HOUR)
    w.core.sweep()
    with pytest.raises(JitError) as info:
        w.core.activate(token, 1000)
    assert info.value.code == "replayed"


def test_revoke_cancels_a_pending_grant_and_it_never_starts(w):
    p = w.schedule()
    w.core.take_effects()
    with pytest.raises(JitError) as info:
        w.core.revoke(p["id"], 1001)  # bob: not his
    assert info.value.code == "not_found"
    out = w.core.revoke(p["id"], 1000, "change postponed")
    assert out["state"] == "cancelled"
    assert w.core.take_effects() == [CancelTimer(p["id"])]
    (ev,) = w.events("grant_revoked")
    assert (ev["JIT_DECISION"], ev["JIT_REASON"], ev["JIT_APPROVER"]) == (
        "cancelled", "change postponed", "alice")
    w.at(HOUR)
    assert w.core.expire(p["id"]) is False and w.core.sweep() == []
    assert not w.accounts.listed("alice", "docker") and w.core.list_grants(1000) == []
    with pytest.raises(JitError):
        w.core.revoke(p["id"], 1000)


def test_the_sweep_starts_what_a_missed_timer_did_not(w):
    p = w.schedule()
    w.at(HOUR + 5)
    w.core.sweep()
    assert w.accounts.listed("alice", "docker")
    assert w.store.get_grant(p["id"])["state"] == "active"


def test_reconcile_after_downtime_starts_what_is_still_in_its_window(w):
    p = w.schedule()
    w.at(HOUR + 1800)  # down across the start, back before the end
    w.core.take_effects()
    live = w.core.reconcile()
    assert live == [(p["id"], w.mint.now + 2 * HOUR)]
    assert w.accounts.listed("alice", "docker")


def test_reconcile_after_downtime_drops_a_grant_whose_window_passed(w):
    p = w.schedule()
    w.at(3 * HOUR)  # down across the whole window
    assert w.core.reconcile() == []
    assert not w.accounts.listed("alice", "docker")
    (ev,) = w.events("grant_dropped")
    assert (ev["JIT_GRANT_ID"], ev["JIT_CODE"], ev["JIT_DECISION"]) == (
        p["id"], "window_passed", "dropped")
    assert schedule.get(w.store, p["id"])["state"] == "dropped"
    assert w.core.list_grants(1000) == []


def test_reconcile_arms_the_start_of_every_pending_grant(w):
    a = w.schedule(start=HOUR)
    b = w.schedule(start=2 * HOUR, jti="second")
    w.core.take_effects()
    w.core.reconcile()
    assert w.core.take_effects() == [ArmTimer(a["id"], w.mint.now + HOUR, warn=False),
                                     ArmTimer(b["id"], w.mint.now + 2 * HOUR, warn=False)]


SECOND_CHECK = [
    ("role-gone", "unknown_role"),
    ("issuer-no-longer-allowed", "issuer_not_allowed"),
    ("issuer-gone", "unknown_issuer"),
    ("user-gone", "wrong_user"),
    ("group-gone", "config_error"),
]


@pytest.mark.parametrize("change,code", SECOND_CHECK, ids=[c[0] for c in SECOND_CHECK])
def test_the_second_check_at_the_start_drops_what_no_longer_holds(change, code, w):
    p = w.schedule()
    cfg = w.core.config
    if change == "role-gone":
        w.core.config = dataclasses.replace(cfg, roles={k: v for k, v in cfg.roles.items()
                                                        if k != "docker"})
    elif change == "issuer-no-longer-allowed":
        roles = dict(cfg.roles, docker=dataclasses.replace(cfg.roles["docker"], issuers=()))
        w.core.config = dataclasses.replace(cfg, roles=roles)
    elif change == "issuer-gone":
        w.core.config = dataclasses.replace(cfg, issuers={})
    elif change == "user-gone":
        del w.accounts.uids["alice"]
    else:
        del w.accounts.members["docker"]
    w.at(HOUR)
    assert w.core.expire(p["id"]) is False
    (ev,) = w.events("grant_dropped")
    assert ev["JIT_CODE"] == code
    assert w.store.grants(state=None) == []


def test_may_start_names_a_host_that_no_longer_matches(w):
    p = w.schedule()
    row = dict(schedule.get(w.store, p["id"]), hosts=["db-*"])
    assert w.core._may_start(row) == "wrong_host"
    assert w.core._may_start(schedule.get(w.store, p["id"])) is None


def test_beyond_the_roles_lead_time_is_refused(w):
    cfg = w.core.config
    roles = dict(cfg.roles, docker=dataclasses.replace(cfg.roles["docker"],
                                                       max_lead_time=HOUR))
    w.core.config = dataclasses.replace(cfg, roles=roles)
    with pytest.raises(JitError) as info:
        w.schedule(start=HOUR + cfg.leeway + 1)
    assert info.value.code == "not_yet_valid"
    assert w.schedule(start=HOUR, jti="ok")["state"] == "pending"


def test_a_start_at_this_second_applies_at_once(w):
    g = w.schedule(start=0)
    assert w.store.get_grant(g["id"])["state"] == "active"
    assert w.accounts.listed("alice", "docker") and w.events("grant_scheduled") == []


# --- jit audit --held-at ---------------------------------------------------------------------

def _stream() -> list[dict[str, str]]:
    """x: scheduled at T, starts at T+100 until T+200; y: scheduled, cancelled at T+50;
    z: scheduled, dropped at T+300 (its window passed while the host was down)."""
    from audit_stream import record

    from hostd.policy.durations import rfc3339

    def ev(name: str, gid: str, at: int, **extra: object) -> dict[str, str]:
        fields = {"user": "alice", "uid": 1000, "role": "docker", "grant_id": gid,
                  "issuer": "corp", "groups": ["docker"], "not_after": rfc3339(NOW + 200)}
        if name not in ("grant_activated", "grant_expired"):
            fields["not_before"] = rfc3339(NOW + 100)
        return record(name, name, (NOW + at) * 1_000_000, **fields, **extra)

    return [ev("grant_scheduled", "x", 0), ev("grant_activated", "x", 100),
            ev("grant_expired", "x", 200),
            ev("grant_scheduled", "y", 0), ev("grant_revoked", "y", 50, approver="alice"),
            ev("grant_scheduled", "z", 10), ev("grant_dropped", "z", 300, code="window_passed")]


AUDIT_AT = [
    ("before-anything", -1, [], []),
    ("all-scheduled", 20, [], ["x", "y", "z"]),
    ("one-cancelled", 60, [], ["x", "z"]),
    ("x-started", 150, ["x"], ["z"]),
    ("x-ended-z-still-pending", 250, [], ["z"]),
    ("z-dropped", 300, [], []),
]


@pytest.mark.parametrize("at,held,pending", [c[1:] for c in AUDIT_AT],
                         ids=[c[0] for c in AUDIT_AT])
def test_held_at_shows_scheduled_grants_as_pending_not_held(at, held, pending):
    from hostd.audit import journal as audit
    from hostd.audit.scheduled import pending_at

    stream = _stream()
    assert [h.grant_id for h in audit.held_at(stream, NOW + at)] == held
    assert sorted(p.grant_id for p in pending_at(stream, NOW + at)) == pending


def test_pending_lines_name_the_window():
    from hostd.audit.scheduled import pending_at, pending_lines

    (line,) = list(pending_lines(pending_at(_stream(), NOW + 260)))[1:]
    assert "grant z" in line and "from 2027-01-15T08:01:40Z until 2027-01-15T08:03:20Z" in line


def test_revoke_all_cancels_pending_grants_too(w):
    p = w.schedule()
    live = w.core.activate(w.mint.token(jti="now"), 1000)
    assert sorted(w.core.revoke_all("package removed")) == sorted([p["id"], live["id"]])
    assert schedule.get(w.store, p["id"])["state"] == "cancelled"
    w.at(HOUR)
    w.core.sweep()
    assert not w.accounts.listed("alice", "docker")


def test_a_start_that_fails_to_apply_is_dropped_and_the_sweep_goes_on(w):
    p = w.schedule()
    w.accounts.fail_add.add(("alice", "docker"))
    w.at(HOUR)
    assert w.core.sweep() == []  # no exception escapes the sweep (nor the reconcile)
    (ev,) = w.events("grant_dropped")
    assert (ev["JIT_GRANT_ID"], ev["JIT_DECISION"]) == (p["id"], "dropped")
    assert w.store.get_grant(p["id"])["state"] == "failed"
    assert not w.accounts.listed("alice", "docker")


def test_the_html_report_draws_no_bar_for_a_grant_never_held():
    from hostd.audit.model import build_grants, to_event

    evs = [to_event(i, e) for i, e in enumerate(_stream())]
    assert sorted(build_grants(evs, NOW + 1000)) == ["x"]  # y cancelled, z dropped


class _KidLock:
    """A revocation list's verdict (hostd/core/revocations.py) reduced to one kid entry."""

    def __init__(self, kid: str) -> None:
        self.kid = kid

    def refusal(self, grant: dict, user: str) -> tuple[str, str] | None:
        return ("revoked", f"kid={self.kid}") if grant["kid"] == self.kid else None


def test_a_revocation_in_force_at_the_start_drops_the_grant_by_its_kid(w):
    p = w.schedule()
    kid = schedule.get(w.store, p["id"])["kid"]
    assert kid  # the key that verified it is kept for kid entries
    w.core.revocations = _KidLock(kid)
    w.at(HOUR)
    assert w.core.expire(p["id"]) is False
    (ev,) = w.events("grant_dropped")
    assert ev["JIT_CODE"] == "revoked"
    assert w.store.grants(state=None) == [] and not w.accounts.listed("alice", "docker")


def test_a_started_grant_keeps_its_kid(w):
    p = w.schedule()
    kid = schedule.get(w.store, p["id"])["kid"]
    w.core.revocations = _KidLock("another-key")
    w.at(HOUR)
    assert w.core.expire(p["id"]) is True
    (g,) = w.store.grants(state=None)
    assert g["kid"] == kid
