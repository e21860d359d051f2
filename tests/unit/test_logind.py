"""Logind against a stand-in for logind's D-Bus API: every call's body must match its
signature and marshal; the stand-in keeps a small table of sessions. The real logind is
exercised in the booted container (tests/e2e/test_e2e_pam.py)."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os

import pytest
from dbus_next import Message, Variant
from dbus_next.signature import SignatureTree

from hostd.state import logind as lg
from hostd.state.logind import Logind, LogindError


class FakeLogind:
    def __init__(self) -> None:
        self.calls: list[Message] = []
        # id -> properties; pids -> id
        self.sessions: dict[str, dict] = {}
        self.pids: dict[int, str] = {}
        self.fail: str | None = None  # an error name to answer every call with
        self.linger = 0  # GetSession answers this many more times after Terminate

    def add(self, sid: str, uid: int, name: str, tty: str, leader: int) -> None:
        self.sessions[sid] = {"Id": Variant("s", sid), "User": Variant("(uo)", [uid, "/u"]),
                              "Name": Variant("s", name), "TTY": Variant("s", tty),
                              "State": Variant("s", "active"), "Leader": Variant("u", leader),
                              "Remote": Variant("b", False)}
        self.pids[leader] = sid

    @staticmethod
    def path(sid: str) -> str:
        return f"/org/freedesktop/login1/session/_3{sid}"

    def sid_of(self, path: str) -> str | None:
        return next((s for s in self.sessions if self.path(s) == path), None)

    async def call(self, msg: Message) -> Message:
        SignatureTree(msg.signature).verify(msg.body)
        msg.serial = len(self.calls) + 1
        msg._marshall()
        assert msg.destination == lg.LOGIN1
        self.calls.append(msg)
        if self.fail:
            return Message.new_error(msg, self.fail, "refused")
        try:
            sig, body = getattr(self, f"do_{msg.member}")(msg)
        except LogindError as exc:
            return Message.new_error(msg, exc.name, exc.message)
        return Message.new_method_return(msg, sig, body)

    def _gone(self, what: str) -> LogindError:
        return LogindError(lg.NO_SUCH_SESSION, f"No session '{what}' known")

    def do_GetSessionByPID(self, msg):
        (pid,) = msg.body
        if pid not in self.pids:
            raise LogindError(lg.NO_SESSION_FOR_PID, f"PID {pid} does not belong to any session")
        return "o", [self.path(self.pids[pid])]

    def do_GetSession(self, msg):
        (sid,) = msg.body
        if sid not in self.sessions:
            raise self._gone(sid)
        return "o", [self.path(sid)]

    def do_Get(self, msg):
        sid = self.sid_of(msg.path)
        if sid is None:
            raise LogindError("org.freedesktop.DBus.Error.UnknownObject", msg.path)
        iface, prop = msg.body
        assert iface == lg.SESSION
        return "v", [self.sessions[sid][prop]]

    def do_GetAll(self, msg):
        sid = self.sid_of(msg.path)
        if sid is None:
            raise LogindError("org.freedesktop.DBus.Error.UnknownObject", msg.path)
        return "a{sv}", [self.sessions[sid]]

    def do_ListSessions(self, msg):
        return "a(susso)", [[[s, p["User"].value[0], p["Name"].value, "seat0",
                              self.path(s)] for s, p in self.sessions.items()]]

    def do_TerminateSession(self, msg):
        (sid,) = msg.body
        if sid not in self.sessions:
            raise self._gone(sid)
        self.linger = 2
        return "", []

    def do_KillSession(self, msg):
        sid, _who, _signo = msg.body
        if sid not in self.sessions:
            raise self._gone(sid)
        del self.sessions[sid]
        return "", []


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def fake() -> FakeLogind:
    f = FakeLogind()
    f.add("3", 1001, "alice", "tty1", 400)
    f.add("c7", 1001, "alice", "", 500)
    f.add("4", 1002, "bob", "pts/0", 600)
    return f


def test_session_by_pid(fake):
    lo = Logind(fake)
    assert run(lo.session_by_pid(600))["user"] == "bob"
    assert len(fake.calls) == 2
    assert run(lo.session_by_pid(999)) is None
    with pytest.raises(ValueError):
        run(lo.session_by_pid(0))


def test_session_and_user_sessions(fake):
    lo = Logind(fake)
    assert run(lo.session("3")) == {"id": "3", "uid": 1001, "user": "alice", "tty": "tty1",
                                    "state": "active", "leader": 400, "remote": False}
    assert run(lo.session("c7"))["tty"] is None
    assert run(lo.session("99")) is None
    assert sorted(s["id"] for s in run(lo.user_sessions(1001))) == ["3", "c7"]
    assert run(lo.user_sessions(4242)) == []


def test_terminate_kill_wait(fake):
    lo = Logind(fake)
    run(lo.terminate("3"))
    run(lo.terminate("nope"))  # gone is not an error
    assert run(lo.wait_gone("3", 0)) is False
    run(lo.kill("3", "all", 9))
    assert fake.calls[-1].body == ["3", "all", 9]
    run(lo.kill("3"))  # gone
    assert run(lo.wait_gone("3", 1)) is True


def test_bad_ids_never_reach_the_bus(fake):
    lo = Logind(fake)
    for bad in ("", "a/b", "x" * 65, "3\n"):
        with pytest.raises(ValueError):
            run(lo.terminate(bad))
    with pytest.raises(ValueError):
        run(lo.kill("3", "everyone"))
    assert fake.calls == []


def test_other_failures_raise(fake):
    fake.fail = "org.freedesktop.DBus.Error.AccessDenied"
    lo = Logind(fake)
    with pytest.raises(LogindError) as err:
        run(lo.terminate("3"))
    assert err.value.name == "org.freedesktop.DBus.Error.AccessDenied"
    with pytest.raises(LogindError):
        run(lo.session_by_pid(400))


# --- sd-login: the PAM hot path without a bus call -------------------------------------------

class FakeSd:
    """libsystemd's sd_pid_get_session and sd_session_get_uid, called as ctypes calls
    them (the out-parameters by reference), and libc's free."""

    def __init__(self, pids: dict[int, str], uids: dict[str, int], pid_error: int = 0) -> None:
        self.pids, self.uids, self.pid_error = pids, uids, pid_error
        self.buffers: list = []
        self.freed: list[int] = []

    def sd_pid_get_session(self, pid: int, out) -> int:
        if self.pid_error:
            return -self.pid_error
        if pid not in self.pids:
            return -errno.ENODATA
        buf = ctypes.create_string_buffer(self.pids[pid].encode())
        self.buffers.append(buf)
        out._obj.value = ctypes.addressof(buf)
        return 0

    def sd_session_get_uid(self, sid: bytes, out) -> int:
        if sid.decode() not in self.uids:
            return -errno.ENXIO
        out._obj.value = self.uids[sid.decode()]
        return 0

    def free(self, pointer) -> None:
        self.freed.append(pointer.value)


