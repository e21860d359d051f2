"""The grant and access-request ops: status, grant.*, access.*.

Changes go through the ordered worker; status and listings read the loop's read-only
store, and names come from the accounts cache, so none of them waits behind a change
or on NSS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from hostd import __version__
from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.errors import JitError
from hostd.server.ops import Caller
from hostd.server.worker import Worker
from hostd.state.accounts_cache import AccountsCache
from hostd.state.store import Store

NOTICE_WAIT = 2.0  # access.request waits this long to say how many terminals it reached

MAX_WAIT = 300  # an `access.wait` answers within this many seconds


async def caller_name(names: AccountsCache, uid: int) -> str:
    """The caller's user name, or wrong_user (as Core.list_grants says it)."""
    name = await names.user_by_uid(uid)
    if name is None:
        raise JitError("wrong_user", f"uid {uid} has no local user name")
    return name


class GrantOps:
    """status, grant.activate, grant.list, grant.revoke, grant.expire."""

    def __init__(self, core: Core, reader: Store, worker: Worker, names: AccountsCache,
                 config_error: Callable[[], str]) -> None:
        self.core, self.reader, self.worker, self.names = core, reader, worker, names
        self.config_error = config_error
        self.started = core.now()

    async def op_status(self, args: dict, caller: Caller) -> dict:
        return {"ok": True, "code": "ok", "message": "hostd is running",
                "version": __version__, "uptime": self.core.now() - self.started,
                "active_grants": self.reader.count_live(),
                "config_error": self.config_error() or None}

    async def op_grant_activate(self, args: dict, caller: Caller) -> dict:
        grant = await self.worker.run(self.core.activate, args["token"], caller.uid)
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} activated",
                "grant": grant}

    async def op_grant_check(self, args: dict, caller: Caller) -> dict:
        """`jit grant verify` asks it after its offline check: the revocation lists are
        hostd's (root-only state). Anyone holding a token may ask about it, as anyone
        may try to activate it; the answer says no more than activation would. A read,
        on the loop (as pam.account's revocation check): one signature verified."""
        grant = self.core.check(args["token"])
        return {"ok": True, "code": "ok", "message": "grant would be accepted here",
                "jti": grant.jti, "revocations_checked": self.core.revocations is not None}

    async def op_grant_list(self, args: dict, caller: Caller) -> dict:
        every = bool(args.get("all"))
        name = None if every else await caller_name(self.names, caller.uid)
        return {"ok": True, "code": "ok", "message": "",
                "grants": self.core.list_grants(caller.uid, every, self.reader, name,
                                                args.get("pending"))}

    async def op_grant_revoke(self, args: dict, caller: Caller) -> dict:
        grant = await self.worker.run(self.core.revoke, args["id"], caller.uid,
                                      args.get("reason", ""))
        return {"ok": True, "code": "ok", "message": f"grant {grant['id']} revoked",
                "grant": grant}

    async def op_grant_expire(self, args: dict, caller: Caller) -> dict:
        """Asked by the grant's expiry timer; the core re-checks exp itself."""
        expired = await self.worker.run(self.core.expire, args["id"])
        return {"ok": True, "code": "ok", "expired": expired,
                "message": "expired" if expired else "not due or already ended"}


class AccessOps:
    """access.request, access.approve, access.deny, access.cancel, access.list, access.wait."""

    def __init__(self, core: Core, requests: Requests, reader: Store, worker: Worker,
                 notices: dict[str, asyncio.Future] | None = None) -> None:
        """`notices`: request id -> how many approver terminals its notice reached
        (filled by Effects as the notice goes out)."""
        self.core, self.requests, self.reader, self.worker = core, requests, reader, worker
        self.notices = notices if notices is not None else {}

    async def op_access_request(self, args: dict, caller: Caller) -> dict:
        req = await self.worker.run(self.requests.create, caller.uid, args["role"],
                                    args["duration"], args["reason"], args.get("ticket", ""),
                                    args.get("start"))
        told = self.notices.pop(req["id"], None)
        reached = None
        if told is not None:  # the approvers' terminals written (notify.Notifier), bounded
            with contextlib.suppress(Exception):
                reached = await asyncio.wait_for(asyncio.shield(told), NOTICE_WAIT)
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req, "approver_terminals": reached}

    async def op_access_approve(self, args: dict, caller: Caller) -> dict:
        req = await self.worker.run(self.requests.approve, caller.uid, args["id"],
                                    args.get("comment", ""))
        return {"ok": True, "code": "ok", "message": f"request {req['id']} {req['state']}",
                "request": req}

    async def op_access_deny(self, args: dict, caller: Caller) -> dict:
        req = await self.worker.run(self.requests.deny, caller.uid, args["id"], args["reason"])
        return {"ok": True, "code": "ok", "message": f"request {req['id']} denied",
                "request": req}

    async def op_access_cancel(self, args: dict, caller: Caller) -> dict:
        """`jit requests --cancel ID`: a requester withdraws their own pending request."""
        req = await self.worker.run(self.requests.withdraw, caller.uid, args["id"])
        return {"ok": True, "code": "ok", "message": f"request {req['id']} cancelled",
                "request": req}

    async def op_access_list(self, args: dict, caller: Caller) -> dict:
        return {"ok": True, "code": "ok", "message": "",
                "requests": await self.worker.run(self.requests.visible, caller.uid,
                                                  args.get("id"))}

    async def op_access_wait(self, args: dict, caller: Caller, channel: object) -> dict:
        """Long wait for a decision on one's own request (`jit request --wait`): woken
        by any change hostd makes, and by the request's own expiry."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(args.get("timeout", 60), 1), MAX_WAIT)
        while True:
            changed = self.worker.changed  # taken before reading: no wake-up is lost
            req = await self.worker.run(self.requests.own, caller.uid, args["id"])
            left = deadline - loop.time()
            if req["state"] != "pending" or left <= 0:
                return {"ok": True, "code": "ok", "message": req["state"], "request": req}
            row = self.reader.get_request(args["id"])
            until_expiry = (row["expires"] if row else 0) - self.core.clock() + 0.05
            try:
                await asyncio.wait_for(changed.wait(), min(left, until_expiry))
            except TimeoutError:
                pass

