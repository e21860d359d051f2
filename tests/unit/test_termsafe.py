"""hostd/record/termsafe.py: replayed output keeps what draws and loses what makes the viewer's
terminal answer or act, however the sequences are split between events."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostd.cli import recordings as cli_recordings
from hostd.record.termsafe import CAP, TerminalFilter

KEPT = ["plain text\r\n", "\x1b[31mred\x1b[0m", "\x1b[2J\x1b[H", "\x1b[?1049h", "\x1b[1;5r",
        "\x1b]0;my title\x07", "\x1b]2;title\x1b\\", "\x1b(B", "\x1b7\x1b8", "é€𝄞\t"]
DROPPED = ["\x1b]52;c;aGVsbG8=\x07", "\x1b]52;c;aGVsbG8=\x1b\\", "\x1b]10;?\x07",
           "\x1b]4;1;rgb:ff/00/00\x07", "\x1b[6n", "\x1b[c", "\x1b[>0c", "\x1b[21t",
           "\x1b[14t", "\x1b[8;100;100t", "\x1b[?2026$p", "\x1b[x", "\x1bP$qm\x1b\\",
           "\x1bP+q544e\x1b\\", "\x1b_apc\x1b\\", "\x1b^pm\x1b\\", "\x05"]


def filtered(parts: list[str]) -> str:
    f = TerminalFilter()
    return "".join(f.feed(p) for p in parts) + f.flush()


@pytest.mark.parametrize("seq", KEPT)
def test_drawing_sequences_pass(seq):
    assert filtered(["a", seq, "b"]) == "a" + seq + "b"


@pytest.mark.parametrize("seq", DROPPED)
def test_answering_and_acting_sequences_are_dropped(seq):
    assert filtered(["a", seq, "b"]) == "ab"


@pytest.mark.parametrize("seq", DROPPED + KEPT)
def test_every_split_point_gives_the_same_result(seq):
    text = "x" + seq + "y"
    whole = filtered([text])
    for i in range(len(text) + 1):
        assert filtered([text[:i], text[i:]]) == whole, i
    assert filtered(list(text)) == whole


def test_a_long_clipboard_write_is_dropped_across_many_events():
    payload = "QUJD" * (3 * CAP)
    text = "before \x1b]52;c;" + payload + "\x07 after"
    assert filtered([text]) == "before  after"
    assert filtered([text[i:i + 1000] for i in range(0, len(text), 1000)]) == "before  after"


def test_a_string_cancelled_by_another_escape_is_dropped_and_the_next_kept():
    assert filtered(["\x1b]52;c;abc\x1b[31mred"]) == "\x1b[31mred"


def test_an_unfinished_sequence_at_the_end_is_dropped():
    assert filtered(["ok", "\x1b]52;c;abc"]) == "ok"
    assert filtered(["ok\x1b["]) == "ok"


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.sampled_from(KEPT + DROPPED + ["\x1b", "\x1b]", "x", "\x07", "\\"]),
                max_size=20),
       st.lists(st.integers(min_value=0), max_size=8))
def test_chunked_equals_whole(parts, cuts):
    text = "".join(parts)
    cuts = sorted({c % (len(text) + 1) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert filtered(pieces) == filtered([text])


def test_replay_filters_what_it_plays():
    out = io.BytesIO()
    cli_recordings.play(iter([(0.0, "o", "a\x1b]52;c;"), (0.0, "o", "eA==\x07b\x1b[6n")]),
                        out, speed=1000, sleep=lambda s: None)
    assert out.getvalue() == b"ab"
