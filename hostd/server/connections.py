"""The socket server: adapts lines on /run/jit/hostd.sock to the op handlers.

Identity comes from SO_PEERCRED only, as a `Caller` (uid, pid, gid) every handler
receives. The op table (protocol.OPS) says what each op takes, who may call it and its
kind; dispatch checks that once, centrally, then calls the handler registered for the
op (hostd/server/ops.py). `Server` composes the handler families (grants, access,
sudo, pam, record) with what they need, each as a constructor argument: the ordered
worker (hostd/server/worker.py), the read-only store, the accounts cache, the session
ending and the effects.

Nothing slow runs on the event loop. Every call that changes state (gpasswd, SQLite
writes) runs in the ordered worker; status and listings read a separate read-only
SQLite connection on the loop; names and groups come from the accounts cache, whose
misses run in a pool of their own. What a change says must follow (timers, notices,
endings) is carried out in the background (hostd/server/effects.py).

Connections are bounded per kind: a quick call waits at most IDLE_TIMEOUT for its next
request and counts against MAX_QUICK_PER_UID; a connection in a `wait` or `stream` op
counts against the long-lived caps instead and has no idle timeout. Root is never
refused for a per-uid cap, and part of the global limit is kept for it, so expiry
(`jit-hostd --expire`, as root) always gets through.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hostd.core.effects import Effect
from hostd.core.idp import IdpActivations
from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.core.sudo import Sudo
from hostd.errors import JitError
from hostd.paths import Paths
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
from hostd.server.effects import Effects
from hostd.server.grants import AccessOps, GrantOps
from hostd.server.idp import IdpOps
from hostd.server.ops import Caller, Handler, register
from hostd.server.pam import PamOps
from hostd.server.record import RecordOps
from hostd.server.reload import ReloadOps
from hostd.server.revocations import RevocationOps
from hostd.server.sessions import SessionEnding
from hostd.server.sudo import SudoOps
from hostd.server.watch import WatchOps
from hostd.server.worker import Worker
from hostd.state.accounts_cache import TTL, AccountsCache
from hostd.state.idpcache import IdpCache, IdpRefresh, sandbox_starter
from hostd.state.store import Store
from hostd.state.timers import ExpiryTimers

if TYPE_CHECKING:
    from hostd.server.setgid_walks import SetgidWalks
    from hostd.server.ttys import Terminals
    from hostd.state.logind import Logind

log = logging.getLogger("jit-hostd")

IDLE_TIMEOUT = 10.0
MAX_QUICK_PER_UID = 16  # quick calls a non-root uid may have open
MAX_QUICK = 128  # quick calls of all non-root uids together
MAX_LONG_PER_UID = 32  # waits and streams (approvals, recordings) of one non-root uid
MAX_LONG = 256  # ... of all non-root uids together
MAX_CONNECTIONS = 512  # everything, root included: the rest above is kept for root


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end, from the kernel. uid_t and gid_t
    are unsigned: a uid over 2**31 is a real user, not a negative number."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("iII"))
    return struct.unpack("iII", raw)


@dataclass
class Seat:
    """What a connection is counted as: in a wait or stream op, against the long caps."""

    long: bool = False


class Channel:
    """A stream op's two-way frames on its connection (one JSON object per line)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def recv(self, first: bytes = b"") -> dict | None:
        """The client's next frame, or None when it closed; bad_request on garbage.
        `first`: its first byte, already read (server/record.py's raw frames)."""
        try:
            line = first + await self.reader.readline()
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
        async with asyncio.timeout(IDLE_TIMEOUT):  # not wait_for: no task per answer
            await writer.drain()
        return True
    except (TimeoutError, ConnectionError, OSError):
        return False


