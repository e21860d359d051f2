"""What every op handler shares: who is asking (`Caller`), and the op table.

Handlers come in families (grants, access, sudo, pam, record), each an object built
with what it needs as constructor arguments. A family names its handlers
`op_<name>` after protocol.OPS (`grant.activate` -> `op_grant_activate`); `register`
puts them into the table dispatch uses, op name -> bound coroutine, and refuses an op
that is unknown or registered twice, so no handler can silently shadow another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from hostd.protocol import OPS

Handler = Callable[..., Awaitable[dict]]


@dataclass(frozen=True)
class Caller:
    """The process at the other end of the connection, from SO_PEERCRED."""

    uid: int
    pid: int
    gid: int


def register(table: dict[str, Handler], family: object) -> dict[str, Handler]:
    """Add the family's `op_*` handlers to `table` (and return it)."""
    by_handler = {op.handler: name for name, op in OPS.items()}
    for attr in dir(type(family)):
        if not attr.startswith("op_"):
            continue
        name = by_handler.get(attr)
        if name is None:
            raise ValueError(f"{type(family).__name__}.{attr} answers no op of protocol.OPS")
        if name in table:
            raise ValueError(f"{name} is registered twice "
                             f"({type(family).__name__}.{attr})")
        table[name] = getattr(family, attr)
    return table
