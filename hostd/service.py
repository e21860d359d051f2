"""Building and serving hostd: what `jit-hostd` runs as a daemon and in its offline
modes (reconcile, revoke-all, ensure-host-key). Kept apart from daemon.py so the
expiry timer's `jit-hostd --expire ID` starts without loading any of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable

from . import config as config_mod
from .accounts import accounts_for
from .approvals import HostSigner, Requests
from .core import Core
from .errors import JitError
from .events import Events
from .hostmatch import read_facts
from .keys import generate_ed25519, load_private, write_public
from .notify import Notifier
from .paths import Paths
from .protocol import MAX_LINE
from .server import Server
from .store import Store
from .timers import InProcessTimers

log = logging.getLogger("jit-hostd")
SD_LISTEN_FDS_START = 3


def ensure_host_key(paths: Paths) -> bool:
    """Create the host issuer key (0600) if missing, and (re)write its public half (0644)
    from it so the two always match; True if a key was made."""
    if not paths.host_key.exists():
        paths.host_key.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileExistsError):
            generate_ed25519(paths.host_key)  # writes the .pub too
            return True
    write_public(paths.host_key, load_private(paths.host_key))
    return False


def build_core(paths: Paths) -> tuple[Core, str]:
    """Everything the daemon and the offline modes share; returns (core, config error)."""
    for d in (paths.state_db.parent, paths.sessions_dir):
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = Events(mirror=paths.events_mirror if paths.sandboxed else None)
    error = ""
    try:
        cfg = config_mod.load(paths)
    except JitError as exc:
        error = exc.message
        cfg = config_mod.Config()
        events.emit("config_error", f"configuration error, serving no roles: {error}",
                    reason=error)
    host = read_facts(paths.hostname_file, paths.machine_id, paths.sandboxed)
    core = Core(cfg, Store(paths.state_db), accounts_for(paths), events, host)
    return core, error


def build_requests(paths: Paths, core: Core) -> Requests:
    """Requests signed by this host's key; approvers told on their terminals and webhook."""
    signer = None
    try:
        selector = (f"machine-id:{core.host.machine_id}" if core.host.machine_id
                    else core.host.hostname)
        signer = HostSigner(load_private(paths.host_key), selector)
    except (OSError, ValueError) as exc:
        core.events.emit("config_error", f"host issuer key unusable: {exc}")
    notifier = Notifier(core.events, paths.utmp, core.accounts.uid_of,
                        lambda: core.config.notify_webhook, core.host.hostname)
    return Requests(core, signer, notifier)


def _listening_socket(paths: Paths) -> socket.socket:
    """The socket systemd passed (LISTEN_FDS), else one we bind ourselves."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(var, None)
        return socket.socket(fileno=SD_LISTEN_FDS_START)
    paths.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with contextlib.suppress(FileNotFoundError):
        paths.socket.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(paths.socket))
    os.chmod(paths.socket, 0o666)  # noqa: S103 - any user may ask; identity is SO_PEERCRED
    sock.listen(128)
    return sock


async def _timers(paths: Paths, core: Core, on_due: Callable[[str], None]):
    if paths.sandboxed:
        return InProcessTimers(on_due)
    try:
        from .timers_systemd import SystemdTimers

        return await SystemdTimers.connect()
    except Exception as exc:  # no bus: in-process timers and the sweep still expire on time
        core.events.emit("timer_failed", f"systemd timers unavailable, using in-process "
                         f"timers: {exc}")
        return InProcessTimers(on_due)


async def serve(paths: Paths) -> int:
    ensure_host_key(paths)
    core, error = build_core(paths)
    # in-process timers call back into the server, which is made just below
    timers = await _timers(paths, core, lambda grant_id: server.on_timer(grant_id))
    server = Server(core, timers, error, build_requests(paths, core))
    live = core.reconcile()
    core.events.emit("hostd_started", f"jit-hostd started, {len(live)} live grants",
                     reason=error or None)

    sock = _listening_socket(paths)
    srv = await asyncio.start_unix_server(server.handle, sock=sock, limit=MAX_LINE + 1)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(paths, server))
    _notify("READY=1")

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(core.config.sweep_interval)
            try:
                server.sweep()
            except Exception:
                log.exception("sweep failed")

    # Timers are re-armed while hostd already serves, soonest expiry first: after a
    # reboot with thousands of live grants this takes seconds of D-Bus calls, and nobody
    # should wait for it. Correctness does not depend on it: an expired grant never
    # authorizes, and the sweep is the backstop.
    arm_task = asyncio.create_task(server.arm_missing(live))
    sweep_task = asyncio.create_task(sweeper())
    async with srv:
        await stop.wait()
    arm_task.cancel()
    sweep_task.cancel()
    _notify("STOPPING=1")
    core.store.close()
    return 0


def _reload(paths: Paths, server: Server) -> None:
    """SIGHUP: re-read the policy; a bad file keeps the old one and says why."""
    try:
        server.core.config = config_mod.load(paths)
        server.config_error = ""
    except JitError as exc:
        server.core.events.emit("config_error", f"reload refused, keeping the previous "
                                f"configuration: {exc.message}", reason=exc.message)


def _notify(state: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon

        daemon.notify(state)
    except (ImportError, OSError):
        pass


