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

import os
import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.errors import JitError
from hostd.policy.config import Config
from hostd.policy.guardrails import FileId, programs
from hostd.policy.sudo import Decision, RunasUser, SudoRequest, decide, listing, resolve, sources
from hostd.state import pamauth
from hostd.state.accounts import Account
from hostd.state.pamauth import Verdict

PAM_SERVICE = "jit-sudo"
TIMESTAMP_SECONDS = 300  # sudoers' timestamp_timeout: 5 minutes
MAX_TRIES = 3  # sudoers' passwd_tries
MAX_PENDING_CONTEXTS = 1024
MAX_REMEMBERED = 4096  # timestamps and try counts held before stale ones are dropped
MAX_EXECS = 1024  # approved recorded commands whose exec is awaited (recordings.MAX_TOKENS)
EXEC_TTL = 60  # seconds an approved recorded command's exec is awaited (the token's TTL)


def pam_authenticate(user: str, password: str) -> Verdict:
    """PAM's verdict on the password (auth and account stacks of `jit-sudo`), with the
    fail delay libpam asked for handed back instead of slept (state/pamauth.py)."""
    return pamauth.authenticate(PAM_SERVICE, user, password)


@dataclass(frozen=True)
class Asked:
    """One sudo invocation, as hostd understood it."""

    request: SudoRequest
    decision: Decision


StampKey = tuple


