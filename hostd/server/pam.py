"""The PAM ops of the server (DESIGN.md §7): `pam.account` gates logins, and
`pam.open_session` / `pam.close_session` keep the registry of login sessions that
expiry ends (hostd/state/logind.py, Store.sessions_of_grant); `login.list` shows it.

pam_jit.py calls them as root from inside login, sshd, su...: the user is the one PAM
names (`pamh.user`, sent as a field, which only root may do), the process is the
caller's own pid from SO_PEERCRED (`Caller.pid`), and its logind session comes from
logind, never from a field. Decisions are reads (grants through the read-only store,
names and groups through the accounts cache) and run on the loop; the registry changes
go through the ordered worker.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.events import escape
from hostd.policy import logins
from hostd.server.grants import caller_name
from hostd.server.ops import Caller
from hostd.server.worker import Worker
from hostd.state.accounts_cache import AccountsCache
from hostd.state.store import Store

if TYPE_CHECKING:  # loaded by service.py only when there is a bus
    from hostd.server.ttys import Terminals
    from hostd.state.logind import Logind

log = logging.getLogger("jit-hostd")


def _alive(pid: int) -> bool:
    """The PAM callers are real processes, in a sandbox too: the real /proc."""
    return os.path.exists(f"/proc/{pid}")


class PamOps:
    """pam.account, pam.open_session, pam.close_session, login.list."""

    def __init__(self, core: Core, reader: Store, worker: Worker, names: AccountsCache,
                 logind: Logind | None, terminals: Terminals | None = None) -> None:
        """`logind`: None in a sandbox or without a bus (sessions by pid only);
        `terminals`: the session terminals pam_jit hands over (closed with the session)."""
        self.core, self.reader, self.worker, self.names = core, reader, worker, names
        self.logind, self.terminals = logind, terminals
        self._later: set[asyncio.Task] = set()  # _after_answer's tasks, kept referenced

    async def _pam_user(self, args: dict) -> tuple[str, int]:
        user = args["user"]
        uid = await self.names.uid_of(user)
        if uid is None:
            raise JitError("not_found", f"no such user: {escape(user)[:64]}")
        return user, uid

    async def op_pam_account(self, args: dict, caller: Caller) -> dict:
        """Admit or refuse one login; a refusal says why and how to ask."""
        user, user_uid = await self._pam_user(args)
        groups = set(await self.names.groups_of(user))
        cfg = self.core.config
        grants = self.core.unrevoked(self.reader.grants("active", user=user))
        d = logins.decide(cfg, grants, user, groups, self.core.now(), self.core.host.hostname)
        if not d.allowed:
            self.core.events.refusal(
                "login_refused", f"login of {user} refused: [login] requires a grant "
                f"with login = true ({args.get('service') or 'pam'})", uid=user_uid, user=user,
                decision="refused", code="no_grant", tty=args.get("tty") or None,
                reason="no active grant with login = true")
            raise JitError("no_grant", d.message)
        return {"ok": True, "code": "ok", "decision": "allow", "gated": d.gated,
                "grants": list(d.grant_ids), "message": ""}

    async def _logind_session(self, pid: int, uid: int) -> str | None:
        """The logind session of the PAM process, if it belongs to the user: `su` from
        another user's session runs in that session, which must never be ended for the
        target user's grant. None without logind, or when logind fails (logged)."""
        if self.logind is None:
            return None
        try:
            found = await self.logind.session_of_pid(pid)
        except Exception as exc:  # registering by pid still lets expiry find the processes
            log.warning("logind: no session for pid %d: %s", pid, exc)
            return None
        return found[0] if found is not None and found[1] == uid else None

    async def op_pam_open_session(self, args: dict, caller: Caller) -> dict:
        """Register the session against the user's live grants; say what they hold.
        Answered once the row is committed (the session is then ended with its grants,
        whatever happens to hostd). Rows left open by gone processes are closed by the
        periodic sweep (sweep_gone), not on every login."""
        user, user_uid = await self._pam_user(args)
        pid = caller.pid
        sid = await self._logind_session(pid, user_uid)
        now = self.core.now()
        grants = logins.live(self.reader.grants("active", user=user), user, now)
        row = {"sid": sid, "uid": user_uid, "user": user, "pid": pid,
               "tty": args.get("tty", ""), "service": args.get("service", ""),
               "rhost": args.get("rhost", ""), "opened": now}
        ids = [g["id"] for g in grants]
        await self.worker.run_store(self.core.store.open_login_session, row, ids)
        self.core.events.emit(
            "session_opened", f"login session of {user} registered "
            f"({args.get('service') or 'pam'}, pid {pid}, {len(ids)} live grants)",
            user=user, uid=user_uid, session_id=sid, tty=row["tty"], grant_id=ids)
        return {"ok": True, "code": "ok", "session_id": sid, "grants": ids,
                "message": logins.session_text(grants, now)}

    def _after_answer(self, coro: Coroutine[Any, Any, None]) -> None:
        """Bookkeeping that decides nothing, off the login's path: the task first runs
        after the op returns, and the connection writes the answer before it awaits
        anything, so the PAM process has its answer while this runs."""
        task = asyncio.get_running_loop().create_task(coro)
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def sweep_gone(self) -> None:
        """Close what was left open by processes that are gone (a crash, a power cut):
        part of the periodic sweep, in the worker (Server.sweep; one /proc look-up per
        open session, never on the loop). A row left open meanwhile ends nothing that
        runs: endings act on processes, and a gone pid has none."""
        for g in self.core.store.close_gone_sessions(_alive, self.core.now()):
            self.core.events.emit(
                "session_closed", f"login session of {g['user']} closed: its process "
                f"{g['pid']} is gone", user=g["user"], uid=g["uid"], session_id=g["sid"],
                tty=g["tty"], reason="process gone")

    async def op_pam_close_session(self, args: dict, caller: Caller) -> dict:
        """Mark the caller's session closed; closing one never registered is not an error.
        The terminal is let go before the answer; the row is closed after it (a hostd
        killed in between leaves it to the sweep, which finds the process gone)."""
        user, user_uid = await self._pam_user(args)
        pid = caller.pid
        if self.terminals is not None:  # the terminal pam_jit handed over (server/ttys.py)
            self.terminals.close_pid(pid)
        registered = self.reader.has_open_session(user, pid)
        if registered:
            self._after_answer(self._close(user, user_uid, pid, self.core.now()))
        return {"ok": True, "code": "ok", "closed": registered, "message": ""}

    async def _close(self, user: str, uid: int, pid: int, now: int) -> None:
        try:
            row = await self.worker.run_store(self.core.store.close_login_session, user, pid,
                                              now)
        except Exception:  # the sweep closes it once the process is gone
            log.exception("closing the login session of pid %d failed", pid)
            return
        if row is not None:
            self.core.events.emit(
                "session_closed", f"login session of {user} closed ({row['service'] or 'pam'}"
                f", pid {pid})", user=user, uid=uid, session_id=row["sid"], tty=row["tty"])

    async def op_login_list(self, args: dict, caller: Caller) -> dict:
        """Registered login sessions (open ones unless `closed`): one's own, or all for root."""
        if args.get("all") and caller.uid != 0:
            raise JitError("permission_denied", "only root may list every user's sessions")
        user = None if args.get("all") else await caller_name(self.names, caller.uid)
        return {"ok": True, "code": "ok", "message": "",
                "sessions": self.reader.login_sessions(user, not args.get("closed"))}
