"""The HTML report names requests as `jit requests` does (issue 20, item 8)."""

from __future__ import annotations

import re


def test_the_reports_request_counts_add_up_and_name_cancelled() -> None:
    """A Ctrl-C'd sudo approval or a withdrawn request is `cancelled` in the HTML report
    as in `jit requests`, and the counts cover every request (issue 20, item 8)."""
    from hostd.audit.report import render_html

    def raw(seconds: int, kind: str, **fields: str) -> dict[str, str]:
        return {"__REALTIME_TIMESTAMP": str((1_796_000_000 + seconds) * 1_000_000),
                "JIT_EVENT": kind, "MESSAGE": kind, "SYSLOG_IDENTIFIER": "jit-hostd",
                **{"JIT_" + k.upper(): v for k, v in fields.items()}}

    entries = [raw(0, "request_created", request_id="r1", user="a", role="db"),
               raw(1, "request_expired", request_id="r1", user="a", role="db",
                   decision="cancelled"),
               raw(2, "request_created", request_id="r2", user="a", role="db"),
               raw(3, "request_denied", request_id="r2", user="a", role="db", approver="b"),
               raw(4, "request_created", request_id="r3", user="a", role="db")]
    page = render_html(entries, host="h", since=None, until=None)
    card = re.search(r"requests · ([^<]*)<", page).group(1)
    counts = dict((o, int(n)) for n, o in (p.split(" ", 1) for p in card.split(", ")))
    assert counts == {"approved": 0, "denied": 1, "expired": 0, "cancelled": 1,
                      "break-glass": 0, "pending": 1}
    assert "<td>cancelled</td>" in page


def test_the_timeline_fits_the_events_not_the_asked_period() -> None:
    """`--since -7d` on a host whose events are all from the last hour: the axis spans
    that hour, not seven days (issue 20: everything sat in one pixel column)."""
    from hostd.audit.report import _window

    now = 1_796_000_000.0
    times = [now - 3600, now - 1800, now - 60]
    t0, t1 = _window(times, [], now - 7 * 86400, now, now)
    assert now - 3600 - 3600 * 0.02 <= t0 < now - 3600 and now - 60 < t1 <= now
    assert t1 - t0 < 2 * 3600
    # a live grant keeps the window open to now; without events the period is kept
    assert _window(times, [now], now - 86400, None, now)[1] >= now
    assert _window([], [], now - 86400, now, now) == (now - 86400, now)
