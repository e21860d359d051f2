"""One way to call a system service over D-Bus: every call bounded in time.

systemd timers (hostd/state/systemd_timers.py) and logind (hostd/state/logind.py) are
called from hostd's event loop. A wedged systemd or logind must never hold a caller
forever, so every call here gives up after CALL_TIMEOUT seconds with a named D-Bus
error (org.freedesktop.DBus.Error.Timeout), which callers handle like any refusal.

Only the low-level `Message`/`bus.call` API is used, which dbus-next 0.2.3 (Debian 12)
and its maintained fork dbus-fast share.
"""

from __future__ import annotations

import asyncio
from typing import Any

try:
    from dbus_next import BusType, Message, MessageType, Variant
    from dbus_next.aio import MessageBus
except ImportError:  # pragma: no cover - dbus-fast, the API-compatible fork
    from dbus_fast import BusType, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus

__all__ = ["CALL_TIMEOUT", "BusError", "Message", "Variant", "call", "connect_system",
           "plain"]

CALL_TIMEOUT = 5.0  # seconds: a wedged service must not hold hostd's loop caller forever
TIMEOUT = "org.freedesktop.DBus.Error.Timeout"
NO_REPLY = "org.freedesktop.DBus.Error.NoReply"


class BusError(RuntimeError):
    """The service refused or failed a call: `name` is the D-Bus error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message


async def connect_system() -> Any:
    """A system-bus connection of the caller's own."""
    return await MessageBus(bus_type=BusType.SYSTEM).connect()


async def call(bus: Any, destination: str, path: str, interface: str, member: str,
               signature: str = "", body: list | None = None, *,
               error: type[BusError] = BusError, timeout: float | None = None) -> list:
    """The reply's body; `error` (a BusError subclass) for an error reply, no reply, or
    no answer within `timeout` seconds (CALL_TIMEOUT by default)."""
    timeout = CALL_TIMEOUT if timeout is None else timeout
    msg = Message(destination=destination, path=path, interface=interface, member=member,
                  signature=signature, body=body or [])
    try:
        reply = await asyncio.wait_for(bus.call(msg), timeout)
    except TimeoutError:
        raise error(TIMEOUT, f"{member}: no answer in {timeout:g} s") from None
    if reply is None:
        raise error(NO_REPLY, f"{member}: no reply")
    if reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply.body else ""
        raise error(reply.error_name or "error", str(detail))
    return list(reply.body)


def plain(value: Any) -> Any:
    """A Variant's value; anything else as it is."""
    return value.value if isinstance(value, Variant) else value
