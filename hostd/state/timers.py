"""Expiry timers behind one interface.

Production arms a transient systemd timer per grant (timers_systemd.py); under --root,
in-process asyncio timers. Either way the timer only *asks* for expiry: the core
re-checks `exp` against its clock, so an early or duplicate firing cannot revoke a live
grant, and a missed one is caught by the periodic sweep and the reconcile at start.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol


class ExpiryTimers(Protocol):
    async def arm(self, grant_id: str, exp: int) -> None:
        """Make sure `expire(grant_id)` is asked for at `exp` (UTC epoch seconds)."""

    async def cancel(self, grant_id: str) -> None:
        """Forget the timer of a grant that ended another way (revocation)."""

    async def armed(self) -> set[str]:
        """Grant ids that have a timer now (reconcile re-arms only the missing ones)."""


class InProcessTimers:
    """asyncio timers for --root sandboxes; they die with the daemon, reconcile re-arms."""

    def __init__(self, on_due: Callable[[str], None]) -> None:
        self._on_due = on_due
        self._handles: dict[str, asyncio.TimerHandle] = {}

    async def arm(self, grant_id: str, exp: int) -> None:
        await self.cancel(grant_id)
        loop = asyncio.get_running_loop()
        delay = max(0.0, exp - time.time())
        self._handles[grant_id] = loop.call_later(delay, self._fire, grant_id)

    def _fire(self, grant_id: str) -> None:
        self._handles.pop(grant_id, None)
        self._on_due(grant_id)

    async def cancel(self, grant_id: str) -> None:
        handle = self._handles.pop(grant_id, None)
        if handle is not None:
            handle.cancel()

    async def armed(self) -> set[str]:
        return set(self._handles)
