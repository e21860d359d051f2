"""Durations and sizes as administrators write them: `30s`, `15m`, `4h`, `1h30m`, `2d`;
`512M`, `10G`."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]{1,6})([dhms])")
MAX_SECONDS = 366 * 86400


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError names what is wrong. Units must descend (1h30m, not 30m1h)."""
    if not isinstance(text, str) or not text:
        raise ValueError("a duration like 30s, 15m, 4h or 1h30m is required")
    pos, total, last_rank = 0, 0, -1
    order = "dhms"
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            raise ValueError(f"bad duration {text!r}: use forms like 30s, 15m, 4h, 1h30m")
        rank = order.index(m.group(2))
        if rank <= last_rank:
            raise ValueError(f"bad duration {text!r}: units must be in order d, h, m, s")
        last_rank = rank
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if total <= 0:
        raise ValueError(f"bad duration {text!r}: must be more than zero")
    if total > MAX_SECONDS:
        raise ValueError(f"bad duration {text!r}: more than a year")
    return total


def format_duration(seconds: float) -> str:
    """Short human form of a span: `1h 02m`, `4m 10s`, `12s`; negatives show as `0s`."""
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h:02d}h"
    if h:
        return f"{h}h {m:02d}m"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def rfc3339(epoch: float) -> str:
    """UTC RFC 3339 with a Z, as the --json outputs promise."""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, now: float) -> int:
    """An absolute time for --until/--not-before: RFC 3339 / ISO 8601 (naive means UTC),
    `@EPOCH`, or `+DURATION` from now."""
    text = text.strip()
    if text.startswith("@") and text[1:].isascii() and text[1:].isdigit():
        return int(text[1:])
    if text.startswith("+"):
        return int(now) + parse_duration(text[1:])
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"bad time {text!r}: use RFC 3339 (2026-01-31T12:00:00Z), @EPOCH or +DURATION"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


_SIZE = re.compile(r"([0-9]{1,15})([KMGT]?)")
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """`512M`, `10G`, `1T` or a number of bytes (binary units); ValueError otherwise."""
    m = _SIZE.fullmatch(text.strip().upper()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"bad size {text!r}: use forms like 500M, 10G or a number of bytes")
    value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value <= 0:
        raise ValueError(f"bad size {text!r}: must be more than zero")
    return value


def compact_duration(seconds: int) -> str:
    """A span as an admin writes it in jit.toml: `2h`, `1h30m`, `45s` (refusal messages
    quote limits this way, so the number can be pasted back into the policy)."""
    s = max(0, int(seconds))
    parts = []
    for unit, size in _UNITS.items():
        n, s = divmod(s, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
