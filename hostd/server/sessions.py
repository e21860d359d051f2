"""Ending what a grant opened, and warning before it ends.

A removed group stays in the supplementary groups of every process started while the
grant was live, so at the end of a grant (an `EndSessions` effect from the core) with
`on_expiry = "terminate-sessions"` hostd
1. ends the user's logind sessions registered while the grant was live:
   TerminateSession, wait for it to go, then KillSession(id, "all", 9);
2. then every remaining process of the user that still holds a group the grant took
   away (residue.scan over /proc): SIGTERM, SIGKILL after TERM_WAIT seconds, then
   SIGKILL to whatever a new scan still finds (children forked meanwhile), each
   signal after checking the process again through a pidfd.
With "keep-sessions" nothing is killed: one `privilege_residue` event lists the
processes that outlive the grant's privilege. Either way, recorded sudo sessions the
grant allowed are hung up first (RecordOps.hang_up): one ending path for both.

logind calls are D-Bus calls on the loop (`logind`, None in a sandbox or without a
bus); reading /proc and signalling run in a thread of their own, so the loop never
waits on either. The user's terminals are warned 5 and 1 minute before expiry and on
revocation (hostd/server/warnings.py), from the side thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from hostd.core.effects import EndSessions
from hostd.core.lifecycle import Core
from hostd.events import carried
from hostd.policy.liveness import is_live
from hostd.server import residue, residue_fds
from hostd.server import warnings as expiry_warnings
from hostd.server.record import RecordOps
from hostd.server.worker import Worker
from hostd.state.store import Store

if TYPE_CHECKING:  # loaded by service.py only when there is a bus
    from hostd.server.setgid_walks import SetgidWalks
    from hostd.server.ttys import Terminals
    from hostd.state.logind import Logind

log = logging.getLogger("jit-hostd")

SESSION_WAIT = 1.0  # seconds a terminated session gets to go before SIGKILL
TERM_WAIT = 2.0  # seconds a process gets after SIGTERM before SIGKILL
POLL = 0.05
KILL_ROUNDS = 20  # scans after the SIGTERM grace, each SIGKILLing what it finds
MAX_LISTED = 100  # processes named in one event (JIT_COUNT has them all)
TELL_TIMEOUT = 1.0


class SessionEnding:
    """EndSessions and expiry warnings."""

    def __init__(self, core: Core, reader: Store, worker: Worker, recordings: RecordOps,
                 side: Executor, logind: Logind | None = None,
                 proc_root: Path = Path("/proc"), dev_root: Path = Path("/dev"),
                 setgid_walks: SetgidWalks | None = None,
                 terminals: Terminals | None = None) -> None:
        """`side`: the notices thread (terminal writes); `logind`: None in a sandbox or
        without a bus; `proc_root`, `dev_root`: DIR/proc and DIR/dev in a sandbox;
        `setgid_walks`: walked after each ending (None: no walk); `terminals`: the
        session terminals pam_jit handed over, written before the /dev paths."""
        self.core, self.reader, self.worker = core, reader, worker
        self.recordings, self.side, self.logind = recordings, side, logind
        self.proc_root, self.dev_root = proc_root, dev_root
        self.setgid_walks, self.terminals = setgid_walks, terminals
        self.ending = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-ending")
        self._ending_tasks: set[asyncio.Task] = set()
        self._warn_handles: dict[str, list[asyncio.Handle]] = {}
        self._warned: dict[str, set[int]] = {}

    def close(self) -> None:
        self.ending.shutdown(wait=False, cancel_futures=True)
        for handles in self._warn_handles.values():
            for h in handles:
                h.cancel()

    def _background(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._ending_tasks.add(task)
        task.add_done_callback(self._ending_tasks.discard)
        return task

    async def _in_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.ending, fn, *args)

    # ending -----------------------------------------------------------------------------

    def end_sessions(self, effect: EndSessions) -> asyncio.Task:
        """Carried out in the background: the op that ended the grant answers at once."""
        task = self._background(self._end_quietly(effect))
        if self.setgid_walks is not None:  # the setgid walk follows the process ending
            self.setgid_walks.follow(effect.grant_id, task)
        return task

    async def _end_quietly(self, e: EndSessions) -> None:
        """Then the grant's pending_endings row goes (the core wrote it with the grant's
        end); a failure, or hostd killed first, leaves it for the next start."""
        try:
            await self._end(e)
        except Exception:
            log.exception("ending the sessions of grant %s failed", e.grant_id)
            return
        try:
            await self.worker.run(self.core.store.forget_ending, e.grant_id)
        except Exception:  # stopping: the next start carries it out again, harmlessly
            log.exception("could not mark the ending of grant %s done", e.grant_id)

    async def _end(self, e: EndSessions) -> None:
        self.cancel_warnings(e.grant_id, forget=True)
        try:
            await self.recordings.hang_up(e.grant_id, e.reason)
        except Exception:  # the login sessions and processes still end
            log.exception("hanging up the recorded sessions of grant %s failed", e.grant_id)
        if e.reason != "expired":
            await self.tell(e.uid, expiry_warnings.revoked_line(e.role, e.by, e.mode))
        gids = self._taken(e)
        if e.mode == "keep-sessions":
            procs, held = await self._in_thread(residue_fds.scan, self.proc_root, e.uid,
                                                frozenset(gids))  # residue: + descriptors
            if procs:
                self._residue_event(e, gids, procs)
            if held:  # residue: descriptors
                residue_fds.residue_event(self.core.events, e, gids, held)
            return
        try:
            await self._end_logind_sessions(e, gids)
        except Exception:  # the /proc pass still takes the groups away
            log.exception("ending the logind sessions of grant %s failed", e.grant_id)
        await self._end_processes(e, gids)
        await residue_fds.end_holders(self, e, gids)  # residue: open descriptors

    def _taken(self, e: EndSessions) -> dict[int, str]:
        """gid -> name of the groups the grant took away that no live grant has given
        back since (the user may have activated another grant in the meantime)."""
        return {gid: name for name, gid in e.gids
                if not self.reader.live_holders(e.user, name)}

    async def _end_logind_sessions(self, e: EndSessions, gids: dict[int, str]) -> None:
        logind = self.logind
        if logind is None:
            return
        sessions = [s for s in self.reader.sessions_of_grant(e.grant_id)
                    if s.get("id") and not s.get("closed") and s.get("uid") == e.uid]
        if not gids:  # the grant took nothing away: a session another live grant
            held = set()  # of the user also covers stays
            for g in self.reader.grants("active", user=e.user):
                held.update(s["id"] for s in self.reader.sessions_of_grant(g["id"]))
            sessions = [s for s in sessions if s["id"] not in held]
        await asyncio.gather(*(self._end_session(logind, e, gids, s) for s in sessions))

    async def _end_session(self, logind, e: EndSessions, gids: dict[int, str],
                           s: dict) -> None:
        sid = s["id"]
        try:
            info = await logind.session(sid)
            if info is None:
                return  # gone already
            if info.get("uid") != e.uid or (s.get("pid") and info.get("leader")
                                            and info["leader"] != s["pid"]):
                log.warning("session %s is no longer the one registered for grant %s; "
                            "left alone", sid, e.grant_id)
                return
            await logind.terminate(sid)
            decision = "terminated"
            if not await logind.wait_gone(sid, SESSION_WAIT):
                await logind.kill(sid, "all", signal.SIGKILL)
                decision = "killed"
                await logind.wait_gone(sid, SESSION_WAIT)
        except Exception as exc:  # the /proc pass below still takes the groups away
            log.warning("could not end session %s of grant %s: %s", sid, e.grant_id, exc)
            return
        self.core.events.emit(
            "session_terminated", f"session {sid} of {e.user} {decision}: grant "
            f"{e.grant_id} {e.reason}", **carried(
                "session_terminated", e, groups=sorted(gids.values()), session_id=sid,
                tty=s.get("tty") or info.get("tty"), decision=decision))

    async def _end_processes(self, e: EndSessions, gids: dict[int, str]) -> None:
        """SIGTERM to each process still holding a taken group (and SIGHUP to the login
        shells among them: residue.leads_a_tty_session), SIGKILL to those left
        after TERM_WAIT; then scan again and SIGKILL what appeared meanwhile (children
        a holder forked, say on SIGTERM), until none is left or KILL_ROUNDS ran out.
        One session_terminated event for the batch."""
        wanted = frozenset(gids)
        procs = await self._in_thread(residue.scan, self.proc_root, e.uid, wanted)
        if not procs:
            return
        found = {p.pid: p for p in procs}
        await self._in_thread(self._signal_all, procs, e.uid, wanted, signal.SIGTERM)
        await self._in_thread(self._signal_all, [p for p in procs if residue.leads_a_tty_session(
            self.proc_root, p.pid)], e.uid, wanted, signal.SIGHUP)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TERM_WAIT
        left = procs
        while left and loop.time() < deadline:  # only the known ones: cheap
            await asyncio.sleep(POLL)
            left = await self._in_thread(residue.still_holding, self.proc_root, left,
                                         e.uid, wanted)
        left = await self._in_thread(residue.scan, self.proc_root, e.uid, wanted)
        killed = bool(left)
        for _ in range(KILL_ROUNDS):
            if not left:
                break
            found.update((p.pid, p) for p in left if p.pid not in found)
            await self._in_thread(self._signal_all, left, e.uid, wanted, signal.SIGKILL)
            await asyncio.sleep(POLL)
            left = await self._in_thread(residue.scan, self.proc_root, e.uid, wanted)
        if left:
            log.warning("grant %s: %d processes of uid %s still hold %s after %d rounds "
                        "of SIGKILL", e.grant_id, len(left), e.uid, sorted(gids.values()),
                        KILL_ROUNDS)
        everything = sorted(found.values(), key=lambda p: p.pid)
        decision = "killed" if killed else "terminated"
        self.core.events.emit(
            "session_terminated", f"{len(everything)} processes of {e.user} still holding "
            f"{', '.join(sorted(gids.values()))} {decision}: grant {e.grant_id} {e.reason}",
            **carried("session_terminated", e, groups=sorted(gids.values()), decision=decision,
                      count=len(everything), pids=[p.pid for p in everything],
                      processes="; ".join(residue.describe(p, gids)
                                          for p in everything[:MAX_LISTED])))

    def _signal_all(self, procs: list[residue.Proc], uid: int, gids: frozenset[int],
                    signo: int) -> int:
        return sum(residue.signal_checked(self.proc_root, p.pid, uid, gids, signo)
                   for p in procs)

    def _residue_event(self, e: EndSessions, gids: dict[int, str],
                       procs: list[residue.Proc]) -> None:
        self.core.events.emit(
            "privilege_residue", f"grant {e.grant_id} {e.reason} but {len(procs)} processes "
            f"of {e.user} still hold {', '.join(sorted(gids.values()))} "
            "(on_expiry = keep-sessions)", **carried(
                "privilege_residue", e, groups=sorted(gids.values()), decision="kept",
                count=len(procs), pids=[p.pid for p in procs],
                processes="; ".join(residue.describe(p, gids) for p in procs[:MAX_LISTED])))

    # warnings ---------------------------------------------------------------------------

    def schedule_warnings(self, grant_id: str, exp: int) -> None:
        """Loop timers for the warnings still ahead; the latest one already due is given
        now (after a restart), unless this process gave it already."""
        self.cancel_warnings(grant_id)
        given = self._warned.setdefault(grant_id, set())
        now = self.core.clock()
        ahead, due = expiry_warnings.schedule(exp, now, given)
        loop = asyncio.get_running_loop()
        handles = [loop.call_later(max(0.0, when - now), self._fire_warning, grant_id, lead)
                   for when, lead in ahead]
        if due is not None:
            handles.append(loop.call_soon(self._fire_warning, grant_id, due))
        self._warn_handles[grant_id] = handles

    def cancel_warnings(self, grant_id: str, forget: bool = False) -> None:
        for h in self._warn_handles.pop(grant_id, []):
            h.cancel()
        if forget:
            self._warned.pop(grant_id, None)

    def _fire_warning(self, grant_id: str, lead: int) -> None:
        self._warned.setdefault(grant_id, set()).add(lead)
        self._background(self._warn(grant_id))

    async def _warn(self, grant_id: str) -> None:
        g = self.reader.get_grant(grant_id)
        now = self.core.clock()
        if g is None or not is_live(g, now):
            return
        role = self.core.config.roles.get(g["role"])
        mode = role.on_expiry if role is not None else "terminate-sessions"
        await self.tell(g["uid"], expiry_warnings.warning_line(g["role"], g["exp"], now, mode))

    async def tell(self, uid: int, line: str) -> None:
        """Write one line to the user's terminals (side thread, bounded wait)."""
        ttys: list[str] = []
        logind = self.logind
        if logind is not None:
            try:
                ttys = [s["tty"] for s in await logind.user_sessions(uid) if s.get("tty")]
            except Exception as exc:  # the user's own ptys are still found under /dev/pts
                log.warning("could not list the sessions of uid %s: %s", uid, exc)
        future = asyncio.get_running_loop().run_in_executor(
            self.side, expiry_warnings.warn, self.dev_root, uid, ttys, line, self.terminals)
        try:
            await asyncio.wait_for(asyncio.shield(future), TELL_TIMEOUT)
        except TimeoutError:
            log.warning("warning uid %s's terminals took over %s s", uid, TELL_TIMEOUT)
