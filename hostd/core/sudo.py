"""sudo through hostd: what `sudo.check` and `sudo.wait` need around the pure decision.

sudo_policy.decide makes the decision from data; this module gathers that data (the
user's live grants and groups, the runas account), authenticates with PAM (service
`jit-sudo`, in hostd's auth threads, never on the loop or in the ordered worker),
keeps sudoers-like timestamps, turns `approve` guardrails into command approvals, and
logs every decision. The sudo plugin itself holds no policy.

Identity: the caller is sudo (uid 0 over SO_PEERCRED); the user is user_info's `uid`,
which sudo took from the kernel, and must name the same account as its `user`.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, replace

from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.errors import JitError
from hostd.policy.sudo import Decision, RunasUser, SudoRequest, decide, listing, sources

PAM_SERVICE = "jit-sudo"
TIMESTAMP_SECONDS = 300  # sudoers' timestamp_timeout: 5 minutes
MAX_TRIES = 3  # sudoers' passwd_tries
MAX_PENDING_CONTEXTS = 1024
MAX_REMEMBERED = 4096  # timestamps and try counts held before stale ones are dropped


def pam_authenticate(user: str, password: str) -> bool:
    """PAM's verdict on the password (auth and account stacks of `jit-sudo`)."""
    import pam  # python3-pampy: loaded only by hostd, and only when sudo asks

    return bool(pam.pam().authenticate(user, password, service=PAM_SERVICE, resetcreds=False))


@dataclass(frozen=True)
class Asked:
    """One sudo invocation, as hostd understood it."""

    request: SudoRequest
    decision: Decision

    @property
    def stamp_key(self) -> tuple[int, str]:
        return stamp_key(self.request)


def stamp_key(req: SudoRequest) -> tuple[int, str]:
    """(uid, tty or parent pid): sudoers' timestamp_type=tty."""
    return req.uid, req.tty or f"ppid:{req.ppid}"


