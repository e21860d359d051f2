"""`jit grant verify`: would this host accept a grant token, and if not, why.

The token is checked offline against the policy on disk (no daemon needed, as for an
issuer testing a key); then jit-hostd is asked (`grant.check`), since the revocation
lists in force are its own state (root-only) and activation would consult them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from hostd.cli.common import call, out
from hostd.errors import JitError
from hostd.events import escape
from hostd.paths import client_paths
from hostd.policy import config as config_mod
from hostd.policy import grants as grants_mod
from hostd.policy.durations import rfc3339
from hostd.state.hostfacts import read_facts


def add_arguments(command, parent, read_token: Callable[[str], str], token_help: str) -> None:
    """Wire `grant verify` under `parent` (main's `grant` subcommands)."""
    c = command("verify", lambda args: cmd_grant_verify(args, read_token),
                "check a grant against this host's config and revocation lists", parent)
    c.add_argument("token", metavar="TOKEN|-", help=token_help)


def _offline_core_inputs():
    paths = client_paths()
    cfg = config_mod.load(paths)
    host = read_facts(paths.hostname_file, paths.machine_id, paths.sandboxed)
    return cfg, host


def cmd_grant_verify(args: argparse.Namespace, read_token: Callable[[str], str]) -> int:
    token = read_token(args.token)
    cfg, host = _offline_core_inputs()
    g = grants_mod.verify(token, cfg, host, time.time())
    checked = _revocations_checked(token)
    info = {"jti": g.jti, "issuer": g.issuer, "user": g.user, "role": g.role,
            "groups": list(g.groups), "not_before": rfc3339(g.not_before),
            "not_after": rfc3339(g.exp), "exp": g.exp, "hosts": list(g.hosts),
            "reason": g.reason, "ticket": g.ticket, "approved_by": list(g.approved_by)}
    text = (f"valid: {g.user} may hold role {g.role} (groups {', '.join(g.groups) or '-'}) "
            f"until {rfc3339(g.exp)}, issued by {g.issuer}"
            + (f"\nstarts {rfc3339(g.not_before)}: hostd keeps it pending until then"
               if g.not_before > time.time() else "")
            + (f"\nreason: {escape(g.reason)}" if g.reason else "")
            + ("" if checked else "\nrevocation lists not checked: jit-hostd is not "
                                  "reachable (they are its state)"))
    return out(args, {"ok": True, "code": "ok", "message": "grant is valid on this host",
                       "grant": info, "revocations_checked": checked}, text)


def _revocations_checked(token: str) -> bool:
    """hostd's word on the grant (grant.check): its revocation lists are root's state,
    so the offline check cannot read them. False when hostd cannot be reached; a
    refusal (revoked) is raised as the command's error."""
    try:
        return bool(call("grant.check", token=token).get("revocations_checked"))
    except JitError as exc:
        if exc.code in ("unreachable", "timeout", "config_error"):
            return False
        raise


