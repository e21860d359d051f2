"""`jit-hostd`: the daemon, and the one-shot modes systemd units and packaging call.

    jit-hostd [--root DIR] [--foreground]      serve on the socket (socket-activated or not)
    jit-hostd --reconcile                      expire what fell due, then exit (at boot)
    jit-hostd --expire GRANT_ID                ask the running daemon to expire a grant
    jit-hostd --revoke-all --reason TEXT       end every grant, offline (package removal)
    jit-hostd --ensure-host-key                create this host's issuer key if missing

A broken configuration does not stop expiry: hostd then serves with no roles, answers
every request that needs the policy with `config_error`, and keeps revoking on time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys

from . import config as config_mod
from .accounts import Accounts
from .approvals import HostSigner, Requests
from .core import Core
from .errors import JitError
from .events import Events
from .hostmatch import read_facts
from .keys import generate_ed25519, load_private
from .notify import Notifier
from .paths import Paths
from .protocol import MAX_LINE, request
from .server import Server
from .store import Store
from .timers import InProcessTimers

log = logging.getLogger("jit-hostd")
SD_LISTEN_FDS_START = 3


def ensure_host_key(paths: Paths) -> bool:
    """Create the host issuer key (0600) if missing; True if one was made."""
    if paths.host_key.exists():
        return False
    paths.host_key.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with contextlib.suppress(FileExistsError):
        generate_ed25519(paths.host_key)
        return True
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
    core = Core(cfg, Store(paths.state_db), Accounts(paths), events, host)
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


async def _timers(paths: Paths, server_ref: list[Server], core: Core):
    def on_due(grant_id: str) -> None:
        server_ref[0].on_timer(grant_id)

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
    server_ref: list[Server] = []
    timers = await _timers(paths, server_ref, core)
    server = Server(core, timers, error, build_requests(paths, core))
    server_ref.append(server)
    live = core.reconcile()
    await server.arm_missing(live)
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

    sweep_task = asyncio.create_task(sweeper())
    async with srv:
        await stop.wait()
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


def _ask_expire(paths: Paths, grant_id: str) -> int:
    """The expiry timer's service: ask hostd (socket activation starts it if down)."""
    from .client import Client

    try:
        answer = Client(paths.socket, timeout=30).call(request("grant.expire", id=grant_id))
    except JitError as exc:
        print(f"jit-hostd: {exc.message}", file=sys.stderr)
        return 1
    print(f"jit-hostd: grant {grant_id}: {answer.get('message')}")
    return 0 if answer.get("ok") else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jit-hostd", description="jitaccess host daemon")
    parser.add_argument("--root", help="sandbox root (tests and demos only)")
    parser.add_argument("--foreground", action="store_true", help="stay in the foreground")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reconcile", action="store_true", help="expire what is due, then exit")
    mode.add_argument("--expire", metavar="GRANT_ID", help="ask hostd to expire a grant")
    mode.add_argument("--revoke-all", action="store_true", help="end every grant (offline)")
    mode.add_argument("--ensure-host-key", action="store_true", help="create the host key")
    parser.add_argument("--reason", default="revoked by administrator")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="jit-hostd: %(message)s")
    os.umask(0o022)
    if os.geteuid() != 0 and not args.expire:
        print("jit-hostd: must run as root", file=sys.stderr)
        return 2
    paths = Paths.for_root(args.root)
    if args.ensure_host_key:
        print("jit-hostd: host issuer key " + ("created" if ensure_host_key(paths) else "present"))
        return 0
    if args.expire:
        return _ask_expire(paths, args.expire)
    if args.reconcile or args.revoke_all:
        core, _ = build_core(paths)
        if args.revoke_all:
            ended = core.revoke_all(args.reason)
            print(f"jit-hostd: revoked {len(ended)} grants")
        live = core.reconcile()
        left = [m for m in core.store.unfinished() if m["grant_state"] != "active"]
        core.store.close()
        if left:  # prerm must not carry on as if nothing temporary were left behind
            for m in left:
                print(f"jit-hostd: could not remove {m['user']} from {m['grp']} "
                      f"(grant {m['grant_id']})", file=sys.stderr)
            return 1
        print(f"jit-hostd: reconciled; {len(live)} live grants")
        return 0
    return asyncio.run(serve(paths))


if __name__ == "__main__":
    sys.exit(main())