class Server:
    """The handler families, composed; connections and dispatch."""

    def __init__(self, core: Core, timers: ExpiryTimers, *, config_error: str = "",
                 requests: Requests | None = None,
                 notifier: Callable[[str, dict, list[str]], object] | None = None,
                 reader: Store | None = None, logind: Logind | None = None,
                 paths: Paths | None = None, names_ttl: float = TTL,
                 idle_timeout: float | None = None,
                 setgid_walks: SetgidWalks | None = None,
                 terminals: Terminals | None = None,
                 idp_refresh: IdpRefresh | None = None) -> None:
        """`paths`: where /proc, /dev and the recordings are (DIR/... in a sandbox);
        `logind`: None in a sandbox or without a bus; `names_ttl`: how long the
        accounts cache keeps an answer (hostd/state/accounts_cache.py);
        `setgid_walks`: the walks for setgid files at a grant's end (service.py builds
        them; None: none, as in unit tests); `terminals`: the session terminals pam_jit
        handed over (hostd/server/ttys.py; None: notices take the utmp and /dev paths);
        `idp_refresh`: how a key refresh is started (service.py: over D-Bus; None: in a
        sandbox written down for the test, elsewhere refused)."""
        paths = paths or Paths.for_root(None)
        self.core = core
        self.idle_timeout = idle_timeout or IDLE_TIMEOUT  # sandbox: hostd/state/sandbox.py
        self.config_error = config_error
        self.requests = requests or Requests(core, None)
        self.reader = reader or core.store
        self.limits = Limits()
        # Notices go to a side thread; PAM authentication may sleep seconds
        # (pam_faildelay) on a wrong password; NSS look-ups may take seconds (sssd).
        self.side = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jit-notices")
        self.auth = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jit-auth")
        self.nss = ThreadPoolExecutor(max_workers=4, thread_name_prefix="jit-nss")
        self.names = AccountsCache(core.accounts, self.nss, names_ttl)
        self.worker = Worker(core, self.carry_out, after_job=self.names.invalidate)
        self.recordings = RecordOps(core, self.reader, paths.sessions_dir)
        self.setgid_walks, self.terminals = setgid_walks, terminals
        self.ending = SessionEnding(core, self.reader, self.worker, self.recordings,
                                    self.side, logind, paths.proc, paths.dev, setgid_walks,
                                    terminals)
        self.effects = Effects(core, timers, self.ending, notifier, self.side)
        self.sudo = Sudo(core, self.requests, reader=self.reader)
        self.reloaded = asyncio.Event()  # a policy loaded (service._sweeper waits on it)
        self.reload = ReloadOps(core, self.worker, paths, self._set_config_error)
        self.ops: dict[str, Handler] = {}
        self.pam = PamOps(core, self.reader, self.worker, self.names, logind, terminals)
        for family in (GrantOps(core, self.reader, self.worker, self.names,
                                lambda: self.config_error),
                       AccessOps(core, self.requests, self.reader, self.worker,
                                 self.effects.notices),
                       SudoOps(core, self.sudo, self.reader, self.worker, self.names,
                               self.auth, self.recordings, paths.proc, paths.dev),
                       self.pam,
                       self.reload,
                       RevocationOps(core, self.worker),
                       self.recordings,
                       _idp_ops(core, self.requests, self.worker, paths, idp_refresh),
                       WatchOps(core, self.recordings, self.names)):
            register(self.ops, family)

    def _set_config_error(self, error: str) -> None:
        """Called with "" whenever a policy loads: the sweeper then sweeps at once and
        sleeps the new policy's sweep_interval (not the rest of the old one's)."""
        self.config_error = error
        if not error:
            self.reloaded.set()

    async def carry_out(self, effects: list[Effect]) -> None:
        await self.effects.carry_out(effects)

    def close(self) -> None:
        self.worker.close()
        self.effects.close()
        self.ending.close()
        for pool in (self.side, self.auth, self.nss):
            pool.shutdown(wait=False, cancel_futures=True)
        self.recordings.close_recordings()

    # connection handling ----------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, gid = peer_credentials(writer.get_extra_info("socket"))
        except OSError:
            writer.close()
            return
        if not self.limits.admit(uid):
            await _send(writer, JitError("busy", "hostd is busy; try again").to_wire())
            writer.close()
            return
        seat = Seat()
        try:
            await self._serve(Caller(uid, pid, gid), seat, reader, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            self.limits.release(uid, seat.long)
            writer.close()

    async def _serve(self, caller: Caller, seat: Seat, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        """Requests in turn until the client closes, idles out, or a stream ends."""
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):  # no task per request
                    line = await reader.readline()
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
            op, answer = await self.dispatch(line, caller, Channel(reader, writer), seat)
            if not await _send(writer, answer) or (op is not None and op.kind == STREAM):
                return

    async def dispatch(self, line: bytes, caller: Caller, channel: Channel | None = None,
                       seat: Seat | None = None) -> tuple[Op | None, dict]:
        """Decode, check centrally, call; every failure becomes a named error answer."""
        try:
            name, args = decode(line)
        except JitError as exc:
            return None, exc.to_wire()
        return OPS[name], await self.call(name, args, caller, channel, seat)

    async def call(self, name: str, args: dict, caller: Caller, channel: Channel | None = None,
                   seat: Seat | None = None) -> dict:
        """A decoded request, checked (who may, policy loaded) and handled; the answer.
        The quick path (hostd/server/quick.py) calls it for `call` ops directly."""
        op = OPS[name]
        seat = seat or Seat()
        try:
            if op.access == ROOT and caller.uid != 0:
                raise JitError("permission_denied", f"only root may ask for {name}")
            if self.config_error and not op.without_policy:
                raise JitError("config_error", self.config_error)
            handler = self.ops[name]
            if op.kind == CALL:
                return await handler(args, caller)
            if not self.limits.to_long(caller.uid):
                raise JitError("busy", "too many waiting connections; try again")
            seat.long = True
            try:
                return await handler(args, caller, channel)
            finally:
                if op.kind != STREAM:
                    self.limits.to_quick(caller.uid)
                    seat.long = False
        except JitError as exc:
            return exc.to_wire()
        except Exception:  # a bug: never a traceback to the client, always one in the log
            log.exception("internal error handling a request")
            return {"ok": False, "code": "internal", "message": "internal error in hostd"}

    # the worker's jobs that are not a client's ------------------------------------------

    def sweep(self) -> None:
        """Backstop: expire due grants and unanswered requests (in the worker); close
        login sessions whose process is gone; the WAL checkpoint the login registry's
        commits on the loop skipped (Store.at_once)."""
        self.core.sweep()
        if self.core.revocations is not None:  # stale lists, entries coming into force
            self.core.revocations.sweep()
        self.requests.expire_due()
        self.pam.sweep_gone()
        self.core.store.checkpoint()

    def on_timer(self, grant_id: str) -> None:
        """In-process timer fired: ask the worker to expire (the core re-arms if early)."""
        asyncio.get_running_loop().create_task(self._expire_quietly(grant_id))

    async def _expire_quietly(self, grant_id: str) -> None:
        try:
            await self.worker.run(self.core.expire, grant_id)
        except Exception:
            log.exception("expiry of %s failed; the sweep retries", grant_id)


def _idp_ops(core: Core, requests: Requests, worker: Worker, paths: Paths,
             refresh: IdpRefresh | None) -> IdpOps:
    """idp.activate and idp.roles over the key cache under `paths` (hostd/core/idp.py)."""
    cache = IdpCache(paths.idp_dir, core.clock, trusted_from=paths.root)
    if refresh is None:
        refresh = IdpRefresh(sandbox_starter(paths.socket.parent) if paths.sandboxed
                             else _no_systemd)
    return IdpOps(IdpActivations(core, requests, cache), worker, refresh)


async def _no_systemd(unit: str) -> None:
    raise RuntimeError(f"cannot start {unit}: hostd has no system bus connection")
