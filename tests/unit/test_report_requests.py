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
