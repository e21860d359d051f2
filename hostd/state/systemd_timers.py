"""Expiry timers as transient systemd units, over D-Bus (DESIGN.md §8).

For a grant GRANT, `arm` starts `jit-expire-GRANT.timer` with OnCalendar at `exp`
(UTC), AccuracyUSec 100 ms and RemainAfterElapse false, and passes its own transient
`jit-expire-GRANT.service` in StartTransientUnit's aux argument, as systemd-run does:
systemd 252 refuses `Unit=` on a transient timer, so the timer cannot trigger a
shipped unit. The service runs `jit-hostd --expire GRANT`, which asks the daemon
(socket activation starts it when it is down); the daemon re-checks `exp` itself.

Calls go through hostd/state/dbus.py, which bounds each one to 5 s (dbus.CALL_TIMEOUT),
as for logind: a wedged systemd fails the call (the sweep is the backstop), it never
holds the caller.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from hostd.state import dbus
from hostd.state.dbus import Variant

SYSTEMD = "org.freedesktop.systemd1"
SYSTEMD_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
TIMER = "org.freedesktop.systemd1.Timer"
PROPERTIES = "org.freedesktop.DBus.Properties"

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"
UNIT_EXISTS = "org.freedesktop.systemd1.UnitExists"

HOSTD = "/usr/bin/jit-hostd"
PREFIX = "jit-expire-"
GRANT_ID = re.compile(r"[0-9a-f]{12}")
# systemd fires a timer at a per-boot offset inside its accuracy window, so with 1 s
# (the shared contract's figure) lateness was 0.2 s on one boot and 1.2 s on another.
# 100 ms keeps p99 under the 1 s goal on every boot (docs/DESIGN.md §13).
ACCURACY_USEC = 100_000

# How long arm/cancel wait for systemd to finish stopping a unit (stop jobs run
# asynchronously after StopUnit returns), and how often they look.
SETTLE_SECONDS = 3.0
POLL_SECONDS = 0.05


class TimerError(dbus.BusError):
    """systemd refused or failed a call (or gave no answer in time): `name` is the
    D-Bus error name."""


def _check_id(grant_id: str) -> str:
    if not isinstance(grant_id, str) or not GRANT_ID.fullmatch(grant_id):
        raise ValueError(f"not a grant id: {grant_id!r}")
    return grant_id


def timer_unit(grant_id: str) -> str:
    return f"{PREFIX}{_check_id(grant_id)}.timer"


def service_unit(grant_id: str) -> str:
    return f"{PREFIX}{_check_id(grant_id)}.service"


def calendar_spec(when: int) -> str:
    """The UTC calendar spec of an epoch second: '2026-11-29 17:03:05 UTC'."""
    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fire_time(exp: int | float, now: float | None = None) -> int:
    """When to fire: `exp`, or the next whole second when `exp` has already passed
    (a calendar timer for a past time would never elapse)."""
    now = time.time() if now is None else now
    return max(math.ceil(exp), math.floor(now) + 1)


def transient_units(grant_id: str, when: int, hostd: str = HOSTD) -> tuple[list, list]:
    """StartTransientUnit's `properties` (a(sv)) and `aux` (a(sa(sv))) for a grant."""
    _check_id(grant_id)
    # dbus-next 0.2.3 wants D-Bus structs as lists (not tuples) when marshalling.
    properties = [
        ["Description", Variant("s", f"jitaccess: start or expire grant {grant_id}")],
        ["OnCalendar", Variant("s", calendar_spec(when))],
        ["AccuracyUSec", Variant("t", ACCURACY_USEC)],
        ["RemainAfterElapse", Variant("b", False)],
    ]
    service = [
        ["Description", Variant("s", f"jitaccess: start or expire grant {grant_id}")],
        ["Type", Variant("s", "oneshot")],
        ["ExecStart", Variant("a(sasb)", [[hostd, [hostd, "--expire", grant_id], False]])],
    ]
    return properties, [[service_unit(grant_id), service]]


