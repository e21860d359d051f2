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
import sys
from collections.abc import Callable

from hostd.core.lifecycle import Core
from hostd.core.requests import HostSigner, Requests
from hostd.errors import JitError
from hostd.events import Events
from hostd.paths import Paths
from hostd.policy import config as config_mod
from hostd.policy.hostmatch import read_facts
from hostd.policy.keys import generate_ed25519, load_private, write_public
from hostd.protocol import MAX_LINE
from hostd.server import residue
from hostd.server.connections import Server
from hostd.server.notify import Notifier
from hostd.server.ttys import Terminals
from hostd.state.accounts import accounts_for
from hostd.state.store import Store
from hostd.state.timers import InProcessTimers

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
    write_public(paths.host_key, load_private(paths.host_key, paths.root))
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
    if not error:
        write_login_gate(paths, cfg)
    host = read_facts(paths.hostname_file, paths.machine_id, paths.sandboxed)
    core = Core(cfg, Store(paths.state_db), accounts_for(paths), events, host)
    core.boot_id = residue.boot_id(paths.proc)
    return core, error


def write_login_gate(paths: Paths, cfg: config_mod.Config) -> None:
    """The [login] rules pam_jit applies when hostd cannot answer (hostd/policy/logins.py),
    written whenever a policy loads; a broken policy keeps the last good file."""
    from hostd.policy.logins import write_gate

    try:
        write_gate(paths.login_gate, cfg)
    except OSError as exc:
        log.warning("could not write %s: %s", paths.login_gate, exc)


def build_requests(paths: Paths, core: Core) -> Requests:
    """Requests signed by this host's key. An unusable key disables requests, with the
    reason in every refusal; it never stops hostd, which must keep expiring grants."""
    signer, error = None, ""
    try:
        selector = (f"machine-id:{core.host.machine_id}" if core.host.machine_id
                    else core.host.hostname)
        signer = HostSigner(load_private(paths.host_key, paths.root), selector)
    except (OSError, ValueError, TypeError, JitError) as exc:
        error = f"host issuer key {paths.host_key} unusable: {_why(exc)}"
        core.events.emit("config_error", error, reason=error)
    return Requests(core, signer, error)


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, JitError) else str(exc)


def build_notifier(paths: Paths, core: Core) -> Notifier:
    """Approvers told on their terminals and through the webhook."""
    return Notifier(core.events, paths.utmp, core.accounts.uid_of,
                    lambda: core.config.notify_webhook, core.host.hostname)


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


def _terminals(paths: Paths, core: Core, server: Server, loop) -> Terminals | None:
    """terminal.sock, where pam_jit hands over session terminals (hostd/server/ttys.py);
    None when it cannot be bound: notices then take the utmp and /dev/pts paths only."""
    terminals = Terminals(paths.socket.parent / "terminal.sock", core.accounts.uid_of)
    try:
        terminals.start(loop)
    except OSError as exc:
        log.warning("cannot serve %s: %s", terminals.path, exc)
        return None
    if isinstance(server.notifier, Notifier):
        server.notifier.handed_over = terminals
    return terminals


async def _timers(paths: Paths, core: Core, on_due: Callable[[str], None]):
    if paths.sandboxed:
        return InProcessTimers(on_due)
    try:
        from hostd.state.systemd_timers import SystemdTimers

        return await SystemdTimers.connect()
    except Exception as exc:  # no bus: in-process timers and the sweep still expire on time
        core.events.emit("timer_failed", f"systemd timers unavailable, using in-process "
                         f"timers: {exc}")
        return InProcessTimers(on_due)


async def _logind(paths: Paths, core: Core):
    """Server.logind: logind on a system-bus connection of its own (hostd/state/logind.py);
    None in a sandbox or without a bus: sessions are then registered by pid only."""
    if paths.sandboxed:
        return None
    try:
        from hostd.state.logind import Logind

        return await Logind.connect()
    except Exception as exc:
        log.warning("logind unavailable, login sessions are registered by pid only: %s", exc)
        return None


# The worker thread holds the GIL while it parses group files; by default a waiting
# thread gets it back only after 5 ms, which is the whole latency budget of a quick
# call. 0.1 ms lets the loop answer promptly (benchmarks/loop_latency.py: p99 under
# changes 5.5 ms at 0.5 ms, 3.3-4.1 ms at 0.1 ms).
GIL_SWITCH_INTERVAL = 0.0001


async def serve(paths: Paths) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    try:
        ensure_host_key(paths)
    except (OSError, ValueError, TypeError, JitError) as exc:  # requests off; expiry goes on
        log.warning("host issuer key %s: %s", paths.host_key, _why(exc))
    core, error = build_core(paths)
    # in-process timers call back into the server, which is made just below
    timers = await _timers(paths, core, lambda grant_id: server.on_timer(grant_id))
    server = Server(core, timers, error, build_requests(paths, core),
                    build_notifier(paths, core), Store.reader(paths.state_db))
    server.proc_root, server.dev_root = paths.proc, paths.dev  # sandbox: DIR/proc, DIR/dev
    server.logind = await _logind(paths, core)
    server.sessions_dir = paths.sessions_dir
    pending = core.pending_endings()  # a previous run ended these and was killed first
    if not error:
        core.end_unsupported()
    live = core.reconcile()
    server.requests.finish_interrupted()
    await server.carry_out(pending + core.take_effects())
    core.events.emit("hostd_started", f"jit-hostd started, {len(live)} live grants",
                     reason=error or None)

    sock = _listening_socket(paths)
    srv = await asyncio.start_unix_server(server.handle, sock=sock, limit=MAX_LINE + 1)
    loop = asyncio.get_running_loop()
    server.terminals = _terminals(paths, core, server, loop)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(paths, server))
    _notify("READY=1")

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(core.config.sweep_interval)
            try:
                await server.run(server.sweep)
            except Exception:
                log.exception("sweep failed")
            try:  # retention of recordings: file I/O in the recording pool, not the worker
                await server.sweep_recordings()
            except Exception:
                log.exception("recording retention failed")

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
    server.close()
    if server.terminals is not None:
        server.terminals.close()
    if server.logind is not None:
        server.logind.close()
    server.reader.close()
    core.store.close()
    return 0


def _reload(paths: Paths, server: Server) -> None:
    """SIGHUP: re-read the policy (off the loop: a configuration read touches files);
    a bad file keeps the old one and says why."""
    asyncio.get_running_loop().create_task(_reload_async(paths, server))


async def _reload_async(paths: Paths, server: Server) -> None:
    try:
        await server.run(_apply_reload, paths, server)
    except JitError as exc:
        server.core.events.emit("config_error", f"reload refused, keeping the previous "
                                f"configuration: {exc.message}", reason=exc.message)
    except Exception:
        log.exception("reload failed")


def _apply_reload(paths: Paths, server: Server) -> None:
    """In the worker: swap the policy, then end grants the new one no longer supports
    (a removed role or issuer), as revocations with reason "policy changed"."""
    server.core.config = config_mod.load(paths)
    server.config_error = ""
    write_login_gate(paths, server.core.config)
    server.core.end_unsupported()


def _notify(state: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon

        daemon.notify(state)
    except (ImportError, OSError):
        pass


