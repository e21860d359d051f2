"""The audit report's parts (hostd/audit/model.py, audit_html.py): how a grant ended,
which request caused it, lanes, text. The page itself, as text and in chromium:
tests/integration/test_audit_html.py."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime

import pytest

from hostd.audit import report as audit_html
from hostd.audit import timeline
from hostd.audit.journal import inert
from hostd.audit.markup import visible
from hostd.audit.model import Event, build_grants, build_requests, parse_rfc3339
from hostd.audit.report import CSS, render_html
from hostd.audit.timeline import _nice_step, _pack
from hostd.events import escape

T0 = 1_800_000_000.0


def ev(idx: int, seconds: float | None, kind: str, **fields: str) -> Event:
    entry = {"JIT_EVENT": kind, **{"JIT_" + k.upper(): v for k, v in fields.items()}}
    return Event(idx, None if seconds is None else T0 + seconds, entry)


def raw(seconds: float, kind: str, **fields: str) -> dict[str, str]:
    entry = {"__REALTIME_TIMESTAMP": str(int((T0 + seconds) * 1e6)), "JIT_EVENT": kind,
             "MESSAGE": kind, "SYSLOG_IDENTIFIER": "jit-hostd"}
    entry.update({"JIT_" + k.upper(): v for k, v in fields.items()})
    return entry


def rfc(seconds: float) -> str:
    return datetime.fromtimestamp(T0 + seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_way_a_grant_ends() -> None:
    evs = [
        ev(0, 0, "grant_activated", grant_id="exp", user="a", not_after=rfc(60)),
        ev(1, 60, "grant_expired", grant_id="exp", user="a"),
        ev(2, 5, "grant_activated", grant_id="rev", user="a", not_after=rfc(600)),
        ev(3, 9, "grant_revoked", grant_id="rev", user="a", approver="root", reason="done"),
        ev(4, 10, "membership_added", grant_id="fail", user="b", groups="docker"),
        ev(5, 11, "membership_removed", grant_id="fail", user="b", groups="docker"),
        ev(6, 20, "grant_activated", grant_id="live", user="c", not_after=rfc(7200)),
        ev(7, 20, "grant_activated", grant_id="open", user="c", not_after=rfc(100)),
        ev(8, 30, "grant_expired", grant_id="before", user="d"),
        ev(9, 40, "sudo_allowed", grant_id="used", user="d", command="/bin/true"),
    ]
    grants = build_grants(evs, ref=T0 + 3600)
    assert {gid: g.ending for gid, g in grants.items()} == {
        "exp": "expired", "rev": "revoked", "fail": "failed", "live": "live",
        "open": "open", "before": "expired", "used": "live"}
    assert grants["rev"].ended_by == "root" and grants["rev"].reason == "done"
    assert (grants["fail"].start, grants["fail"].end) == (T0 + 10, T0 + 11)
    assert grants["open"].end == T0 + 100  # drawn to its not_after, as "end not seen"
    assert grants["live"].end is None
    assert grants["before"].start is None  # activated before the period: drawn from its start
    # the same grant seen from a period that ends before its not_after is live then
    assert build_grants(evs, ref=T0 + 50)["open"].ending == "live"


def test_requests_link_to_the_grant_they_caused() -> None:
    evs = [
        ev(0, 0, "request_created", request_id="r1", user="alice", role="docker"),
        ev(1, 30, "request_approved", request_id="r1", user="alice", role="docker",
           approver="bob"),
        ev(2, 30.2, "grant_activated", grant_id="g1", user="alice", role="docker",
           issuer="host"),
        ev(3, 31, "grant_activated", grant_id="corp1", user="alice", role="docker",
           issuer="corp"),
        ev(4, 40, "request_created", request_id="r2", user="alice", role="docker"),
        ev(5, 50, "request_approved", request_id="r2", user="alice", role="docker",
           approver="bob"),
        ev(6, 500, "grant_activated", grant_id="late", user="alice", role="docker",
           issuer="host"),
        ev(7, 60, "breakglass", request_id="r3", grant_id="bg", user="carol", role="docker"),
        ev(8, 60, "grant_activated", grant_id="bg", user="carol", role="docker", issuer="host"),
        ev(9, 70, "request_created", request_id="r4", user="carol", role="db"),
        ev(10, 80, "request_denied", request_id="r4", user="carol", role="db", approver="bob"),
        ev(11, 90, "request_expired", request_id="r5", user="carol", role="db",
           decision="cancelled"),
    ]
    grants = build_grants(evs, ref=T0 + 3600)
    reqs = build_requests(evs, grants)
    assert reqs["r1"].grant_id == "g1" and grants["g1"].request is reqs["r1"]
    assert grants["corp1"].request is None  # a corp grant is nobody's request
    assert reqs["r2"].grant_id == "" and grants["late"].request is None  # too late to be it
    assert reqs["r3"].outcome == "break-glass" and grants["bg"].breakglass
    assert grants["bg"].request is reqs["r3"]
    assert reqs["r4"].outcome == "denied" and reqs["r5"].outcome == "cancelled"
    assert reqs["r5"].created is None  # asked before the period: decisions only


def test_a_grant_naming_its_request_is_linked_however_late() -> None:
    evs = [
        ev(0, 0, "request_created", request_id="r1", user="alice", role="docker"),
        ev(1, 30, "request_approved", request_id="r1", user="alice", role="docker",
           approver="bob"),
        ev(2, 31, "grant_activated", grant_id="other", user="alice", role="docker",
           issuer="host"),  # closer in time, but names no request: not r1's
        ev(3, 90, "grant_activated", grant_id="g1", user="alice", role="docker",
           issuer="host", request_id="r1"),
    ]
    grants = build_grants(evs, ref=T0 + 3600)
    reqs = build_requests(evs, grants)
    assert reqs["r1"].grant_id == "g1" and grants["g1"].request is reqs["r1"]
    assert grants["other"].request is None


def test_overlapping_grants_get_lanes_of_their_own() -> None:
    evs = [ev(i, s, "grant_activated", grant_id=f"g{i}", user="a", not_after=rfc(e))
           for i, (s, e) in enumerate([(0, 100), (50, 150), (120, 200), (160, 300)])]
    evs += [ev(10 + i, e, "grant_expired", grant_id=f"g{i}", user="a")
            for i, (_, e) in enumerate([(0, 100), (50, 150), (120, 200), (160, 300)])]
    grants = build_grants(evs, ref=T0 + 1000)
    assert _pack(list(grants.values())) == 2
    assert [grants[f"g{i}"].lane for i in range(4)] == [0, 1, 0, 1]


def test_visible_leaves_hostd_text_alone_and_shows_control_characters() -> None:
    """The page's escaping is events.escape (its `logged` form), the same as `jit audit`'s
    table: a newline shows as hostd logs it (\\n), backslashes are not doubled again."""
    hostile = "a\nb\x1b[31m\u202e\x00\u2028\\ c\u00a0é"
    assert visible(escape(hostile)) == escape(hostile)  # already escaped: unchanged
    shown = visible(hostile)
    assert shown == "a\\nb\\x1b[31m\\u202e\\x00\\u2028\\ c\u00a0é"
    assert shown == escape(hostile, logged=True) == inert(hostile)
    assert not re.search(r"[\x00-\x1f\u202e\u2028]", shown)


def test_csp_admits_exactly_the_style_block() -> None:
    page = render_html([raw(0, "hostd_started")], host="h", since=None, until=None)
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in page
    assert f"<style>{CSS}</style>" in page
    assert page.count("<style") == 1 and " style=" not in page


@pytest.mark.parametrize(("span", "step"), [(30, 5), (600, 60), (3600, 600), (4 * 3600, 1800),
                                            (86400, 10800), (30 * 86400, 604800)])
def test_axis_has_at_most_ten_ticks(span: float, step: float) -> None:
    assert _nice_step(span) == step
    assert span / _nice_step(span) <= 10


def test_odd_entries_render_without_failing() -> None:
    """Unknown types, a missing or garbled time, lists (multi-valued journal fields)."""
    entries = [
        raw(0, "privilege_residue", user="alice", grant_id="g1"),
        {"JIT_EVENT": "session_opened", "JIT_USER": "bob", "MESSAGE": "no time"},
        {"__REALTIME_TIMESTAMP": "soon", "JIT_EVENT": "login_refused", "JIT_USER": "bob"},
        {"__REALTIME_TIMESTAMP": str(int(T0 * 1e6)), "JIT_USER": ["x", "y"], "MESSAGE": 3},
        raw(5, "grant_activated", grant_id="g2", user="carol", not_after="garbage"),
    ]
    page = render_html(entries, host="h", since=None, until=None)
    assert page.count('<tr id="e') == len(entries)
    assert "privilege_residue" in page and "login_refused" in page
    assert "[&#x27;x&#x27;, &#x27;y&#x27;]" in page


def test_not_after_is_read_as_utc() -> None:
    assert parse_rfc3339("2027-01-15T08:00:00Z") == 1800000000.0
    assert parse_rfc3339("2027-01-15T08:00:00") == 1800000000.0
    assert parse_rfc3339("tomorrow") is None and parse_rfc3339("") is None


def test_a_long_period_stays_light(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense marks are drawn as one; the event table stops at MAX_ROWS and says so; no
    mark or grant links to a row the table does not have."""
    monkeypatch.setattr(audit_html, "MAX_ROWS", 50)
    entries = [raw(0, "grant_activated", grant_id="g1", user="user10", not_after=rfc(9999))]
    entries += [raw(i, "sudo_allowed", grant_id="g1", user="user10", command=f"/bin/c {i}")
                for i in range(1, 1001)]
    entries.append(raw(1, "sudo_denied", user="user2", command="/bin/x"))
    entries.append(raw(9999, "hostd_started"))  # the timeline spans the events (issue 20)
    page = render_html(entries, host="h", since=T0, until=T0 + 10_000)
    assert page.count('<tr id="e') == 50
    assert "The table lists the first 50 of 1,003 events" in page
    ids = set(re.findall(r'<tr id="(e\d+)"', page))
    assert set(re.findall(r'href="#(e\d+)"', page)) <= ids
    marks = page.count('class="mark m-sudo"')
    assert 0 < marks <= 0.1 * 1200 / timeline.BIN + 2  # 1,000 commands in 10 % of it
    assert "more sudo_allowed until" in page
    assert page.index(">user2<") < page.index(">user10<")  # natural order


