"""The socket server: adapts lines on /run/jit/hostd.sock to Core calls.

Identity comes from SO_PEERCRED only. Every connection is bounded: a line of at most
64 KiB, an idle timeout, a global and a per-uid connection cap, so one slow or hostile
client cannot stall the others. Core calls are short and run on the loop itself, which
serialises every change to the host without locks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from collections.abc import Awaitable, Callable

from . import __version__
from .approvals import Requests
from .core import Core
from .errors import JitError
from .protocol import MAX_LINE, decode, encode
from .timers import ExpiryTimers

log = logging.getLogger("jit-hostd")

IDLE_TIMEOUT = 10.0
MAX_CONNECTIONS = 128
MAX_PER_UID = 16


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


Handler = Callable[[dict, int], Awaitable[dict]]


class Server:
    def __init__(self, core: Core, timers: ExpiryTimers, config_error: str = "",
                 requests: Requests | None = None) -> None:
        self.core = core
        self.timers = timers
        self.requests = requests or Requests(core, None)
        self.config_error = config_error
        self.connections = 0
        self.per_uid: Counter[int] = Counter()
        self.started = core.now()
        self.handlers: dict[str, Handler] = {
            "status": self.op_status,
            "grant.activate": self.op_activate,
            "grant.list": self.op_list,
            "grant.revoke": self.op_revoke,
            "grant.expire": self.op_expire,
            "access.request": self.op_request,
            "access.approve": self.op_approve,
            "access.deny": self.op_deny,
            "access.list": self.op_requests,
            "access.wait": self.op_wait,
        }

    # connection handling ----------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            _, uid, _ = peer_credentials(sock)
        except OSError:
            writer.close()
            return
        if self.connections >= MAX_CONNECTIONS or self.per_uid[uid] >= MAX_PER_UID:
            await self._send(writer, JitError("busy", "hostd is busy; try again").to_wire())
            writer.close()
            return
        self.connections += 1
        self.per_uid[uid] += 1
        try:
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except TimeoutError:
                    break
                except (asyncio.LimitOverrunError, ValueError):
                    await self._send(writer, JitError(
                        "too_large", f"request larger than {MAX_LINE // 1024} KiB").to_wire())
                    break
                if not line:
                    break
                if not line.endswith(b"\n"):
                    await self._send(writer, JitError("bad_request",
                                                      "request not ended by a newline").to_wire())
                    break
                answer = await self.dispatch(line, uid)
                if not await self._send(writer, answer):
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections -= 1
            self.per_uid[uid] -= 1
            if not self.per_uid[uid]:
                del self.per_uid[uid]
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, obj: dict) -> bool:
        try:
            writer.write(encode(obj))
            await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
            return True
        except (TimeoutError, ConnectionError, OSError):
            return False

    async def dispatch(self, line: bytes, uid: int) -> dict:
        """Decode, check, call; every failure becomes a named error answer."""
        try:
            op, args = decode(line)
            if self.config_error and op not in ("status", "grant.expire", "grant.list"):
                raise JitError("config_error", self.config_error)
            return await self.handlers[op](args, uid)
        except JitError as exc:
            return exc.to_wire()
        except Exception:  # a bug: never a traceback to the client, always one in the log
            log.exception("internal error handling a request")
            return {"ok": False, "code": "internal", "message": "internal error in hostd"}

    # operations -------------------------------------------------------------------------

    async def op_status(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "hostd is running",
                "version": __version__, "uptime": self.core.now() - self.started,
                "active_grants": len(self.core.store.live_grants()),
                "config_error": self.config_error or None}

    async def op_activate(self, args: dict, uid: int) -> dict:
        grant = self.core.activate(args["token"], uid)
        await self._arm(grant["id"], grant["exp"])
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} activated",
                "grant": grant}

    async def op_list(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "",
                "grants": self.core.list_grants(uid, bool(args.get("all")))}

    async def op_revoke(self, args: dict, uid: int) -> dict:
        grant = self.core.revoke(args["id"], uid, args.get("reason", ""))
        await self.timers.cancel(grant["id"])
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} revoked",
                "grant": grant}

    async def op_expire(self, args: dict, uid: int) -> dict:
        """Asked by the grant's expiry timer (root only); re-checks exp itself."""
        if uid != 0:
            raise JitError("permission_denied", "only root may ask for expiry")
        expired = self.core.expire(args["id"])
        if not expired:
            g = self.core.store.get_grant(args["id"])
            if g is not None and g["state"] == "active":  # fired early: arm again
                await self._arm(g["id"], g["exp"])
        return {"ok": True, "code": "ok", "expired": expired,
                "message": "expired" if expired else "not due or already ended"}

    async def op_request(self, args: dict, uid: int) -> dict:
        req = self.requests.create(uid, args["role"], args["duration"], args["reason"],
                                   args.get("ticket", ""))
        await self._arm_granted(req)
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req}

    async def op_approve(self, args: dict, uid: int) -> dict:
        req = self.requests.approve(uid, args["id"], args.get("comment", ""))
        await self._arm_granted(req)
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req}

    async def op_deny(self, args: dict, uid: int) -> dict:
        req = self.requests.deny(uid, args["id"], args["reason"])
        return {"ok": True, "code": "ok", "message": f"request {req['id']} denied",
                "request": req}

    async def op_requests(self, args: dict, uid: int) -> dict:
        return {"ok": True, "code": "ok", "message": "",
                "requests": self.requests.visible(uid, args.get("id"))}

    async def op_wait(self, args: dict, uid: int) -> dict:
        """Long wait for a decision on one's own request (`jit request --wait`)."""
        timeout = min(max(args.get("timeout", 60), 1), 300)
        deadline = self.core.now() + timeout
        while True:
            req = self.requests.own(uid, args["id"])
            if req["state"] != "pending" or self.core.now() >= deadline:
                return {"ok": True, "code": "ok", "message": req["state"], "request": req}
            await asyncio.sleep(0.25)

    async def _arm_granted(self, req: dict) -> None:
        if req.get("grant_id"):
            g = self.core.store.get_grant(req["grant_id"])
            if g is not None:
                await self._arm(g["id"], g["exp"])

    def sweep(self) -> None:
        """Backstop: expire due grants and unanswered requests."""
        self.core.sweep()
        self.requests.expire_due()

    # timers -----------------------------------------------------------------------------

    async def _arm(self, grant_id: str, exp: int) -> None:
        try:
            await self.timers.arm(grant_id, exp)
        except Exception as exc:  # the sweep is the backstop; never fail an activation
            self.core.events.emit("timer_failed", f"could not arm expiry timer: {exc}",
                                  grant_id=grant_id)

    async def arm_missing(self, live: list[tuple[str, int]]) -> None:
        armed = await self.timers.armed()
        for grant_id, exp in live:
            if grant_id not in armed:
                await self._arm(grant_id, exp)

    def on_timer(self, grant_id: str) -> None:
        """In-process timer fired: expire, or re-arm if it fired a hair early."""
        if not self.core.expire(grant_id):
            g = self.core.store.get_grant(grant_id)
            if g is not None and g["state"] == "active":
                asyncio.get_running_loop().create_task(self._arm(grant_id, g["exp"]))
