"""Refusal events are limited per uid (state/journal.RefusalLimiter), so one user hammering hostd
cannot flood the journal and push hostd's real events past journald's rate limit; what
is held back is counted in one `refusals_suppressed` summary per uid and window."""

from __future__ import annotations

import pytest
from fakes import Clock, FakeAccounts

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.events import EVENT_TYPES
from hostd.state.journal import (
    OTHER_UIDS,
    Events,
    RefusalLimiter,
    read_mirror,
    summary_message,
)
from hostd.state.store import Store

BURST, INTERVAL = 20, 30.0


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sink(tmp_path, clock):
    mirror = tmp_path / "events.jsonl"
    return Events(mirror, journal=False, limiter=RefusalLimiter(clock=clock)), mirror


def of(mirror, event: str) -> list[dict]:
    return [e for e in read_mirror(mirror) if e["JIT_EVENT"] == event]


def refuse(ev: Events, uid: int, n: int, clock: Clock | None = None, step: float = 0.0) -> int:
    """n refusals from uid; returns how many were logged."""
    logged = 0
    for _ in range(n):
        if ev.refusal("grant_refused", "grant refused: malformed", uid=uid,
                      user=FakeAccounts().user_by_uid(uid), code="malformed") is not None:
            logged += 1
        if clock is not None:
            clock.t += step
    return logged


def test_flood_from_one_uid_is_burst_then_one_summary(sink, clock):
    ev, mirror = sink
    assert refuse(ev, 1000, 5000) == BURST
    assert len(of(mirror, "grant_refused")) == BURST
    assert ev.flush_refusals() == [], "no summary before the window has passed"
    clock.t += INTERVAL
    (summary,) = ev.flush_refusals()
    assert summary["JIT_COUNT"] == "4980" and summary["JIT_UID"] == "1000"
    assert summary["JIT_USER"] == "alice" and summary["JIT_EVENT"] == "refusals_suppressed"
    assert summary["MESSAGE"] == ("4980 refusals suppressed for uid 1000 (alice): "
                                  "grant_refused 4980")
    assert summary["MESSAGE_ID"] == EVENT_TYPES["refusals_suppressed"].message_id
    assert ev.flush_refusals() == [], "each refusal is summed up once"
    assert len(of(mirror, "refusals_suppressed")) == 1


def test_flood_at_the_measured_rate_stays_within_the_bucket(sink, clock):
    """4,128 refusals a second (the rate seen): burst, then one a second, all counted."""
    ev, mirror = sink
    start = clock.t
    logged = refuse(ev, 1000, 5000, clock, step=1 / 4128)
    elapsed = clock.t - start
    assert logged <= BURST + elapsed + 1
    clock.t += INTERVAL
    ev.flush_refusals()
    (summary,) = of(mirror, "refusals_suppressed")
    assert int(summary["JIT_COUNT"]) + logged == 5000


def test_another_uid_is_not_affected(sink):
    ev, mirror = sink
    refuse(ev, 1000, 5000)
    assert refuse(ev, 1001, BURST) == BURST
    assert sum(e["JIT_UID"] == "1001" for e in of(mirror, "grant_refused")) == BURST


def test_real_events_are_never_limited(sink):
    ev, mirror = sink
    refuse(ev, 1000, 5000)
    for n in range(5000):
        assert ev.emit("grant_expired", f"grant g{n} expired", uid=1000, user="alice",
                       grant_id=f"g{n}") is not None
    assert len(of(mirror, "grant_expired")) == 5000


def test_bucket_refills_at_one_a_second(sink, clock):
    ev, _ = sink
    refuse(ev, 1000, BURST + 5)
    clock.t += 3
    assert refuse(ev, 1000, 10) == 3
    clock.t += 100
    assert refuse(ev, 1000, BURST + 1) == BURST


def test_summary_goes_out_with_the_next_event_too(sink, clock):
    """Not only the sweep: any event after the window writes the summary first."""
    ev, mirror = sink
    refuse(ev, 1000, BURST + 7)
    clock.t += INTERVAL
    ev.emit("grant_expired", "grant g1 expired", grant_id="g1")
    assert [e["JIT_EVENT"] for e in read_mirror(mirror)][-2:] == [
        "refusals_suppressed", "grant_expired"]
    assert of(mirror, "refusals_suppressed")[0]["JIT_COUNT"] == "7"


def test_summary_counts_each_refusal_kind(sink, clock):
    ev, _ = sink
    refuse(ev, 1000, BURST + 2)
    ev.refusal("sudo_denied", "sudo denied", uid=1000, user="alice")
    clock.t += INTERVAL
    (summary,) = ev.flush_refusals()
    assert summary["MESSAGE"] == ("3 refusals suppressed for uid 1000 (alice): "
                                  "grant_refused 2, sudo_denied 1")


def test_state_is_bounded_under_a_flood_of_uids(tmp_path, clock):
    limiter = RefusalLimiter(max_uids=8, clock=clock)
    ev = Events(tmp_path / "events.jsonl", journal=False, limiter=limiter)
    for uid in range(10_000, 12_000):
        refuse(ev, uid, BURST + 1)
        assert len(limiter) <= 9
    clock.t += INTERVAL
    summaries = ev.flush_refusals()
    total = sum(int(s["JIT_COUNT"]) for s in summaries)
    logged = len(of(tmp_path / "events.jsonl", "grant_refused"))
    assert total + logged == 2000 * (BURST + 1), "every refusal logged or counted"
    other = [s for s in summaries if "JIT_UID" not in s]
    assert len(other) == 1 and "other uids" in other[0]["MESSAGE"]


def test_idle_buckets_are_forgotten(clock):
    limiter = RefusalLimiter(max_uids=4, clock=clock)
    for uid in range(4):
        limiter.allow("grant_refused", uid)
    clock.t += BURST  # all refilled, none owes a summary
    assert limiter.allow("grant_refused", 99)
    assert len(limiter) == 1


def test_summary_message_names_other_uids():
    from collections import Counter

    assert summary_message(OTHER_UIDS, "", Counter(grant_refused=3)).startswith(
        "3 refusals suppressed for other uids")


# --- through core: the regression ---------------------------------------------------------


@pytest.fixture
def core(tmp_path, config, host, clock):
    store = Store(tmp_path / "state.db")
    events = Events(tmp_path / "events.jsonl", journal=False,
                    limiter=RefusalLimiter(clock=clock))
    yield Core(config, store, FakeAccounts(), events, host, clock=clock)
    store.close()


def test_core_refusal_flood_is_limited_and_summed_by_the_sweep(core, clock, tmp_path):
    """Regression: core.activate logged every refusal (4,128 a second from one uid)."""
    for _ in range(5000):
        with pytest.raises(JitError):
            core.activate("not-a-token", 1000)
    mirror = tmp_path / "events.jsonl"
    refused = of(mirror, "grant_refused")
    assert len(refused) == BURST
    assert refused[0]["JIT_USER"] == "alice" and refused[0]["JIT_CODE"] == "malformed"
    clock.t += INTERVAL
    core.sweep()
    (summary,) = of(mirror, "refusals_suppressed")
    assert summary["JIT_COUNT"] == str(5000 - BURST) and summary["JIT_UID"] == "1000"
