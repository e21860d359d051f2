"""The socket server: adapts lines on /run/jit/hostd.sock to Core and Requests calls.

Identity comes from SO_PEERCRED only. The op table (protocol.OPS) says what each op
takes, who may call it and its kind; this module checks that once, centrally, then
calls the op's handler `op_<name>`.

Nothing slow runs on the event loop. Every call that changes state (gpasswd, SQLite
writes) runs in one ordered worker thread, so changes to the host never race and never
delay other clients; status and grant listings read a separate read-only SQLite
connection on the loop. What a change says must follow (timers, notices) comes back as
effects, carried out here: timers on the loop (D-Bus), notices in a side thread.

Connections are bounded per kind: a quick call waits at most IDLE_TIMEOUT for its next
request and counts against MAX_QUICK_PER_UID; a connection in a `wait` or `stream` op
counts against the long-lived caps instead and has no idle timeout. Root is never
refused for a per-uid cap, and part of the global limit is kept for it, so expiry
(`jit-hostd --expire`, as root) always gets through.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from hostd import __version__
from hostd.core.effects import ArmTimer, CancelTimer, Effect, EndSessions, Notify
from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.core.sudo import Sudo
from hostd.errors import JitError
from hostd.protocol import (
    CALL,
    MAX_LINE,
    OPS,
    ROOT,
    STREAM,
    Op,
    decode,
    encode,
    parse_line,
)
from hostd.server.pam import PamOps
from hostd.server.record import RecordOps
from hostd.server.sessions import SessionEnding
from hostd.server.sudo import SudoOps
from hostd.state.store import Store
from hostd.state.timers import ExpiryTimers

log = logging.getLogger("jit-hostd")

IDLE_TIMEOUT = 10.0
MAX_QUICK_PER_UID = 16  # quick calls a non-root uid may have open
MAX_QUICK = 128  # quick calls of all non-root uids together
MAX_LONG_PER_UID = 32  # waits and streams (approvals, recordings) of one non-root uid
MAX_LONG = 256  # ... of all non-root uids together
MAX_CONNECTIONS = 512  # everything, root included: the rest above is kept for root
MAX_WAIT = 300  # an `access.wait` answers within this many seconds
NOTICE_WAIT = 2.0  # access.request waits this long to say how many terminals it reached


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel. uid_t and gid_t
    are unsigned: a uid over 2**31 is a real user, not a negative number."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    return struct.unpack("iII", raw)


@dataclass
class Caller:
    pid: int
    uid: int
    long: bool = False  # in a wait or stream op: counted against the long-lived caps


# The caller of the request being handled, for the few ops that need its pid (the PAM
# ops find the login session from it). Set by dispatch; each connection is a task of its
# own, so concurrent requests never see each other's caller.
CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("jit_caller")


class Channel:
    """A stream op's two-way frames on its connection (one JSON object per line)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def recv(self) -> dict | None:
        """The client's next frame, or None when it closed; bad_request on garbage."""
        try:
            line = await self.reader.readline()
        except (asyncio.LimitOverrunError, ValueError):
            raise JitError("too_large", f"frame larger than {MAX_LINE // 1024} KiB") from None
        if not line:
            return None
        frame = parse_line(line)
        if not isinstance(frame, dict):
            raise JitError("bad_request", "a frame is a JSON object")
        return frame

    async def send(self, frame: dict) -> bool:
        return await _send(self.writer, frame)


class Limits:
    """Connection counts by uid and kind; `admit` and `to_long` say whether one more fits."""

    def __init__(self) -> None:
        self.quick: Counter[int] = Counter()
        self.long: Counter[int] = Counter()

    def _total(self, counts: Counter[int]) -> int:
        return sum(n for uid, n in counts.items() if uid != 0)

    def admit(self, uid: int) -> bool:
        if sum(self.quick.values()) + sum(self.long.values()) >= MAX_CONNECTIONS:
            return False
        if uid != 0 and (self.quick[uid] >= MAX_QUICK_PER_UID
                         or self._total(self.quick) >= MAX_QUICK):
            return False
        self.quick[uid] += 1
        return True

    def to_long(self, uid: int) -> bool:
        if uid != 0 and (self.long[uid] >= MAX_LONG_PER_UID or self._total(self.long) >= MAX_LONG):
            return False
        self._drop(self.quick, uid)
        self.long[uid] += 1
        return True

    def to_quick(self, uid: int) -> None:
        self._drop(self.long, uid)
        self.quick[uid] += 1

    def release(self, uid: int, long: bool) -> None:
        self._drop(self.long if long else self.quick, uid)

    @staticmethod
    def _drop(counts: Counter[int], uid: int) -> None:
        counts[uid] -= 1
        if counts[uid] <= 0:
            del counts[uid]


async def _send(writer: asyncio.StreamWriter, obj: dict) -> bool:
    try:
        writer.write(encode(obj))
        await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
        return True
    except (TimeoutError, ConnectionError, OSError):
        return False


