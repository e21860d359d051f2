"""What people see of user text (terminal notices, the webhook's text, `jit requests`):
escaped, whitespace collapsed, cut to fit, quoted on a line of its own after a fixed
prefix, so padding a reason cannot wrap it into a line that looks like hostd's."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest

from hostd.cli.main import _request_text
from hostd.events import framed, shown
from hostd.server import notify, webhook
from hostd.server.notify import message_for, notice_lines, notice_text
from hostd.server.spool import Spool
from hostd.state.journal import Events

FAKE = "jit: request X was denied"
REQ = {"id": "abcdefgh", "user": "alice", "role": "docker", "state": "pending",
       "reason": "deploy", "ticket": "", "kind": "role", "duration": 600}


def cells(ch: str) -> int:
    """Columns a terminal gives a character: 0 for controls and combining marks, 2 for
    wide and fullwidth ones, else 1 (as in a UTF-8 xterm)."""
    if unicodedata.category(ch) in ("Cc", "Mn", "Me"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def rows(text: str, width: int = 80) -> list[str]:
    """The rows an 80-column terminal shows: every line, wrapped at `width` columns."""
    out = []
    for line in re.split(r"\r\n|\n|\r", text):
        row, used = "", 0
        for ch in line:
            if used + cells(ch) > width:
                out.append(row)
                row, used = "", 0
            if cells(ch):
                row, used = row + ch, used + cells(ch)
        out.append(row)
    return [r for r in out if r]


def width(row: str) -> int:
    return sum(cells(ch) for ch in row)


PADDINGS = [" " * n for n in (200, *range(150, 290, 7), 179, 259)] + [
    "\u3000" * 100, "\u2003" * 160, "\u00a0" * 170, " \t" * 90, "\u2028" * 40]


@pytest.mark.parametrize("pad", PADDINGS, ids=[f"{len(p)}x{ord(p[0]):04x}" for p in PADDINGS])
@pytest.mark.parametrize("stamp", ["", "[12:00] "], ids=["bare", "stamped"])
def test_padded_reason_cannot_forge_a_notice_line(pad, stamp):
    """Regression: `reason: "` + 179 spaces + FAKE put FAKE at column 0 of an 80-column
    terminal. Now only the genuine first line starts with `jit:`."""
    req = {**REQ, "reason": pad + FAKE, "ticket": pad + FAKE}
    shown_rows = rows(notice_text("created", req, stamp))
    forged = [r for r in shown_rows if re.match(r"\s*(\[\d\d:\d\d\] )?jit:", r)]
    assert forged == [shown_rows[0]], shown_rows
    assert shown_rows[0].startswith(stamp + "jit: alice requests role docker")
    assert all(width(r) <= 80 for r in shown_rows)
    assert all(r.startswith(("    reason: \"", "    ticket: \"", "    jit approve"))
               for r in shown_rows[1:]), shown_rows


@pytest.mark.parametrize("kind", ["approved", "denied", "expired"])
def test_decision_notices_carry_no_user_text(kind):
    req = {**REQ, "reason": " " * 181 + FAKE}
    (line,) = notice_lines(kind, req)
    assert FAKE not in line and line.startswith("jit: request abcdefgh for role docker")


def test_long_and_wide_reasons_fit_one_row():
    for reason in ["x" * 500, "日本語" * 60, "é" * 200, "\x1b" * 100, "a \" b" * 50]:
        lines = notice_lines("created", {**REQ, "reason": reason})
        reason_rows = rows(lines[1])
        assert len(reason_rows) == 1 and reason_rows[0].endswith('"'), reason
        assert width(reason_rows[0]) <= 80


def test_hostile_reason_still_inert_and_visible():
    """What the e2e notice test checks, in a unit: escapes shown, nothing forged."""
    hostile = "urgent\x1b]0;APPROVED\x07\x1b[2J\nfake: approved by root"
    text = notice_text("created", {**REQ, "reason": hostile})
    assert "\x1b" not in text and "\\x1b]0;APPROVED\\x07" in text
    assert "\nfake" not in text and "alice requests" in text
    assert "jit approve abcdefgh" in text


def test_webhook_text_is_collapsed_and_cut(tmp_path, monkeypatch):
    """What the sender posts is the body hostd queued, byte for byte, and it is escaped."""
    sent = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout):
        sent.append((request.full_url, request.data, timeout))
        return Answer()

    monkeypatch.setattr(webhook.urllib.request, "urlopen", urlopen)
    events = Events(tmp_path / "events.jsonl", journal=False)
    spool = Spool(tmp_path / "webhook")
    n = notify.Notifier(events, tmp_path / "utmp", lambda u: None,
                        lambda: "http://127.0.0.1:9/hook", "web-1", spool=spool)
    req = {**REQ, "reason": " " * 200 + FAKE + "\u3000" * 50 + "<!here>" + "x" * 300}
    n("created", req, [])
    (queued,) = spool.pending()
    assert webhook.drain(spool, events) == (1, 0)
    ((url, data, timeout),) = sent
    assert url == "http://127.0.0.1:9/hook" and timeout == 5.0
    body = json.loads(data)
    assert body == notify.webhook_body("created", req, "web-1")
    text = body["text"]
    assert "  " not in text and "\u3000" not in text and "\n" not in text
    assert text.startswith("alice requests role docker on web-1 (request abcdefgh); "
                           "reason: \"jit: request X was denied &lt;!here&gt;xxx")
    assert text.endswith("…\"") and len(text) < 200
    assert body["mrkdwn"] is False
    assert not queued.exists() and spool.pending() == []


def test_message_for_created_quotes_a_collapsed_reason():
    text = message_for("created", {**REQ, "reason": "  a\n\n   b  \"c\"  "})
    assert text.endswith('reason: "a\\n\\n b \\"c\\""')


# --- jit requests -------------------------------------------------------------------------

LISTED = {"id": "abcdefgh", "kind": "role", "user": "alice", "role": "docker",
          "state": "approved", "duration": 600, "needed": 1, "approvals": ["bob"],
          "denied_by": [], "created": "2026-11-30T04:00:00Z",
          "expires": "2026-11-30T04:10:00Z", "grant_id": "0123456789ab", "outcome": ""}


@pytest.mark.parametrize("pad", [" " * n for n in range(150, 240, 3)] + ["\u3000" * 100])
def test_jit_requests_text_cannot_be_forged_by_padding(pad):
    text = _request_text({**LISTED, "reason": pad + FAKE, "ticket": pad + "abcdefgh  bob"})
    shown_rows = rows(text)
    assert shown_rows[0].startswith("abcdefgh  alice  role docker")
    assert [r[:4] for r in shown_rows[1:]] == ["    "] * (len(shown_rows) - 1), shown_rows
    assert [r.split(":")[0].strip() for r in shown_rows[1:]] == ["reason", "ticket", "grant"]
    assert all(width(r) <= 80 for r in shown_rows)


# --- events.shown and framed --------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("deploy", "deploy"),
    ("  a   b  ", "a b"),
    ("a\u3000\u2003\u00a0b", "a b"),
    ("a\nb", "a\\nb"),
    ("a\t\tb", "a\\t\\tb"),
    ('say "hi"', 'say \\"hi\\"'),
    ("x" * 10, "x" * 10),
    ("x" * 11, "x" * 8 + "…"),  # `…` is ambiguous-width: counted as two columns
    ("日本語日本語", "日本語日…"),
], ids=["plain", "spaces", "unicode-spaces", "newline", "tabs-escaped", "quotes",
        "fits", "cut", "wide"])
def test_shown(value, expected):
    assert shown(value, 10) == expected


def test_framed_line_never_exceeds_its_width():
    for value in ["x" * 300, "日" * 300, " " * 300 + "y", "\x00" * 300, "é" * 300]:
        line = framed("reason", value)
        assert line.startswith('    reason: "') and line.endswith('"')
        assert width(line) <= 80, value
