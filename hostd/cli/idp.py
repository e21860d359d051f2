"""`jit idp refresh [NAME]`, `jit idp status` and `jit revocations fetch`: the fetcher's
commands (hostd/fetch), run as root by jit-idp-refresh*.service and
jit-revocations-fetch.service, or by hand. They write /var/lib/jit (under JIT_ROOT in a
sandbox) and log events as hostd does; hostd itself never fetches anything."""

from __future__ import annotations

import argparse
import os
import time

from hostd.cli.common import out
from hostd.errors import JitError
from hostd.events import escape
from hostd.paths import client_paths
from hostd.policy.durations import format_duration, rfc3339

HELP_IDP = "identity-provider keys: refresh the cache, show it (root)"
HELP_REFRESH = "fetch OIDC issuers' discovery and keys into /var/lib/jit/idp (root)"
HELP_STATUS = "each OIDC issuer's cached keys: age, key ids, expiry, last error (root)"
HELP_FETCH = "pull the revocation lists of issuers with a [revocation] url (root)"


def _root(what: str) -> None:
    if os.geteuid() != 0:
        raise JitError("permission_denied", f"{what} writes or reads root's cache under "
                                            "/var/lib/jit: run it as root")


def _setup(what: str):
    from hostd.fetch.issuers import read_issuers
    from hostd.state.journal import Events

    _root(what)
    paths = client_paths()
    return paths, read_issuers(paths), Events(
        mirror=paths.events_mirror if paths.sandboxed else None)


def cmd_refresh(args: argparse.Namespace) -> int:
    from hostd.fetch.refresh import due, refresh_issuer

    paths, issuers, events = _setup("jit idp refresh")
    oidc = {n: i for n, i in issuers.items() if i.oidc}
    if args.name is not None and args.name not in oidc:
        raise JitError("usage", f"no OIDC issuer {args.name!r} in {paths.issuers_dir}")
    chosen = [oidc[args.name]] if args.name else list(oidc.values())
    if args.due:
        chosen = [i for i in chosen if due(paths, i, time.time())]
    results = [refresh_issuer(paths, i, events) for i in chosen]
    lines = [f"{r['issuer']}: {len(r['keys'])} key(s) {', '.join(r['keys'])}, fresh until "
             f"{rfc3339(r['expires_at'])}" if r["ok"] else
             f"{r['issuer']}: FAILED: {escape(r['error'])} (last good keys kept)"
             for r in results]
    failed = [r for r in results if not r["ok"]]
    answer = {"ok": not failed, "issuers": results}
    if failed:
        answer.update(code="fetch_failed", message="; ".join(
            f"{r['issuer']}: {r['error']}" for r in failed))
        if not args.json:
            print("\n".join(lines))
    return out(args, answer, "\n".join(lines) or ("no OIDC issuer is due" if args.due else
                                                   "no OIDC issuers configured"))


def _status_line(s: dict) -> str:
    if s["fetched_at"] is None:
        head = f"{s['issuer']}: never fetched"
    else:
        head = (f"{s['issuer']}: fetched {format_duration(s['age'])} ago, "
                f"{'EXPIRED' if s['expired'] else 'fresh'} until {rfc3339(s['expires_at'])}")
    keys = ", ".join(f"{escape(str(k['kid']))} ({','.join(k['algorithms'])})"
                     for k in s["keys"]) or "none"
    err = (f"\n  last error at {rfc3339(s['last_error_at'])}: {escape(s['last_error'])}"
           if s["last_error"] else "")
    return f"{head}\n  {s['url']}\n  keys: {keys}{err}"


def cmd_status(args: argparse.Namespace) -> int:
    from hostd.fetch.refresh import status

    paths, issuers, _ = _setup("jit idp status")
    now = time.time()
    found = [status(paths, i, now) for i in issuers.values() if i.oidc]
    return out(args, {"ok": True, "issuers": found},
               "\n".join(_status_line(s) for s in found) or "no OIDC issuers configured")


def cmd_revocations_fetch(args: argparse.Namespace) -> int:
    from hostd.fetch.revocations import due, pull

    paths, issuers, events = _setup("jit revocations fetch")
    now = time.time()
    chosen = [i for i in issuers.values() if i.revocation_url
              and (args.force or due(paths, i, now))]
    results = [pull(paths, i, events) for i in chosen]
    failed = [r for r in results if not r["ok"]]
    answer = {"ok": not failed, "issuers": results}
    if failed:
        answer.update(code="fetch_failed", message="; ".join(
            f"{r['issuer']}: {r['last_error']}" for r in failed))
    return out(args, answer, "\n".join(
        f"{r['issuer']}: {'new list' if r['changed'] else 'unchanged'}" for r in results)
        or "no revocation list is due")


def _subparsers(parser: argparse.ArgumentParser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def add_arguments(sub, command) -> None:
    """`idp refresh|status` and `revocations fetch` (joined to an existing `revocations`
    command when another module made one)."""
    idp = sub.add_parser("idp", help=HELP_IDP, description=HELP_IDP).add_subparsers(
        dest="idp_command", required=True, metavar="COMMAND")
    c = command("refresh", cmd_refresh, HELP_REFRESH, idp)
    c.add_argument("name", nargs="?", metavar="NAME",
                   help="one issuer's name (default: every OIDC issuer)")
    c.add_argument("--due", action="store_true",
                   help="only issuers never fetched, expired, or whose last fetch failed "
                        "(what jit-idp-refresh.timer runs)")
    command("status", cmd_status, HELP_STATUS, idp)
    if "revocations" in sub.choices:
        rev = _subparsers(sub.choices["revocations"])
    else:
        rev = sub.add_parser("revocations", help="revocation lists",
                             description="revocation lists").add_subparsers(
            dest="revocations_command", required=True, metavar="COMMAND")
    c = command("fetch", cmd_revocations_fetch, HELP_FETCH, rev)
    c.add_argument("--force", action="store_true",
                   help="pull every list now, not only those whose refresh is due")
