"""What every part of the audit page shares: how a grant's ending is labelled and
coloured, which event types are refusals, sessions or bars (read from the event schema,
hostd/events.py), and the one way event data enters the page (`esc`: events.escape's
`logged` form, then HTML-escaped)."""

from __future__ import annotations

import functools
import html
from datetime import UTC, datetime

from hostd.events import EVENT_TYPES, escape

# how a grant ended -> (legend label, CSS class)
ENDINGS: dict[str, tuple[str, str]] = {
    "expired": ("expired", "g-expired"),
    "revoked": ("revoked", "g-revoked"),
    "failed": ("failed", "g-failed"),
    "live": ("still live", "g-live"),
    "open": ("end not seen", "g-open"),
}
# drawn as refusal marks; `login_denied` is the older name of login_refused (docs/AUDIT.md)
REFUSALS = (*(n for n, k in EVENT_TYPES.items() if k.refusal), "login_denied")
SESSION_EVENTS = tuple(n for n, k in EVENT_TYPES.items() if k.family == "session")
# drawn as grant bars and request marks, not as marks of their own
AS_BARS = frozenset(n for n, k in EVENT_TYPES.items()
                    if k.family in ("grant", "request") and not k.refusal)


def visible(value: object) -> str:
    r"""Control, format, separator and unassigned characters as visible escapes
    (events.escape, `logged`): a value hostd logged is already escaped and passes
    unchanged; one from elsewhere cannot hide text (bidi overrides) or break the
    document (NUL)."""
    return escape(value, logged=True)


def lines(parts: list[str]) -> str:
    """Hover text: each line escaped on its own, so the line breaks stay line breaks."""
    return "\n".join(esc(part) for part in parts)


def esc(value: object) -> str:
    """The only way event data enters the page: made visible, then HTML-escaped."""
    if value is None or value == "":
        return ""
    return html.escape(visible(value), quote=True)


def code(value: object) -> str:
    """A value set in monospace (ids, commands); nothing at all when empty."""
    return f"<code>{esc(value)}</code>" if value else ""


def clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit - 1] + "…"


def stamp(t: float | None) -> str:
    return "?" if t is None else _stamp(int(t))


@functools.lru_cache(maxsize=4096)
def _stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