class Sudo:
    def __init__(self, core: Core, requests: Requests, authenticate=pam_authenticate,
                 which=shutil.which, reader=None) -> None:
        self.core = core
        self.reader = reader  # the server's read-only store: decisions need no worker
        self.requests = requests
        self.authenticate_password = authenticate
        self.which = which
        self._lock = threading.Lock()  # timestamps and tries: auth threads and the worker
        self._stamps: dict[tuple[int, str], float] = {}
        self._tries: dict[tuple[int, str], tuple[int, float]] = {}  # (count, last try)
        self.waiting: dict[str, Asked] = {}  # request id -> the invocation that waits

    # gathering and deciding (in the ordered worker) ----------------------------------------

    def ask(self, args: dict, approved: bool = False) -> Asked:
        """Parse, identify, gather, decide (`approved`: approve guardrails passed)."""
        req = self._request(args, args.get("argv", []))
        return Asked(req, self._decide(req, self.reader, approved=approved))

    def _request(self, args: dict, argv: list[str]) -> SudoRequest:
        """sudo's vectors, parsed once, with user_info's user checked against its uid."""
        req = SudoRequest.from_wire(args["settings"], args["user_info"], argv,
                                    args.get("env", []),
                                    intercepted=args.get("intercepted", False))
        name = self.core.accounts.user_by_uid(req.uid)
        if name is None or name != req.user:
            raise JitError("bad_request", f"user_info names {req.user!r}, uid {req.uid} is "
                                          f"{name!r}")
        return req

    def _decide(self, req: SudoRequest, store=None, approved: bool = False) -> Decision:
        """`store`: the loop's read-only connection, or None for the worker's own (a
        SQLite connection belongs to the thread that made it)."""
        return decide(req, self.core.config, self.core.list_grants(req.uid, store=store),
                      self.core.accounts.groups_of(req.user), self._runas(req.runas_user),
                      self.core.now(), self.core.host.hostname, self.which, approved=approved)

    def list_text(self, args: dict) -> str:
        """`sudo -l [-U USER] [COMMAND]`: what the user (or, for root, USER) may run; with
        a command, its full path if allowed (as sudoers prints it), else a refusal."""
        req = self._request(args, [])
        target = args.get("list_user") or req.user
        if target != req.user and req.uid != 0:
            raise JitError("permission_denied", "only root may list another user's commands")
        target_uid = self.core.accounts.uid_of(target)
        if target_uid is None:
            raise JitError("not_found", f"no such user {target!r}")
        req = replace(req, user=target, uid=target_uid)
        if args.get("list_argv"):
            d = self._decide(replace(req, argv=tuple(args["list_argv"])))
            if d.result == "deny":
                raise JitError(d.code, d.message)
            return d.command
        return "\n".join(listing(self.core.config, self.core.list_grants(target_uid), target,
                                 self.core.accounts.groups_of(target), self.core.now(),
                                 self.core.host.hostname))

    def needs_password_to_validate(self, args: dict) -> tuple[bool, SudoRequest]:
        """`sudo -v`: the user must hold some rule; a password if any of them asks."""
        req = self._request(args, [])
        held = sources(self.core.config, self.core.list_grants(req.uid), req.user,
                       self.core.accounts.groups_of(req.user), self.core.now())
        if not held:
            raise JitError("no_grant", f"{req.user} holds no grant allowing sudo on "
                                       f"{self.core.host.hostname}")
        return req.uid != 0 and any(auth for _, _, auth in held), req

    # approvals (in the ordered worker) ------------------------------------------------------

    def request_approval(self, asked: Asked) -> dict:
        """An `approve` guardrail: a command approval bound to this exact command."""
        d = asked.decision
        if d.approval_role is None:
            raise JitError("needs_approval", f"{d.command} needs an approval, and standing "
                                             "rules have no approvers: run it from a grant")
        if len(self.waiting) >= MAX_PENDING_CONTEXTS:
            raise JitError("busy", "too many sudo commands wait for approval; try again")
        req = self.requests.create_command(asked.request.uid, d.approval_role, d.subject,
                                           f"sudo {d.line}")  # raw: shown escaped
        self.waiting[req["id"]] = asked
        return req

    def approved(self, request_id: str) -> Decision:
        """Use an approval once: the command as decided, if its approval is consumed
        now and the user still holds a rule for it (a grant may have ended meanwhile)."""
        asked = self.waiting.pop(request_id, None)
        if asked is None:
            raise JitError("not_found", f"no sudo command waits on request {request_id}")
        if not self.requests.consume_command(request_id, asked.decision.subject):
            raise JitError("denied", f"request {request_id} is no longer approved")
        return self._decide(asked.request, approved=True)

    def _runas(self, spec: str) -> RunasUser | None:
        """The runas account (a name, or #UID), looked up here so decide() stays pure."""
        account = self.core.accounts.account(spec)
        return None if account is None else RunasUser(
            account.name, account.uid, account.gid, account.home, account.shell,
            account.gids, account.group)

    def cancel(self, request_id: str) -> None:
        """The user gave up waiting (Ctrl-C): the request ends, unused."""
        asked = self.waiting.pop(request_id, None)
        if asked is not None:
            self.requests.cancel_command(request_id, asked.request.user)

    # passwords and timestamps (auth threads) --------------------------------------------------

    def fresh(self, key: tuple[int, str]) -> bool:
        with self._lock:
            return self._stamps.get(key, 0) > self.core.clock()

    def check_password(self, key: tuple[int, str], pid: str, user: str, password: str) -> bool:
        """PAM's verdict; a success starts the timestamp, a failure counts against the
        invocation's tries. Runs in an auth thread: pam_faildelay may sleep seconds."""
        ok = self.authenticate_password(user, password)
        now = self.core.clock()
        with self._lock:
            if len(self._stamps) + len(self._tries) > MAX_REMEMBERED:
                self._forget_stale(now)
            if ok:
                self._stamps[key] = now + TIMESTAMP_SECONDS
                self._tries.pop((key[0], pid), None)
            else:
                count, _ = self._tries.get((key[0], pid), (0, now))
                self._tries[(key[0], pid)] = (count + 1, now)
        return ok

    def _forget_stale(self, now: float) -> None:
        """Expired timestamps, and tries of sudo invocations long over: memory stays
        bounded however many terminals and sudo processes come and go."""
        self._stamps = {k: t for k, t in self._stamps.items() if t > now}
        self._tries = {k: v for k, v in self._tries.items()
                       if v[1] > now - TIMESTAMP_SECONDS}

    def tries_left(self, uid: int, pid: str) -> int:
        with self._lock:
            return MAX_TRIES - self._tries.get((uid, pid), (0, 0.0))[0]

    def forget(self, key: tuple[int, str]) -> None:
        """`sudo -k`."""
        with self._lock:
            self._stamps.pop(key, None)