class SystemdTimers:
    """The ExpiryTimers protocol (hostd/state/timers.py) over systemd's D-Bus API."""

    def __init__(self, bus: Any, hostd: str = HOSTD) -> None:
        self.bus = bus
        self.hostd = hostd

    @classmethod
    async def connect(cls) -> SystemdTimers:
        return cls(await dbus.connect_system())

    def close(self) -> None:
        self.bus.disconnect()

    # -- D-Bus plumbing -------------------------------------------------------

    async def _call(
        self,
        member: str,
        signature: str = "",
        body: list | None = None,
        *,
        interface: str = MANAGER,
        path: str = SYSTEMD_PATH,
    ) -> list:
        return await dbus.call(self.bus, SYSTEMD, path, interface, member, signature, body,
                               error=TimerError)

    async def _unit_path(self, name: str) -> str | None:
        try:
            (path,) = await self._call("GetUnit", "s", [name])
        except TimerError as exc:
            if exc.name == NO_SUCH_UNIT:
                return None
            raise
        return path

    async def _prop(self, path: str, interface: str, name: str) -> Any:
        (value,) = await self._call(
            "Get", "ss", [interface, name], interface=PROPERTIES, path=path
        )
        return value.value if isinstance(value, Variant) else value

    async def _ignore_missing(self, member: str, signature: str, body: list) -> None:
        try:
            await self._call(member, signature, body)
        except TimerError as exc:
            if exc.name != NO_SUCH_UNIT:
                raise

    async def _settle(self, name: str) -> None:
        """Wait until a stopped unit is gone (or at least no longer active)."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            path = await self._unit_path(name)
            if path is None:
                return
            state = await self._prop(path, UNIT, "ActiveState")
            if state == "failed":
                await self._ignore_missing("ResetFailedUnit", "s", [name])
                return
            if state == "inactive" or time.monotonic() >= deadline:
                return
            await asyncio.sleep(POLL_SECONDS)

    # -- ExpiryTimers ---------------------------------------------------------

    async def arm(self, grant_id: str, exp: int) -> None:
        timer = timer_unit(grant_id)
        service = service_unit(grant_id)
        when = fire_time(exp)
        path = await self._unit_path(timer)
        if path is not None:
            if await self._prop(path, UNIT, "ActiveState") == "active":
                calendars = await self._prop(path, TIMER, "TimersCalendar")
                if any(c[0] == "OnCalendar" and c[2] == when * 1_000_000 for c in calendars):
                    return  # already armed for this very second: nothing to do
            await self._ignore_missing("StopUnit", "ss", [timer, "replace"])
            await self._settle(timer)
        # A failed expiry service from an earlier firing would block the name.
        await self._ignore_missing("ResetFailedUnit", "s", [service])
        properties, aux = transient_units(grant_id, when, self.hostd)
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            try:
                await self._call(
                    "StartTransientUnit", "ssa(sv)a(sa(sv))", [timer, "fail", properties, aux]
                )
                return
            except TimerError as exc:
                # The old timer or its service (an expiry running right now) is still
                # loaded: wait for it to go, then try again.
                if exc.name != UNIT_EXISTS or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(POLL_SECONDS)

    async def cancel(self, grant_id: str) -> None:
        timer = timer_unit(grant_id)
        await self._ignore_missing("StopUnit", "ss", [timer, "replace"])
        await self._settle(timer)

    async def armed(self) -> set[str]:
        (units,) = await self._call(
            "ListUnitsByPatterns", "asas", [[], [f"{PREFIX}*.timer"]]
        )
        ids = set()
        for unit in units:
            name, active = unit[0], unit[3]
            grant_id = name[len(PREFIX) : -len(".timer")]
            if active == "active" and GRANT_ID.fullmatch(grant_id):
                ids.add(grant_id)
        return ids