def start_time(proc: Path, pid: str) -> int | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat field 22): with
    the pid, it names one process for good, as sudoers' timestamps use it."""
    if not pid.isdigit() or pid == "0":
        return None
    try:
        stat = (proc / pid / "stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name may hold spaces and ')'
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def tty_device(dev: Path, tty: str) -> int | None:
    """The terminal's device number (st_rdev), or None if it cannot be stat'ed."""
    if not tty.startswith("/dev/") or "/../" in tty:
        return None
    try:
        return os.stat(dev / tty[len("/dev/"):]).st_rdev
    except OSError:
        return None


def stamp_key(req: SudoRequest, proc: Path = Path("/proc"),
              dev: Path = Path("/dev")) -> StampKey | None:
    """sudoers' timestamp_type=tty: with a terminal, the user, the terminal's device
    number, the session id and the session leader's start time, so a new session that
    gets the same /dev/pts/N (or the same sid later) starts without one; without a
    terminal, the parent process and its start time. None (no timestamp kept or used)
    when the session or parent cannot be identified. Gathered where the request is
    handled: sudo's user_info gives sid and ppid, /proc and /dev the rest."""
    if req.tty:
        start = start_time(proc, req.sid)
        if start is None:
            return None
        rdev = tty_device(dev, req.tty)
        return (req.uid, "tty", req.tty if rdev is None else rdev, int(req.sid), start)
    start = start_time(proc, req.ppid)
    return None if start is None else (req.uid, "ppid", int(req.ppid), start)


def runas_user(account: Account | None) -> RunasUser | None:
    """The runas account as the pure decision takes it."""
    return None if account is None else RunasUser(
        account.name, account.uid, account.gid, account.home, account.shell,
        account.gids, account.group)


def identify(paths) -> dict[str, FileId]:
    """Each path's file (realpath, device, inode), for comparing commands as sudoers
    does; a path that is not there is left out (then only its name can match)."""
    out: dict[str, FileId] = {}
    for path in paths:
        try:
            st = os.stat(path)
            out[path] = FileId(os.path.realpath(path), st.st_dev, st.st_ino)
        except (OSError, ValueError):
            continue
    return out


def program_files(req: SudoRequest, runas: RunasUser | None, config: Config,
                  which) -> dict[str, FileId]:
    """The I/O half of a decision's canonical command: the program as the decision will
    resolve it (the login shell for -i), and every program guardrail's file."""
    paths = list(programs(config))
    if req.login_shell and runas is not None:
        paths.append(runas.shell)
    elif req.argv and not req.sudoedit:
        found = resolve(req.argv[0], req.cwd or "/", which)
        if found:
            paths.append(found)
    return identify(paths)


class Approvals:
    """sudo's approval state, in one place: the invocations that wait for an approver
    (request id -> Asked; the worker adds and takes, sudo.wait reads on the loop), and
    the approved commands whose recorder has yet to exec them ((uid, sudo's pid) ->
    (command line, when); that exec comes back as an intercepted sudo.check and must
    not need a second approval)."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[str, Asked] = {}
        self._execs: dict[tuple[int, str], tuple[str, float]] = {}

    def wait(self, request_id: str, asked: Asked) -> None:
        with self._lock:
            self._waiting[request_id] = asked

    def full(self) -> bool:
        with self._lock:
            return len(self._waiting) >= MAX_PENDING_CONTEXTS

    def waiting_for(self, request_id: str) -> Asked | None:
        with self._lock:
            return self._waiting.get(request_id)

    def take(self, request_id: str) -> Asked | None:
        with self._lock:
            return self._waiting.pop(request_id, None)

    def expect_exec(self, req: SudoRequest, line: str) -> None:
        """An approver let `line` run once, recorded: its recorder's exec is coming."""
        with self._lock:
            if len(self._execs) >= MAX_EXECS:
                self._execs.pop(next(iter(self._execs)))
            self._execs[(req.uid, req.pid)] = (line, self.clock())

    def take_exec(self, req: SudoRequest) -> str | None:
        """For an intercepted check from the same user and sudo process within
        EXEC_TTL: the approved command line it may run once (then it is forgotten).
        Anything else the session runs meets the guardrails as usual."""
        if not req.intercepted:
            return None
        with self._lock:
            entry = self._execs.pop((req.uid, req.pid), None)
        if entry is None or entry[1] <= self.clock() - EXEC_TTL:
            return None
        return entry[0]


class Sudo:
    def __init__(self, core: Core, requests: Requests, authenticate=pam_authenticate,
                 which=shutil.which, reader=None) -> None:
        self.core = core
        self.reader = reader  # the server's read-only store: decisions need no worker
        self.requests = requests
        self.authenticate_password = authenticate
        self.which = which
        self._lock = threading.Lock()  # timestamps and tries: auth threads and the worker
        self._stamps: dict[StampKey, float] = {}
        self._tries: dict[tuple[int, str], tuple[int, float]] = {}  # (count, last try)
        self.approvals = Approvals(core.clock)

    # parsing, identifying, deciding ------------------------------------------------------

    @staticmethod
    def parse(args: dict, argv: list[str] | None = None) -> SudoRequest:
        """sudo's vectors, parsed once (pure: no look-up)."""
        return SudoRequest.from_wire(args["settings"], args["user_info"],
                                     args.get("argv", []) if argv is None else argv,
                                     args.get("env", []),
                                     intercepted=args.get("intercepted", False))

    @staticmethod
    def identify(req: SudoRequest, name: str | None) -> None:
        """user_info's user must be the account of its uid (`name`, looked up by uid)."""
        if name is None or name != req.user:
            raise JitError("bad_request", f"user_info names {req.user!r}, uid {req.uid} is "
                                          f"{name!r}")

    def decided(self, req: SudoRequest, groups: set[str] | frozenset[str],
                runas: Account | None, approved: bool = False, store=None) -> Asked:
        """The decision from what was gathered (the caller looked the accounts up);
        `store`: the loop's read-only connection, or None for the worker's own (a
        SQLite connection belongs to the thread that made it)."""
        grants = self.core.list_grants(req.uid, store=store, name=req.user)
        config, target = self.core.config, runas_user(runas)
        files = program_files(req, target, config, self.which)
        return Asked(req, decide(req, config, grants, set(groups), target, self.core.now(),
                                 self.core.host.hostname, self.which, approved=approved,
                                 files=files))

    def ask(self, args: dict, approved: bool = False) -> Asked:
        """Parse, identify, gather and decide in one thread, with this thread's own
        look-ups (`approved`: approve guardrails passed)."""
        req = self._request(args, args.get("argv", []))
        return self._ask(req, approved)

    def _ask(self, req: SudoRequest, approved: bool = False) -> Asked:
        accounts = self.core.accounts
        return self.decided(req, accounts.groups_of(req.user),
                            accounts.account(req.runas_user), approved)

    def _request(self, args: dict, argv: list[str]) -> SudoRequest:
        """Parsed, with user_info's user checked against its uid (this thread's look-up)."""
        req = self.parse(args, argv)
        self.identify(req, self.core.accounts.user_by_uid(req.uid))
        return req

    def _decide(self, req: SudoRequest) -> Decision:
        return self._ask(req).decision

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
        if self.approvals.full():
            raise JitError("busy", "too many sudo commands wait for approval; try again")
        req = self.requests.create_command(asked.request.uid, d.approval_role, d.subject,
                                           f"sudo {d.line}")  # raw: shown escaped
        self.approvals.wait(req["id"], asked)
        return req

    def approved(self, request_id: str) -> Decision:
        """Use an approval once: the command as decided, if its approval is consumed
        now and the user still holds a rule for it (a grant may have ended meanwhile)."""
        asked = self.approvals.take(request_id)
        if asked is None:
            raise JitError("not_found", f"no sudo command waits on request {request_id}")
        if not self.requests.consume_command(request_id, asked.decision.subject):
            raise JitError("denied", f"request {request_id} is no longer approved")
        return self._ask(asked.request, approved=True).decision

    def cancel(self, request_id: str) -> None:
        """The user gave up waiting (Ctrl-C): the request ends, unused."""
        asked = self.approvals.take(request_id)
        if asked is not None:
            self.requests.cancel_command(request_id, asked.request.user)

    # passwords and timestamps (auth threads) --------------------------------------------------

    def fresh(self, key: StampKey | None) -> bool:
        if key is None:
            return False
        with self._lock:
            return self._stamps.get(key, 0) > self.core.clock()

    def check_password(self, uid: int, key: StampKey | None, pid: str, user: str,
                       password: str) -> Verdict:
        """PAM's verdict; a success starts the timestamp (when the terminal's session
        is known), a failure counts against the invocation's tries. Runs in an auth
        thread; the fail delay is in the verdict, for the caller to apply off-thread.
        `authenticate` may answer a bool (no delay known)."""
        verdict = self.authenticate_password(user, password)
        if isinstance(verdict, bool):
            verdict = Verdict(verdict, 0.0)
        now = self.core.clock()
        with self._lock:
            if len(self._stamps) + len(self._tries) > MAX_REMEMBERED:
                self._forget_stale(now)
            if verdict.ok:
                if key is not None:
                    self._stamps[key] = now + TIMESTAMP_SECONDS
                self._tries.pop((uid, pid), None)
            else:
                count, _ = self._tries.get((uid, pid), (0, now))
                self._tries[(uid, pid)] = (count + 1, now)
        return verdict

    def _forget_stale(self, now: float) -> None:
        """Expired timestamps, and tries of sudo invocations long over: memory stays
        bounded however many terminals and sudo processes come and go."""
        self._stamps = {k: t for k, t in self._stamps.items() if t > now}
        self._tries = {k: v for k, v in self._tries.items()
                       if v[1] > now - TIMESTAMP_SECONDS}

    def tries_left(self, uid: int, pid: str) -> int:
        with self._lock:
            return MAX_TRIES - self._tries.get((uid, pid), (0, 0.0))[0]

    def forget(self, key: StampKey | None) -> None:
        """`sudo -k`."""
        if key is None:
            return
        with self._lock:
            self._stamps.pop(key, None)
