"""`jit-hostd`: the daemon, and the one-shot modes systemd units and packaging call.

    jit-hostd [--root DIR] [--foreground]      serve on the socket (socket-activated or not)
    jit-hostd --reconcile                      expire what fell due, then exit (at boot)
    jit-hostd --expire GRANT_ID                ask the running daemon to expire a grant
    jit-hostd --revoke-all --reason TEXT       end every grant, offline (package removal)
    jit-hostd --ensure-host-key                create this host's issuer key if missing
    jit-hostd --setgid-walk                    clear setgid residue of ended grants (its unit)
    jit-hostd --webhook-send                   post the queued webhook notices (its unit)

A broken configuration does not stop expiry: hostd then serves with no roles, answers
every request that needs the policy with `config_error`, and keeps revoking on time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time

from hostd.errors import JitError
from hostd.paths import Paths
from hostd.protocol import request

EXPIRE_TRIES = 8  # on `busy`: waits of 0.1, 0.2, 0.4 ... 2 s, about 8 s in all


def _ask_expire(paths: Paths, grant_id: str) -> int:
    """The expiry timer's service: ask hostd (socket activation starts it if down).
    Many grants can end in the same second; a `busy` answer is retried with backoff
    rather than left to the next sweep."""
    from hostd.client import Client

    for attempt in range(EXPIRE_TRIES):
        try:
            answer = Client(paths.socket, timeout=30).call(request("grant.expire", id=grant_id))
        except JitError as exc:
            print(f"jit-hostd: {exc.message}", file=sys.stderr)
            return 1
        if answer.get("code") != "busy" or attempt + 1 == EXPIRE_TRIES:
            break
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
    print(f"jit-hostd: grant {grant_id}: {answer.get('message')}")
    return 0 if answer.get("ok") else 1


def build_parser() -> argparse.ArgumentParser:
    """jit-hostd's options (jit-hostd(8) names the same ones: tests/unit/test_cli_help.py)."""
    parser = argparse.ArgumentParser(prog="jit-hostd", description="jitaccess host daemon")
    parser.add_argument("--root", metavar="DIR", help="sandbox root (tests and demos only; "
                        "only then are the test knobs in DIR/etc/jit/test-knobs.json read)")
    parser.add_argument("--foreground", action="store_true", help="stay in the foreground")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--reconcile", action="store_true", help="expire what is due, then exit")
    mode.add_argument("--expire", metavar="GRANT_ID", help="ask hostd to expire a grant")
    mode.add_argument("--revoke-all", action="store_true", help="end every grant (offline)")
    mode.add_argument("--ensure-host-key", action="store_true", help="create the host key")
    mode.add_argument("--setgid-walk", action="store_true",  # residue: setgid_walks.py
                      help="clear setgid bits ended group grants left (jit-setgid-walk.service)")
    mode.add_argument("--webhook-send", action="store_true",  # hostd/server/webhook.py
                      help="post the queued webhook notices (jit-webhook.service)")
    parser.add_argument("--reason", metavar="TEXT", default="revoked by administrator",
                        help="with --revoke-all: why, logged with each revocation")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="jit-hostd: %(message)s")
    os.umask(0o022)
    if os.geteuid() != 0 and not args.expire:
        print("jit-hostd: must run as root", file=sys.stderr)
        return 2
    paths = Paths.for_root(args.root)
    if args.expire:  # on the revocation path: only the light client modules are loaded
        return _ask_expire(paths, args.expire)
    if args.webhook_send:  # the only mode that uses the network: hostd/server/webhook.py
        from hostd.server import webhook

        return webhook.main(paths)
    from hostd.server import service

    if args.ensure_host_key:
        made = service.ensure_host_key(paths)
        print("jit-hostd: host issuer key " + ("created" if made else "present"))
        return 0
    if args.setgid_walk:  # residue: hostd/server/setgid_walks.py
        return service.setgid_walk(paths)
    if args.reconcile or args.revoke_all:
        core, _ = service.build_core(paths)
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
    return asyncio.run(service.serve(paths))


if __name__ == "__main__":
    sys.exit(main())
