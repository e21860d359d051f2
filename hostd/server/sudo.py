"""The sudo ops: one `sudo.check` per sudo invocation, `sudo.wait` for a paused one.

The decision runs on the loop: grants come from the read-only store, and the user's
name, groups and runas account from the accounts cache (whose misses run in a pool of
their own), so a slow directory never stalls the loop. Passwords are checked in the
auth threads (PAM may sleep seconds on a wrong one); changes (approvals, `sudo -l`,
`-v`) go through the ordered worker. What waits for an approver, and which approved
recorded command's exec is due, is held in one place: `Sudo.approvals`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

from hostd.core.lifecycle import Core
from hostd.core.sudo import MAX_TRIES, Asked, StampKey, Sudo, stamp_key
from hostd.errors import JitError
from hostd.events import EVENT_TYPES, carried
from hostd.protocol import SUDO_MODES
from hostd.server.ops import Caller
from hostd.server.passwords import Gone, PasswordChecks
from hostd.server.record import RecordOps
from hostd.server.worker import Worker
from hostd.state.accounts_cache import AccountsCache
from hostd.state.store import Store


def _sudo_carried(event: str, req, d, config=None, **values: object) -> dict:
    """What a sudo event carries (events.carried): the request's user and terminal, the
    decision's command line (canonical: the program's real path, path arguments folded),
    the grant that allowed it (d.source) and its guardrail: JIT_GUARDRAIL is its index,
    and a refusal's reason names it in either form (`deny program /usr/bin/rm args ...`)."""
    if (d.guardrail >= 0 and config is not None and d.guardrail < len(config.guardrails)
            and "reason" in EVENT_TYPES[event].fields):
        rail = f"guardrail {d.guardrail}: {config.guardrails[d.guardrail].describe()}"
        values["reason"] = f"{values['reason']} ({rail})" if values.get("reason") else rail
    return carried(event, d.source, uid=req.uid, user=req.user, command=d.line,
                   runas=req.runas_user, tty=req.tty,
                   guardrail=str(d.guardrail) if d.guardrail >= 0 else None, **values)


