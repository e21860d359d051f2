"""Whether a grant holds now: the one answer every part of hostd asks for.

A grant row (the store's, or `grant.list`'s shape) is live while its state is
`active` and `now` is before its `exp`; an expired grant never counts as held, whether
or not the sweep has reached it yet. A row without `state` is one `Core.list_grants`
gave, which lists active grants only.
"""

from __future__ import annotations

from collections.abc import Mapping


def is_live(grant: Mapping, now: float) -> bool:
    """Active and not yet at `exp` (an int; anything else never holds)."""
    exp = grant.get("exp")
    return (grant.get("state", "active") == "active" and isinstance(exp, int)
            and not isinstance(exp, bool) and exp > now)