def test_watching_pausing_and_terminating_show_on_the_session() -> None:
    """Issue 23: who watched a live session, in which mode, its pauses and who ended
    it, on the session's span and in the table."""
    rec = dict(user="alice", recording="0123456789abcdef", session_id="0123456789abcdef")
    entries = [
        raw(0, "recording_started", **rec),
        raw(5, "session_watch_started", approver="bob", mode="moderator", **rec),
        raw(9, "session_paused", reason="the moderator left", **rec),
        raw(12, "session_resumed", reason="a moderator returned", **rec),
        raw(20, "session_terminated", approver="bob", reason="ended by bob: odd", **rec),
        raw(21, "session_watch_ended", approver="bob", mode="moderator",
            reason="the session ended", **rec),
    ]
    page = render_html(entries, host="h", since=None, until=None)
    assert page.count('<tr id="e') == len(entries)
    timeline = page.split('<svg class="tl"')[1].split("</svg>")[0]
    for kind in ("session_watch_started", "session_paused", "session_resumed",
                 "session_terminated", "session_watch_ended"):
        assert f"{kind} at" in timeline
    assert "by: bob" in timeline and "mode: moderator" in timeline
    assert "<b>mode</b> <code>moderator</code>" in page
    assert "recording 0123456789abcdef" in timeline  # one span from start to end