class SudoOps:
    """sudo.check and sudo.wait."""

    def __init__(self, core: Core, sudo: Sudo, reader: Store, worker: Worker,
                 names: AccountsCache, auth: Executor, recordings: RecordOps,
                 proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> None:
        self.core, self.sudo, self.reader, self.worker = core, sudo, reader, worker
        self.names, self.auth, self.recordings = names, auth, recordings
        self.checks = PasswordChecks(auth)
        self.proc, self.dev = proc, dev  # the timestamps' sessions and terminals
        self.approvals = sudo.approvals

    async def _ask(self, args: dict) -> Asked:
        """Parse once, look the accounts up through the cache, decide once. An
        intercepted check that is the recorder's exec of the command an approver just
        let run (same user, same sudo process, same command line) is decided as
        approved; any other command of that session meets the guardrails as usual."""
        req = self.sudo.parse(args)
        self.sudo.identify(req, await self.names.user_by_uid(req.uid))
        groups, runas = await asyncio.gather(self.names.groups_of(req.user),
                                             self.names.account(req.runas_user))
        line = self.approvals.take_exec(req)
        asked = self.sudo.decided(req, groups, runas, line is not None, self.reader)
        if line is not None and asked.decision.line != line:  # not the approved command
            asked = self.sudo.decided(req, groups, runas, False, self.reader)
        return asked

    def stamp(self, req) -> StampKey | None:
        """The timestamp's key, from /proc and /dev (sudoers' timestamp_type=tty)."""
        return stamp_key(req, self.proc, self.dev)

    async def op_sudo_check(self, args: dict, caller: Caller, channel) -> dict:
        """One sudo invocation: allow (command_info), refuse, ask for the password, or
        pause for an approval. Passwords are checked in the auth threads, fair per user
        (server/passwords.py); a check is dropped if the sudo goes (`channel` closes)."""
        return await self._check(args, channel)

    async def _check(self, args: dict, channel) -> dict:
        mode = args["mode"]
        if mode not in SUDO_MODES:
            raise JitError("bad_request", f"mode must be one of {', '.join(SUDO_MODES)}")
        if mode == "list":
            text = await self.worker.run(self.sudo.list_text, args)
            return {"ok": True, "code": "ok", "decision": "list", "message": text}
        if mode in ("validate", "invalidate"):
            needs, req = await self.worker.run(self.sudo.needs_password_to_validate, args)
            key = self.stamp(req)
            if mode == "invalidate":
                self.sudo.forget(key)
            elif needs and not self.sudo.fresh(key):
                await self._password(args, req, key, channel)
            return {"ok": True, "code": "ok", "decision": mode, "message": ""}
        asked = await self._ask(args)
        d = asked.decision
        if d.result == "deny":
            return self._sudo_refused(asked, d.code, d.message)
        key = self.stamp(asked.request) if d.needs_password else None
        if d.needs_password and not self.sudo.fresh(key):
            if asked.request.noninteractive and "password" not in args:  # sudo -n
                return self._sudo_refused(asked, "auth_required_noninteractive",
                                          "a password is required")
            await self._password(args, asked.request, key, channel)
        if d.result == "pending":
            if asked.request.noninteractive:
                return self._sudo_refused(asked, "needs_approval", f"{d.command} needs an "
                                          "approval; run sudo without -n to ask for one")
            req = await self.worker.run(self.sudo.request_approval, asked)
            self._sudo_event("sudo_pending", asked, d, request_id=req["id"])
            return {"ok": True, "code": "ok", "decision": "pending", "request_id": req["id"],
                    "timeout": self.core.config.sudo_approval_timeout,
                    "message": f"jit: {d.message}: request {req['id']}; waiting for "
                               "approval (Ctrl-C to cancel)"}
        self._sudo_event("sudo_allowed", asked, d)
        return self._allow(asked, d)

    def _allow(self, asked: Asked, d, approved: bool = False) -> dict:
        """The allow answer, wrapped in jit-record when the command is recorded; an
        approved recorded command's exec is then expected (Approvals.take_exec)."""
        allow = self._sudo_allow(d)
        wrapped = self.recordings.wrap_allowed(asked, d, allow)
        if wrapped is None:
            return allow
        if approved:
            self.approvals.expect_exec(asked.request, d.line)
        return wrapped

    async def op_sudo_wait(self, args: dict, caller: Caller, channel) -> dict:
        """Wait for the approval of a paused command; Ctrl-C (the plugin's connection
        closing) cancels the request."""
        rid = args["id"]
        asked = self.approvals.waiting_for(rid)
        if asked is None:
            raise JitError("not_found", f"no sudo command waits on request {rid}")
        gone = asyncio.ensure_future(channel.reader.read(1))  # EOF: sudo went away
        try:
            while True:
                changed = self.worker.changed
                row = self.reader.get_request(rid)
                left = (row["expires"] if row else 0) - self.core.clock()
                if row is None or row["state"] != "pending" or left <= 0:
                    break
                waiter = asyncio.ensure_future(changed.wait())
                await asyncio.wait({waiter, gone}, timeout=left + 0.05,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if gone.done():
                    await self.worker.run(self.sudo.cancel, rid)
                    return {"ok": False, "code": "denied", "message": "cancelled"}
        finally:
            gone.cancel()
        if row is not None and row["state"] == "approved":
            d = await self.worker.run(self.sudo.approved, rid)
            if d.allowed:
                self._sudo_event("sudo_allowed", asked, d, request_id=rid)
                return self._allow(asked, d, approved=True)
            return self._sudo_refused(asked, d.code, d.message)
        self.approvals.take(rid)
        state = "denied" if row is not None and row["state"] == "denied" else "expired"
        return self._sudo_refused(asked, "denied", f"request {rid} was {state}: "
                                  f"{asked.decision.command} does not run")

    async def _password(self, args: dict, req, key: StampKey | None, channel) -> None:
        """The password check, off the loop and off the worker, in the user's turn
        (PasswordChecks); JitError auth_required (ask again), auth_failed (3 wrong),
        busy (the user's own checks queued too long) or denied (the sudo went)."""
        prompt = f"[jit] password for {req.user}: "
        if "password" not in args:
            raise JitError("auth_required", prompt)
        password = args["password"]
        # EOF on the connection: the sudo went (only watched here, where a check waits)
        gone = asyncio.ensure_future(channel.reader.read(1)) if channel is not None else None
        try:
            verdict = await self.checks.check(req.uid, lambda: self.sudo.check_password(
                req.uid, key, req.pid, req.user, password), gone)
        except Gone:
            raise JitError("denied", "the sudo that asked has gone") from None
        finally:
            if gone is not None:
                gone.cancel()
        if verdict.ok:
            return
        if self.sudo.tries_left(req.uid, req.pid) <= 0:
            self.core.events.refusal("sudo_denied", f"sudo refused to {req.user}: "
                                     f"{MAX_TRIES} incorrect password attempts", uid=req.uid,
                                     user=req.user, decision="denied", code="auth_failed",
                                     tty=req.tty)
            raise JitError("auth_failed", f"{MAX_TRIES} incorrect password attempts")
        raise JitError("auth_required", "Sorry, try again.\n" + prompt)

    def _sudo_allow(self, d) -> dict:
        return {"ok": True, "code": "ok", "decision": "allow",
                "command_info": list(d.command_info), "argv": list(d.argv),
                "env": list(d.env)}

    def _sudo_refused(self, asked, code: str, message: str) -> dict:
        self.core.events.refusal(
            "sudo_denied", f"sudo refused to {asked.request.user}: {code}",
            **_sudo_carried("sudo_denied", asked.request, asked.decision, self.core.config,
                            decision="denied", code=code, reason=message))
        return {"ok": False, "code": code, "message": message}

    def _sudo_event(self, event: str, asked, d, request_id: str | None = None) -> None:
        verb = {"sudo_allowed": "allowed", "sudo_pending": "paused for approval"}[event]
        self.core.events.emit(
            event, f"sudo {verb} for {asked.request.user} as {asked.request.runas_user}",
            **_sudo_carried(event, asked.request, d, self.core.config, decision=verb,
                            request_id=request_id))
