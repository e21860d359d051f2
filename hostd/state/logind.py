"""systemd-logind over D-Bus: find the session a PAM process runs in, list a user's
sessions, and end them (DESIGN.md §7, §13).

hostd gets its bus in `service.build_server`: `Logind.connect()` opens a system-bus
connection of its own (the timers keep theirs, so neither depends on the other), given
to the PAM ops and the session ending; it is None in a sandbox (no logind there) or
when the bus cannot be reached, and every caller must cope with None.

Calls go through hostd/state/dbus.py, shared with the systemd timers: each is bounded
to 5 s (dbus.CALL_TIMEOUT), so a wedged logind never holds hostd's loop caller.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import re
import time
from typing import Any

from hostd.state import dbus

LOGIN1 = "org.freedesktop.login1"
LOGIN1_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
PROPERTIES = "org.freedesktop.DBus.Properties"

# Error names that mean "no such session (any more)": not failures for our callers.
NO_SUCH_SESSION = "org.freedesktop.login1.NoSuchSession"
NO_SESSION_FOR_PID = "org.freedesktop.login1.NoSessionForPID"
GONE = frozenset({
    NO_SUCH_SESSION,
    NO_SESSION_FOR_PID,
    "org.freedesktop.DBus.Error.UnknownObject",
    "org.freedesktop.DBus.Error.UnknownMethod",  # the object went between two calls
})

# logind session ids are short ("3", "c12"); anything else never reaches the bus.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
KILL_WHO = ("all", "leader")
POLL_SECONDS = 0.05


class SdLogin:
    """sd-login(3) from libsystemd: the session of a pid and its uid without a bus
    call. libsystemd reads what logind reads for GetSessionByPID (the pid's cgroup:
    its session-N.scope) and the session's record under /run/systemd/sessions, so the
    answer is logind's own, in a few µs instead of two D-Bus round trips (~1 ms of
    hostd's CPU on the PAM hot path). None where libsystemd cannot be loaded."""

    NONE = (errno.ENODATA, errno.ENXIO)  # sd_pid_get_session: the pid is in no session

    def __init__(self, lib: Any, libc: Any) -> None:
        self.lib, self.libc = lib, libc

    @classmethod
    def load(cls) -> SdLogin | None:
        try:
            lib = ctypes.CDLL("libsystemd.so.0")
            libc = ctypes.CDLL(None)
        except OSError:
            return None
        lib.sd_pid_get_session.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)]
        lib.sd_pid_get_session.restype = ctypes.c_int
        lib.sd_session_get_uid.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint)]
        lib.sd_session_get_uid.restype = ctypes.c_int
        libc.free.argtypes = [ctypes.c_void_p]
        libc.free.restype = None
        return cls(lib, libc)

    def session_of_pid(self, pid: int) -> tuple[str, int] | None:
        """(session id, its uid); None when the pid is in no session. LookupError when
        libsystemd cannot tell (the caller asks logind over the bus instead)."""
        out = ctypes.c_void_p()
        r = self.lib.sd_pid_get_session(pid, ctypes.byref(out))
        if r < 0:
            if -r in self.NONE:
                return None
            raise LookupError(f"sd_pid_get_session({pid}): {errno.errorcode.get(-r, -r)}")
        try:
            raw = ctypes.string_at(out.value)
        finally:
            self.libc.free(out)
        uid = ctypes.c_uint()
        r = self.lib.sd_session_get_uid(raw, ctypes.byref(uid))
        sid = raw.decode("ascii", "replace")
        if r < 0 or not SESSION_ID.fullmatch(sid):
            raise LookupError(f"sd_session_get_uid({sid!r}): {errno.errorcode.get(-r, -r)}")
        return sid, uid.value


class LogindError(dbus.BusError):
    """logind refused or failed a call (or gave no answer in time): `name` is the
    D-Bus error name."""


def _check_sid(sid: str) -> str:
    if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
        raise ValueError(f"not a logind session id: {sid!r}")
    return sid


_plain = dbus.plain


