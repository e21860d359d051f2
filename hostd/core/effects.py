"""What must follow a decision, said by the core and carried out by the server.

Core and Requests make decisions and change state (store, group files) in hostd's one
ordered worker; what has to happen afterwards on the event loop or elsewhere (timers
over D-Bus, notices on terminals and the webhook) they state as effects. The server
drains them after each call and carries them out, so it never infers what to do from a
call's result.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ArmTimer:
    """Make sure the grant's expiry is asked for at `exp` (for a scheduled grant that
    is still pending: its start, without expiry warnings)."""

    grant_id: str
    exp: int
    warn: bool = True


@dataclass(frozen=True)
class CancelTimer:
    """The grant ended another way: its timer has nothing left to do."""

    grant_id: str


@dataclass(frozen=True)
class Notify:
    """Tell people about a request: approvers when it is made, the requester after."""

    kind: str  # created, approved, denied, expired
    request: dict
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class EndSessions:
    """A grant ended: end what it opened (`mode` "terminate-sessions"), or report the
    processes that still hold its groups ("keep-sessions"). `gids` are the groups this
    grant took away (not kept for a standing membership or another live grant), as
    (name, gid); `reason` is "expired", "revoked" or "policy changed"."""

    grant_id: str
    uid: int
    user: str
    role: str
    gids: tuple[tuple[str, int], ...]
    mode: str
    reason: str
    by: str = "hostd"


Effect = ArmTimer | CancelTimer | Notify | EndSessions


class Outbox:
    """Effects collected during one call; the server takes them when the call returns."""

    def __init__(self) -> None:
        self._items: list[Effect] = []

    def add(self, effect: Effect) -> None:
        self._items.append(effect)

    def take(self) -> list[Effect]:
        items, self._items = self._items, []
        return items
