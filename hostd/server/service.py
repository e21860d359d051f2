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
from hostd.core.revocations import Revocations
from hostd.errors import JitError
from hostd.paths import Paths
from hostd.policy import config as config_mod
from hostd.policy.keys import generate_ed25519, load_private, write_public
from hostd.server import residue, setgid_walks
from hostd.server.connections import Server
from hostd.server.notify import Notifier
from hostd.server.quick import Listener
from hostd.server.reload import write_login_gate
from hostd.server.spool import Spool
from hostd.server.ttys import Terminals
from hostd.state import sandbox
from hostd.state.accounts import Accounts, accounts_for
from hostd.state.hostfacts import read_facts
from hostd.state.idpcache import IdpRefresh, systemd_starter
from hostd.state.journal import Events
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


def build_core(paths: Paths, accounts: Accounts | None = None) -> tuple[Core, str]:
    """Everything the daemon and the offline modes share; returns (core, config error).
    `accounts`: the host's (accounts_for) unless given (benchmarks/loop_latency.py
    gives a slow directory)."""
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
    core = Core(cfg, Store(paths.state_db), accounts or accounts_for(paths), events, host,
                clock=sandbox.knobs(paths).clock)
    core.boot_id = residue.boot_id(paths.proc)
    core.revocations = Revocations(core, paths)  # the lists accepted before (the store)
    return core, error


def setgid_walk(paths: Paths) -> int:
    """`jit-hostd --setgid-walk`: the walks ended group grants owe (residue)."""
    from hostd.state.accounts import accounts_for

    events = Events(mirror=paths.events_mirror if paths.sandboxed else None)
    cleared = setgid_walks.walk_owed(paths.state_db, events, paths.proc,
                                     accounts_for(paths).is_member)
    print(f"jit-hostd: setgid walk: {cleared} setgid bits cleared")
    return 0


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


def build_notifier(paths: Paths, core: Core, terminals: Terminals | None = None) -> Notifier:
    """Approvers told on their terminals (those pam_jit handed over first) and through
    the webhook (queued for jit-webhook.service: hostd/server/spool.py)."""
    return Notifier(core.events, paths.utmp, core.accounts.uid_of,
                    lambda: core.config.notify_webhook, core.host.hostname, terminals,
                    Spool(paths.webhook_spool))


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


def _terminals(paths: Paths, core: Core) -> Terminals | None:
    """terminal.sock, where pam_jit hands over session terminals (hostd/server/ttys.py),
    served on the running loop; None when it cannot be bound: notices then take the utmp
    and /dev/pts paths only."""
    terminals = Terminals(paths.socket.parent / "terminal.sock", core.accounts.uid_of)
    try:
        paths.socket.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        terminals.start(asyncio.get_running_loop())
    except OSError as exc:
        log.warning("cannot serve %s: %s", terminals.path, exc)
        return None
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


def _idp_refresh(timers: object) -> IdpRefresh | None:
    """Key refreshes started over the bus the systemd timers hold; None (the server's
    default: written down in a sandbox, refused elsewhere) without one."""
    bus = getattr(timers, "bus", None)
    return IdpRefresh(systemd_starter(bus)) if bus is not None else None


async def _logind(paths: Paths, core: Core):
    """logind on a system-bus connection of its own (hostd/state/logind.py); None in a
    sandbox or without a bus: sessions are then registered by pid only."""
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


async def build_server(paths: Paths, accounts: Accounts | None = None
                       ) -> tuple[Server, list[tuple[str, int]]]:
    """The daemon, composed from `paths` in this one place, reconciled; with the live
    grants (id, exp), soonest first, whose timers serve() re-arms."""
    try:
        ensure_host_key(paths)
    except (OSError, ValueError, TypeError, JitError) as exc:  # requests off; expiry goes on
        log.warning("host issuer key %s: %s", paths.host_key, _why(exc))
    core, error = build_core(paths, accounts)
    # in-process timers call back into the server, which is made just below
    timers = await _timers(paths, core, lambda grant_id: server.on_timer(grant_id))
    terminals = _terminals(paths, core)
    server = Server(core, timers, config_error=error, requests=build_requests(paths, core),
                    idp_refresh=_idp_refresh(timers),
                    notifier=build_notifier(paths, core, terminals),
                    reader=Store.reader(paths.state_db), terminals=terminals,
                    logind=await _logind(paths, core), paths=paths,
                    idle_timeout=sandbox.knobs(paths).idle_timeout,
                    setgid_walks=setgid_walks.for_server(  # setgid files (setgid_walks.py)
                        paths.state_db, core.events, paths.proc,
                        paths.root if paths.sandboxed else None, core.accounts.is_member))
    pending = core.pending_endings()  # a previous run ended these and was killed first
    if not error:
        core.end_unsupported()
        core.revocations.reload()  # lists written while hostd was down
    live = core.reconcile()
    server.requests.finish_interrupted()
    await server.carry_out(pending + core.take_effects())
    core.events.emit("hostd_started", f"jit-hostd started, {len(live)} live grants",
                     reason=error or None)
    server.setgid_walks.kick()  # walks owed by a previous run
    if not paths.sandboxed:  # where setgid files could outlive a group grant
        setgid_walks.warn_exposed(core.events, paths.proc)
    return server, live


async def serve(paths: Paths, accounts: Accounts | None = None) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    server, live = await build_server(paths, accounts)
    listener = Listener(server, _listening_socket(paths))  # quick calls; streams (quick.py)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: _reload(paths, server))
    _notify("READY=1")
    # Timers are re-armed while hostd already serves, soonest expiry first: after a
    # reboot with thousands of live grants this takes seconds of D-Bus calls, and nobody
    # should wait for it. Correctness does not depend on it: an expired grant never
    # authorizes, and the sweep is the backstop.
    tasks = [asyncio.create_task(server.effects.arm_missing(live)),
             asyncio.create_task(_sweeper(server))]
    try:
        await stop.wait()
    finally:
        listener.close()
    for task in tasks:
        task.cancel()
    _notify("STOPPING=1")
    server.close()
    server.setgid_walks.close()
    if server.terminals is not None:
        server.terminals.close()
    if server.ending.logind is not None:
        server.ending.logind.close()
    server.reader.close()
    server.core.store.close()
    return 0


async def _sweeper(server: Server) -> None:
    while True:
        # a reloaded policy wakes it: its sweep_interval (and strict revocation lists,
        # stale ones) take effect now, not after the old interval ran out
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.reloaded.wait(), server.core.config.sweep_interval)
        server.reloaded.clear()
        try:
            await server.worker.run(server.sweep)
        except Exception:
            log.exception("sweep failed")
        server.setgid_walks.kick()  # a walk cut short or missed goes on
        try:  # retention of recordings: file I/O in the recording pool, not the worker
            await server.recordings.sweep_recordings()
        except Exception:
            log.exception("recording retention failed")


def _reload(paths: Paths, server: Server) -> None:
    """SIGHUP: re-read the policy (off the loop: a configuration read touches files);
    a bad file keeps the old one and says why."""
    asyncio.get_running_loop().create_task(_reload_async(paths, server))


async def _reload_async(paths: Paths, server: Server) -> None:
    try:
        await server.reload.reload()  # hostd/server/reload.py, shared with config.reload
    except Exception:
        log.exception("reload failed")


def _notify(state: str) -> None:
    if not os.environ.get("NOTIFY_SOCKET"):
        return
    try:
        from systemd import daemon

        daemon.notify(state)
    except (ImportError, OSError):
        pass