def session_dict(props: dict) -> dict:
    """The session as callers see it, from a Session GetAll answer."""
    p = {k: _plain(v) for k, v in props.items()}
    user = p.get("User") or [None, None]
    return {"id": p.get("Id"), "uid": user[0], "user": p.get("Name"),
            "tty": p.get("TTY") or None, "state": p.get("State"),
            "leader": p.get("Leader"), "remote": bool(p.get("Remote"))}


class Logind:
    """The few logind calls hostd needs, on a connected system MessageBus."""

    def __init__(self, bus: Any, sd: SdLogin | None = None) -> None:
        """`sd`: libsystemd's sd-login, for the PAM hot path (None: the bus only)."""
        self.bus, self.sd = bus, sd

    @classmethod
    async def connect(cls) -> Logind:
        return cls(await dbus.connect_system(), SdLogin.load())

    def close(self) -> None:
        self.bus.disconnect()

    async def _call(self, member: str, signature: str = "", body: list | None = None, *,
                    interface: str = MANAGER, path: str = LOGIN1_PATH) -> list:
        return await dbus.call(self.bus, LOGIN1, path, interface, member, signature, body,
                               error=LogindError)

    async def _unless_gone(self, member: str, signature: str, body: list,
                           **where: str) -> list | None:
        """_call, with None for the errors that mean the session or pid is gone."""
        try:
            return await self._call(member, signature, body, **where)
        except LogindError as exc:
            if exc.name in GONE:
                return None
            raise

    async def _session_path(self, sid: str) -> str | None:
        reply = await self._unless_gone("GetSession", "s", [_check_sid(sid)])
        return None if reply is None else reply[0]

    async def _props(self, path: str) -> dict | None:
        reply = await self._unless_gone("GetAll", "s", [SESSION], interface=PROPERTIES,
                                        path=path)
        return None if reply is None else session_dict(reply[0])

    async def _path_of_pid(self, pid: int) -> str | None:
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"not a pid: {pid!r}")
        reply = await self._unless_gone("GetSessionByPID", "u", [pid])
        return None if reply is None else reply[0]

    async def session_by_pid(self, pid: int) -> dict | None:
        """The session `pid` belongs to, with its properties, in two calls; None when
        it is in none."""
        path = await self._path_of_pid(pid)
        return None if path is None else await self._props(path)

    async def session_of_pid(self, pid: int) -> tuple[str, int] | None:
        """(id, uid) of the session `pid` belongs to, None when it is in none: the PAM
        hot path. From sd-login when it can tell, else over the bus."""
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"not a pid: {pid!r}")
        if self.sd is not None:
            try:
                return self.sd.session_of_pid(pid)
            except LookupError:
                pass  # logind may still know (a record not written yet): ask it
        info = await self.session_by_pid(pid)
        return None if info is None else (info["id"], info["uid"])

    async def session(self, sid: str) -> dict | None:
        """The session's id, uid, user, tty, state, leader, remote; None if gone."""
        path = await self._session_path(sid)
        return None if path is None else await self._props(path)

    async def user_sessions(self, uid: int) -> list[dict]:
        """Every session of `uid` that still exists (ListSessions, then each one)."""
        (rows,) = await self._call("ListSessions")
        out = []
        for row in rows:  # (id, uid, user, seat, path)
            if row[1] != uid:
                continue
            info = await self._props(row[4])
            if info is not None:
                out.append(info)
        return out

    async def terminate(self, sid: str) -> None:
        """TerminateSession; a session already gone is not an error."""
        try:
            await self._call("TerminateSession", "s", [_check_sid(sid)])
        except LogindError as exc:
            if exc.name not in GONE:
                raise

    async def kill(self, sid: str, who: str = "all", signo: int = 9) -> None:
        """KillSession(sid, who, signo); a session already gone is not an error."""
        if who not in KILL_WHO:
            raise ValueError(f"who must be one of {', '.join(KILL_WHO)}")
        try:
            await self._call("KillSession", "ssi", [_check_sid(sid), who, int(signo)])
        except LogindError as exc:
            if exc.name not in GONE:
                raise

    async def wait_gone(self, sid: str, timeout: float) -> bool:
        """True once logind no longer knows the session, False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            if await self._session_path(sid) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL_SECONDS)