class Server(SudoOps, PamOps, SessionEnding, RecordOps):
    def __init__(self, core: Core, timers: ExpiryTimers, config_error: str = "",
                 requests: Requests | None = None,
                 notifier: Callable[[str, dict, list[str]], object] | None = None,
                 reader: Store | None = None) -> None:
        self.core = core
        self.timers = timers
        self.requests = requests or Requests(core, None)
        self.notifier = notifier
        self.reader = reader or core.store
        self.config_error = config_error
        self.limits = Limits()
        self.started = core.now()
        # One ordered worker for every change: gpasswd and SQLite writes never race,
        # and never hold up the loop. Notices go to a side thread of their own.
        self.changes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-changes")
        self.side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-notices")
        # PAM authentication may sleep seconds (pam_faildelay) on a wrong password
        self.auth = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jit-auth")
        self.sudo = Sudo(core, self.requests, reader=self.reader)
        self.init_recording()  # recordings are written in a pool of their own
        self._changed = asyncio.Event()
        self.logind = None  # hostd.state.logind.Logind, set by service.serve; None: no logind
        self.terminals = None  # hostd.server.ttys.Terminals, set by service.serve
        self.notices: dict[str, asyncio.Future] = {}  # request id -> terminals reached
        self.init_ending()

    def close(self) -> None:
        self.changes.shutdown(wait=True)
        self.close_ending()
        self.side.shutdown(wait=False, cancel_futures=True)
        self.auth.shutdown(wait=False, cancel_futures=True)
        self.close_recordings()

    # connection handling ----------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, _ = peer_credentials(writer.get_extra_info("socket"))
        except OSError:
            writer.close()
            return
        if not self.limits.admit(uid):
            await _send(writer, JitError("busy", "hostd is busy; try again").to_wire())
            writer.close()
            return
        caller = Caller(pid, uid)
        try:
            await self._serve(caller, reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self.limits.release(uid, caller.long)
            writer.close()

    async def _serve(self, caller: Caller, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Requests in turn until the client closes, idles out, or a stream ends."""
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            except TimeoutError:
                return
            except (asyncio.LimitOverrunError, ValueError):
                await _send(writer, JitError(
                    "too_large", f"request larger than {MAX_LINE // 1024} KiB").to_wire())
                return
            if not line:
                return
            if not line.endswith(b"\n"):
                await _send(writer, JitError("bad_request",
                                             "request not ended by a newline").to_wire())
                return
            op, answer = await self.dispatch(line, caller, Channel(reader, writer))
            if not await _send(writer, answer) or (op is not None and op.kind == STREAM):
                return

    async def dispatch(self, line: bytes, caller: Caller,
                       channel: Channel | None = None) -> tuple[Op | None, dict]:
        """Decode, check centrally, call; every failure becomes a named error answer."""
        op = None
        CALLER.set(caller)
        try:
            name, args = decode(line)
            op = OPS[name]
            if op.access == ROOT and caller.uid != 0:
                raise JitError("permission_denied", f"only root may ask for {name}")
            if self.config_error and not op.without_policy:
                raise JitError("config_error", self.config_error)
            handler = getattr(self, op.handler)
            if op.kind == CALL:
                return op, await handler(args, caller.uid)
            if not self.limits.to_long(caller.uid):
                raise JitError("busy", "too many waiting connections; try again")
            caller.long = True
            try:
                return op, await handler(args, caller.uid, channel)
            finally:
                if op.kind != STREAM:
                    self.limits.to_quick(caller.uid)
                    caller.long = False
        except JitError as exc:
            return op, exc.to_wire()
        except Exception:  # a bug: never a traceback to the client, always one in the log
            log.exception("internal error handling a request")
            return op, {"ok": False, "code": "internal", "message": "internal error in hostd"}

    # the worker and effects -------------------------------------------------------------

    async def run(self, fn: Callable, *args: object):
        """Call fn in the ordered worker, then carry out what it said must follow."""
        loop = asyncio.get_running_loop()
        failure, value, effects, wrote = await loop.run_in_executor(
            self.changes, self._job, fn, args)
        if wrote:  # wake waiters (access.wait) to look again
            self._changed.set()
            self._changed = asyncio.Event()
        await self.carry_out(effects)
        if failure is not None:
            raise failure
        return value

    def _job(self, fn: Callable, args: tuple) -> tuple[BaseException | None, object, list,
                                                       bool]:
        before = self.core.store.db.total_changes
        try:
            value, failure = fn(*args), None
        except Exception as exc:
            value, failure = None, exc
        wrote = self.core.store.db.total_changes != before
        return failure, value, self.core.take_effects(), wrote

    async def carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, ArmTimer):
                self.schedule_warnings(effect.grant_id, effect.exp)
                await self._arm(effect.grant_id, effect.exp)
            elif isinstance(effect, CancelTimer):
                self.cancel_warnings(effect.grant_id)
                await self._cancel(effect.grant_id)
            elif isinstance(effect, EndSessions):
                self.end_sessions(effect)
            elif isinstance(effect, Notify) and self.notifier is not None:
                told = asyncio.get_running_loop().run_in_executor(
                    self.side, self.notifier, effect.kind, effect.request,
                    list(effect.recipients))
                if effect.kind == "created":  # op_access_request says how many it reached
                    self.notices[effect.request["id"]] = told

    # operations -------------------------------------------------------------------------

    async def op_status(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "hostd is running",
                "version": __version__, "uptime": self.core.now() - self.started,
                "active_grants": self.reader.count_live(),
                "config_error": self.config_error or None}

    async def op_grant_activate(self, args: dict, uid: int) -> dict:
        grant = await self.run(self.core.activate, args["token"], uid)
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} activated",
                "grant": grant}

    async def op_grant_list(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "",
                "grants": self.core.list_grants(uid, bool(args.get("all")), self.reader)}

    async def op_grant_revoke(self, args: dict, uid: int) -> dict:
        grant = await self.run(self.core.revoke, args["id"], uid, args.get("reason", ""))
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} revoked",
                "grant": grant}

    async def op_grant_expire(self, args: dict, uid: int) -> dict:
        """Asked by the grant's expiry timer; the core re-checks exp itself."""
        expired = await self.run(self.core.expire, args["id"])
        return {"ok": True, "code": "ok", "expired": expired,
                "message": "expired" if expired else "not due or already ended"}

    async def op_access_request(self, args: dict, uid: int) -> dict:
        req = await self.run(self.requests.create, uid, args["role"], args["duration"],
                             args["reason"], args.get("ticket", ""))
        told = self.notices.pop(req["id"], None)
        reached = None
        if told is not None:  # the approvers' terminals written (notify.Notifier), bounded
            with contextlib.suppress(Exception):
                reached = await asyncio.wait_for(asyncio.shield(told), NOTICE_WAIT)
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req, "approver_terminals": reached}

    async def op_access_approve(self, args: dict, uid: int) -> dict:
        req = await self.run(self.requests.approve, uid, args["id"], args.get("comment", ""))
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req}

    async def op_access_deny(self, args: dict, uid: int) -> dict:
        req = await self.run(self.requests.deny, uid, args["id"], args["reason"])
        return {"ok": True, "code": "ok", "message": f"request {req['id']} denied",
                "request": req}

    async def op_access_list(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "",
                "requests": await self.run(self.requests.visible, uid, args.get("id"))}

    async def op_access_wait(self, args: dict, uid: int, channel: Channel) -> dict:
        """Long wait for a decision on one's own request (`jit request --wait`): woken
        by any change hostd makes, and by the request's own expiry."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(args.get("timeout", 60), 1), MAX_WAIT)
        while True:
            changed = self._changed  # taken before reading: no wake-up is lost
            req = await self.run(self.requests.own, uid, args["id"])
            left = deadline - loop.time()
            if req["state"] != "pending" or left <= 0:
                return {"ok": True, "code": "ok", "message": req["state"], "request": req}
            row = self.reader.get_request(args["id"])
            until_expiry = (row["expires"] if row else 0) - self.core.clock() + 0.05
            try:
                await asyncio.wait_for(changed.wait(), min(left, until_expiry))
            except TimeoutError:
                pass

    def sweep(self) -> None:
        """Backstop: expire due grants and unanswered requests (in the worker)."""
        self.core.sweep()
        self.requests.expire_due()

    # timers -----------------------------------------------------------------------------

    async def _arm(self, grant_id: str, exp: int) -> None:
        try:
            await self.timers.arm(grant_id, exp)
        except Exception as exc:  # the sweep is the backstop; never fail an activation
            self.core.events.emit("timer_failed", f"could not arm expiry timer: {exc}",
                                  grant_id=grant_id)

    async def _cancel(self, grant_id: str) -> None:
        try:
            await self.timers.cancel(grant_id)
        except Exception as exc:  # a stale timer only asks for an expiry that changes nothing
            log.warning("could not cancel the expiry timer of %s: %s", grant_id, exc)

    async def arm_missing(self, live: list[tuple[str, int]]) -> None:
        for grant_id, exp in live:  # warnings live in this process: every start sets them
            self.schedule_warnings(grant_id, exp)
        armed = await self.timers.armed()
        for grant_id, exp in live:
            if grant_id not in armed:
                await self._arm(grant_id, exp)

    def on_timer(self, grant_id: str) -> None:
        """In-process timer fired: ask the worker to expire (the core re-arms if early)."""
        asyncio.get_running_loop().create_task(self._expire_quietly(grant_id))

    async def _expire_quietly(self, grant_id: str) -> None:
        try:
            await self.run(self.core.expire, grant_id)
        except Exception:
            log.exception("expiry of %s failed; the sweep retries", grant_id)
