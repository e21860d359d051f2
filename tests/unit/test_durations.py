"""durations: the forms administrators write (DESIGN.md §4) and the times the CLI takes."""

from __future__ import annotations

import pytest

from hostd.policy.durations import MAX_SECONDS, format_duration, parse_duration, parse_time, rfc3339

GOOD = [
    ("30s", 30),
    ("15m", 900),
    ("4h", 14400),
    ("1h30m", 5400),
    ("2d", 172800),
    ("1d2h3m4s", 93784),
    ("0h30m", 1800),
    ("90m", 5400),
    ("999999s", 999999),
    ("366d", MAX_SECONDS),
]


@pytest.mark.parametrize("text,seconds", GOOD, ids=[g[0] for g in GOOD])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


BAD = [
    ("empty", "", "required"),
    ("zero", "0s", "more than zero"),
    ("zero-compound", "0h0m", "more than zero"),
    ("unknown-unit", "1x", "use forms like"),
    ("no-unit", "30", "use forms like"),
    ("units-out-of-order", "30m1h", "in order"),
    ("unit-repeated", "1h1h", "in order"),
    ("negative", "-5m", "use forms like"),
    ("fraction", "1.5h", "use forms like"),
    ("space-inside", "1h 30m", "use forms like"),
    ("leading-space", " 4h", "use forms like"),
    ("trailing-newline", "4h\n", "use forms like"),
    ("upper-case-unit", "4H", "use forms like"),
    ("too-many-digits", "1000000s", "use forms like"),
    ("over-a-year", "367d", "more than a year"),
    ("over-a-year-by-a-second", "366d1s", "more than a year"),
    ("non-ascii-digit", "\u0664h", "use forms like"),  # ARABIC-INDIC FOUR: not 4h
]


@pytest.mark.parametrize("text,problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_duration_refuses(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_duration(text)


@pytest.mark.parametrize("value", [None, 30, b"30s"], ids=["none", "int", "bytes"])
def test_parse_duration_refuses_non_strings(value):
    with pytest.raises(ValueError):
        parse_duration(value)


FORMATS = [
    (0, "0s"),
    (12, "12s"),
    (59.9, "59s"),
    (60, "1m 00s"),
    (250, "4m 10s"),
    (3600, "1h 00m"),
    (3720, "1h 02m"),
    (86399, "23h 59m"),
    (90000, "1d 01h"),
    (-5, "0s"),
]


@pytest.mark.parametrize("seconds,text", FORMATS, ids=[str(f[0]) for f in FORMATS])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


NOW = 1_800_000_000.7
T_2026 = 1769860800  # 2026-01-31T12:00:00Z

TIMES = [
    ("rfc3339-z", "2026-01-31T12:00:00Z", T_2026),
    ("rfc3339-lower-z", "2026-01-31t12:00:00z", T_2026),
    ("rfc3339-offset", "2026-01-31T14:00:00+02:00", T_2026),
    ("rfc3339-fraction", "2026-01-31T12:00:00.250Z", T_2026),
    ("naive-is-utc", "2026-01-31T12:00:00", T_2026),
    ("space-separator", "2026-01-31 12:00:00", T_2026),
    ("surrounding-space", "  2026-01-31T12:00:00Z ", T_2026),
    ("epoch", "@1769860800", T_2026),
    ("relative", "+15m", int(NOW) + 900),
    ("relative-compound", "+1h30m", int(NOW) + 5400),
]


@pytest.mark.parametrize("text,epoch", [t[1:] for t in TIMES], ids=[t[0] for t in TIMES])
def test_parse_time(text, epoch):
    assert parse_time(text, NOW) == epoch


BAD_TIMES = ["garbage", "", "@", "@-5", "@12abc", "+", "+0s", "+15", "-15m", "31/01/2026",
             "2026-13-01T00:00:00Z", "tomorrow", "@\u0661\u0662\u0663", "+\u0664h"]


@pytest.mark.parametrize("text", BAD_TIMES, ids=[repr(t) for t in BAD_TIMES])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        parse_time(text, NOW)


@pytest.mark.parametrize("epoch,text", [(0, "1970-01-01T00:00:00Z"),
                                        (T_2026, "2026-01-31T12:00:00Z"),
                                        (T_2026 + 0.9, "2026-01-31T12:00:00Z")],
                         ids=["epoch-zero", "2026", "fraction-truncated"])
def test_rfc3339(epoch, text):
    assert rfc3339(epoch) == text
    assert parse_time(text, NOW) == int(epoch)