def sd_login(fake_sd: FakeSd) -> lg.SdLogin:
    return lg.SdLogin(fake_sd, fake_sd)


def test_sd_login_answers_without_the_bus(fake):
    sd = FakeSd({400: "3", 700: "c9"}, {"3": 1001})
    lo = Logind(fake, sd_login(sd))
    assert run(lo.session_of_pid(400)) == ("3", 1001)
    assert sd.freed == [ctypes.addressof(sd.buffers[0])]  # the string libsystemd gave back
    assert run(lo.session_of_pid(999)) is None  # in no session: no need to ask logind
    assert fake.calls == []
    # a session libsystemd finds but whose record it cannot read: logind is asked
    fake.add("c9", 1002, "bob", "", 700)
    assert run(lo.session_of_pid(700)) == ("c9", 1002)
    assert [m.member for m in fake.calls] == ["GetSessionByPID", "GetAll"]


def test_sd_login_failure_falls_back_to_the_bus(fake):
    lo = Logind(fake, sd_login(FakeSd({}, {}, pid_error=errno.ESRCH)))
    assert run(lo.session_of_pid(600)) == ("4", 1002)
    assert len(fake.calls) == 2
    for none in (errno.ENODATA, errno.ENXIO):
        assert sd_login(FakeSd({}, {}, pid_error=none)).session_of_pid(600) is None
    with pytest.raises(ValueError):
        run(lo.session_of_pid(0))


def test_sd_login_without_libsystemd_uses_the_bus(fake):
    lo = Logind(fake)
    assert run(lo.session_of_pid(400)) == ("3", 1001)
    assert run(lo.session_of_pid(999)) is None


def test_sd_login_never_returns_an_id_the_bus_would_refuse():
    sd = sd_login(FakeSd({5: "a/b"}, {"a/b": 0}))
    with pytest.raises(LookupError):
        sd.session_of_pid(5)


def test_sd_login_real_libsystemd():
    """libsystemd0 comes with python3-systemd, a Depends: the real library, on this
    process (in no session here, or in one of this uid's) and on a pid that is gone."""
    sd = lg.SdLogin.load()
    assert sd is not None
    mine = sd.session_of_pid(os.getpid())
    assert mine is None or mine[1] == os.getuid()
    with pytest.raises(LookupError):  # gone: ESRCH, and logind is asked (it says none)
        sd.session_of_pid(2**22 + 7)
