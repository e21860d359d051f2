"""SystemdTimers against a stand-in for systemd's D-Bus API.

The stand-in checks what systemd would: every call's body matches its signature and
marshals, names are right, and it keeps a small table of loaded units so arm, cancel
and armed can be exercised end to end. The real thing is exercised in a booted
container (tests/e2e).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from dbus_next import Message, Variant
from dbus_next.signature import SignatureTree

from hostd.state import systemd_timers as ts
from hostd.state.systemd_timers import SystemdTimers, TimerError

GID = "0123456789ab"
EXP = int(datetime(2031, 11, 29, 17, 3, 5, tzinfo=UTC).timestamp())


class FakeSystemd:
    """Answers the Manager, Unit, Timer and Properties calls SystemdTimers makes."""

    def __init__(self) -> None:
        self.calls: list[Message] = []
        self.units: dict[str, dict] = {}  # name -> {"state", "calendar": [[s, s, t]]}
        self.fail_start: list[str] = []  # error names to answer StartTransientUnit with

    @staticmethod
    def path(name: str) -> str:
        esc = "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in name)
        return f"/org/freedesktop/systemd1/unit/{esc}"

    def name_of(self, path: str) -> str | None:
        return next((n for n in self.units if self.path(n) == path), None)

    async def call(self, msg: Message) -> Message:
        SignatureTree(msg.signature).verify(msg.body)  # raises on a mismatch
        msg.serial = len(self.calls) + 1  # what the bus would assign
        msg._marshall()  # and it must encode on the wire
        assert msg.destination == "org.freedesktop.systemd1"
        self.calls.append(msg)
        handler = getattr(self, f"do_{msg.member}")
        try:
            sig, body = handler(msg)
        except TimerError as exc:
            return Message.new_error(msg, exc.name, exc.message)
        return Message.new_method_return(msg, sig, body)

    def _missing(self, name: str) -> TimerError:
        return TimerError(ts.NO_SUCH_UNIT, f"Unit {name} not loaded.")

    def do_GetUnit(self, msg):
        (name,) = msg.body
        if name not in self.units:
            raise self._missing(name)
        return "o", [self.path(name)]

    def do_Get(self, msg):
        assert msg.interface == ts.PROPERTIES
        name = self.name_of(msg.path)
        iface, prop = msg.body
        unit = self.units[name]
        if (iface, prop) == (ts.UNIT, "ActiveState"):
            return "v", [Variant("s", unit["state"])]
        if (iface, prop) == (ts.TIMER, "TimersCalendar"):
            return "v", [Variant("a(sst)", unit["calendar"])]
        raise AssertionError(f"unexpected property {iface}.{prop}")

    def do_StopUnit(self, msg):
        name, mode = msg.body
        assert mode == "replace"
        if name not in self.units:
            raise self._missing(name)
        del self.units[name]  # a transient unit unloads once stopped
        return "o", ["/org/freedesktop/systemd1/job/1"]

    def do_ResetFailedUnit(self, msg):
        (name,) = msg.body
        if name not in self.units:
            raise self._missing(name)
        if self.units[name]["state"] == "failed":
            del self.units[name]
        return "", []

    def do_StartTransientUnit(self, msg):
        if self.fail_start:
            raise TimerError(self.fail_start.pop(0), "busy")
        name, _mode, props, aux = msg.body
        for unit in [name] + [a[0] for a in aux]:
            if unit in self.units:
                raise TimerError(ts.UNIT_EXISTS, f"Unit {unit} already exists.")
        spec = dict(props)["OnCalendar"].value
        when = int(datetime.strptime(spec, "%Y-%m-%d %H:%M:%S UTC")
                   .replace(tzinfo=UTC).timestamp())
        self.units[name] = {"state": "active",
                            "calendar": [["OnCalendar", spec, when * 1_000_000]]}
        return "o", ["/org/freedesktop/systemd1/job/2"]

    def do_ListUnitsByPatterns(self, msg):
        states, patterns = msg.body
        assert states == [] and patterns == ["jit-expire-*.timer"]
        rows = [
            [n, "d", "loaded", u["state"], "waiting", "", self.path(n), 0, "", "/"]
            for n, u in self.units.items() if n.endswith(".timer")
        ]
        return "a(ssssssouso)", [rows]

    def members(self) -> list[str]:
        return [m.member for m in self.calls]


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fake():
    return FakeSystemd()


@pytest.fixture
def timers(fake):
    return SystemdTimers(fake)


def start_call(fake: FakeSystemd) -> Message:
    calls = [m for m in fake.calls if m.member == "StartTransientUnit"]
    assert len(calls) == 1
    return calls[0]


def test_arm_sends_exact_transient_timer_and_service(fake, timers):
    run(timers.arm(GID, EXP))
    msg = start_call(fake)
    assert msg.path == "/org/freedesktop/systemd1"
    assert msg.interface == "org.freedesktop.systemd1.Manager"
    assert msg.signature == "ssa(sv)a(sa(sv))"
    name, mode, props, aux = msg.body
    assert name == "jit-expire-0123456789ab.timer"
    assert mode == "fail"
    got = {k: (v.signature, v.value) for k, v in props}
    assert got == {
        "Description": ("s", "jitaccess: start or expire grant 0123456789ab"),
        "OnCalendar": ("s", "2031-11-29 17:03:05 UTC"),
        "AccuracyUSec": ("t", 100_000),
        "RemainAfterElapse": ("b", False),
    }
    assert "Unit" not in got  # systemd 252 refuses Unit= on a transient timer
    assert len(aux) == 1
    svc_name, svc_props = aux[0]
    assert svc_name == "jit-expire-0123456789ab.service"
    svc = {k: (v.signature, v.value) for k, v in svc_props}
    assert svc == {
        "Description": ("s", "jitaccess: start or expire grant 0123456789ab"),
        "Type": ("s", "oneshot"),
        "ExecStart": ("a(sasb)", [["/usr/bin/jit-hostd",
                                   ["/usr/bin/jit-hostd", "--expire", GID], False]]),
    }


def test_armed_lists_active_timers_only(fake, timers):
    run(timers.arm(GID, EXP))
    run(timers.arm("ffffffffffff", EXP + 60))
    fake.units["jit-expire-aaaaaaaaaaaa.timer"] = {"state": "failed", "calendar": []}
    fake.units["jit-expire-bogus.timer"] = {"state": "active", "calendar": []}
    assert run(timers.armed()) == {GID, "ffffffffffff"}


def test_rearm_same_exp_is_a_no_op(fake, timers):
    run(timers.arm(GID, EXP))
    fake.calls.clear()
    run(timers.arm(GID, EXP))
    assert "StopUnit" not in fake.members()
    assert "StartTransientUnit" not in fake.members()


def test_rearm_new_exp_stops_then_starts(fake, timers):
    run(timers.arm(GID, EXP))
    fake.calls.clear()
    run(timers.arm(GID, EXP + 3600))
    members = fake.members()
    assert members.index("StopUnit") < members.index("StartTransientUnit")
    props = dict(start_call(fake).body[2])
    assert props["OnCalendar"].value == "2031-11-29 18:03:05 UTC"


def test_arm_clears_failed_service_of_an_earlier_firing(fake, timers):
    fake.units["jit-expire-0123456789ab.service"] = {"state": "failed", "calendar": []}
    run(timers.arm(GID, EXP))
    assert "jit-expire-0123456789ab.timer" in fake.units


def test_arm_retries_while_old_unit_lingers(fake, timers, monkeypatch):
    monkeypatch.setattr(ts, "POLL_SECONDS", 0)
    fake.fail_start = [ts.UNIT_EXISTS, ts.UNIT_EXISTS]
    run(timers.arm(GID, EXP))
    assert fake.members().count("StartTransientUnit") == 3


def test_arm_raises_other_errors(fake, timers):
    fake.fail_start = ["org.freedesktop.DBus.Error.AccessDenied"]
    with pytest.raises(TimerError) as info:
        run(timers.arm(GID, EXP))
    assert info.value.name == "org.freedesktop.DBus.Error.AccessDenied"


def test_arm_in_the_past_fires_next_second(fake, timers, monkeypatch):
    monkeypatch.setattr(ts.time, "time", lambda: EXP + 100.4)
    run(timers.arm(GID, EXP))
    props = dict(start_call(fake).body[2])
    assert props["OnCalendar"].value == "2031-11-29 17:04:46 UTC"


def test_cancel_stops_and_ignores_missing(fake, timers):
    run(timers.arm(GID, EXP))
    run(timers.cancel(GID))
    assert run(timers.armed()) == set()
    run(timers.cancel(GID))  # NoSuchUnit: fine
    stops = [m for m in fake.calls if m.member == "StopUnit"]
    assert [m.body for m in stops] == [["jit-expire-0123456789ab.timer", "replace"]] * 2
    assert all(m.signature == "ss" for m in stops)


@pytest.mark.parametrize("bad", ["", "0123456789AB", "0123456789a", "../../x", "a b",
                                 "0123456789abc", 123])
def test_grant_id_must_be_twelve_lowercase_hex(timers, bad):
    with pytest.raises(ValueError):
        run(timers.arm(bad, EXP))
    with pytest.raises(ValueError):
        run(timers.cancel(bad))


def test_calendar_spec_is_utc():
    assert ts.calendar_spec(0) == "1970-01-01 00:00:00 UTC"
    assert ts.calendar_spec(EXP) == "2031-11-29 17:03:05 UTC"


def test_a_wedged_systemd_fails_the_call_instead_of_holding_it(monkeypatch):
    """Every systemd call is bounded like logind's (hostd/state/dbus.py): a bus that
    never answers gives a named Timeout error, which the server turns into
    `timer_failed` (the sweep is then the backstop)."""
    from hostd.state import dbus

    class Wedged:
        async def call(self, msg):
            await asyncio.Event().wait()  # never answers

    monkeypatch.setattr(dbus, "CALL_TIMEOUT", 0.01)
    with pytest.raises(TimerError) as info:
        run(SystemdTimers(Wedged()).arm(GID, EXP))
    assert info.value.name == "org.freedesktop.DBus.Error.Timeout"
