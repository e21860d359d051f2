"""`jit`: the command line (DESIGN.md §12). A client library call per command plus
formatting; no policy here. Exit codes: 0 done, 1 refused, 2 usage/configuration,
3 hostd unreachable. `--json` prints one object {"ok", "code", "message", ...}.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hostd.cli import config_checks
from hostd.cli import files as cli_files
from hostd.cli import live as cli_live
from hostd.cli import mask as cli_mask
from hostd.cli import recordings as cli_recordings
from hostd.cli import scheduled as cli_scheduled
from hostd.cli import setup as cli_setup
from hostd.cli import verify as cli_verify
from hostd.cli.argv import parse
from hostd.cli.common import UsageError, call, out
from hostd.cli.extend import extend
from hostd.client import Client
from hostd.errors import JitError
from hostd.events import escape, framed, shown
from hostd.paths import client_paths
from hostd.policy import config as config_mod
from hostd.policy import grants as grants_mod
from hostd.policy import mounts
from hostd.policy.durations import format_duration, parse_duration, parse_time, rfc3339
from hostd.policy.keys import generate_ed25519
from hostd.protocol import request


def _read_token(arg: str) -> str:
    if arg != "-":
        return arg.strip()
    try:
        token = sys.stdin.read(grants_mod.MAX_TOKEN + 2)
    except UnicodeDecodeError:
        raise UsageError("standard input is not valid UTF-8") from None
    _require_utf8(token, "standard input")
    return token.strip()


def _require_utf8(value: str, label: str) -> None:
    """Python decodes undecodable argv bytes to lone surrogates (PEP 383); such a string
    cannot be sent as JSON text, stored or logged, so it is refused before anything else."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{label} is not valid UTF-8") from None


def _labels(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """dest -> the option or metavar the user typed, along the chosen (sub)command."""
    labels: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                labels.update(_labels(chosen, args))
        elif action.option_strings:
            labels[action.dest] = max(action.option_strings, key=len)
        else:
            labels[action.dest] = str(action.metavar or action.dest)
    return labels


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Every string argument must be valid UTF-8 (one check for all commands)."""
    labels = _labels(parser, args)
    for dest, value in vars(args).items():
        if isinstance(value, str):
            _require_utf8(value, labels.get(dest, dest))


# commands ---------------------------------------------------------------------------------

def cmd_keygen(args: argparse.Namespace) -> int:
    path = Path(args.out)
    cli_files.new_file(path)  # exists, or no such directory: one line, not a traceback
    try:
        key = generate_ed25519(path)
    except OSError as exc:
        raise cli_files.file_error(exc, "cannot write") from None
    return out(args, {"ok": True, "code": "ok", "message": "key written", "path": str(path),
                       "public_key": f"{path}.pub", "kid": key.kid},
                f"Ed25519 key written to {path} (0600); public key {path}.pub (kid {key.kid})")


def cmd_issue(args: argparse.Namespace) -> int:
    now = int(time.time())
    try:
        start = parse_time(args.not_before, now) if args.not_before else now
        if args.until:
            exp = parse_time(args.until, now)
        else:
            exp = start + parse_duration(args.for_ or "1h")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if exp <= start:
        raise UsageError("the grant must end after it starts")
    hosts = [h.strip() for h in (args.hosts or "*").split(",") if h.strip()]
    if not args.hosts and not args.json:
        print("jit: note: no --hosts given; the grant is valid on every host that trusts "
              f"issuer {args.issuer}", file=sys.stderr)
    key = cli_files.private_key(Path(args.key))
    token = grants_mod.issue(key, args.issuer, args.user, args.role, start, exp, hosts, now,
                             reason=args.reason or "", ticket=args.ticket or "")
    return out(args, {"ok": True, "code": "ok", "message": "grant issued", "token": token,
                       "not_before": rfc3339(start), "not_after": rfc3339(exp)}, token)


def cmd_activate(args: argparse.Namespace) -> int:
    answer = call("grant.activate", token=_read_token(args.token))
    g = answer["grant"]
    left = format_duration(g["exp"] - time.time())
    return out(args, answer, f"grant {g['id']} active: role {g['role']}, groups "
                              f"{', '.join(g['groups']) or '-'}, until {g['not_after']} "
                              f"({left} left)")


def _grants_table(grants: list[dict], all_users: bool) -> str:
    if not grants:
        return "no active grants"
    now = time.time()
    head = ["ID", *(["USER"] if all_users else []), "ROLE", "GROUPS", "ISSUER", "UNTIL (UTC)",
            "LEFT", "REASON"]
    rows = [[g["id"], *([g["user"]] if all_users else []), g["role"],
             ",".join(g["groups"]) or "-", g["issuer"], g["not_after"].replace("T", " "),
             format_duration(g["exp"] - now), escape(g.get("reason") or "")[:40]]
            for g in grants]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def cmd_grants(args: argparse.Namespace) -> int:
    if args.sessions:  # registered login sessions (hostd/cli/setup_pam.py)
        from hostd.cli import setup_pam as pamconf

        return pamconf.list_sessions(args, out, call)
    answer = call("grant.list", all=bool(args.all))
    return out(args, answer, _grants_table(answer["grants"], args.all))


def cmd_revoke(args: argparse.Namespace) -> int:
    answer = call("grant.revoke", id=args.grant_id, **({"reason": args.reason}
                                                         if args.reason else {}))
    return out(args, answer, f"grant {args.grant_id} revoked")


def cmd_check_config(args: argparse.Namespace) -> int:
    paths = client_paths()
    cfg = config_mod.load(paths)
    from hostd.state.accounts import accounts_for

    accounts = accounts_for(paths)
    from hostd.policy.sudo import rule_warnings

    warnings = [f"role {r.name}: group {g!r} does not exist on this host"
                for r in cfg.roles.values() for g in r.groups if not accounts.group_exists(g)]
    warnings += [f"{paths.config.name}: {w}" for w in rule_warnings(cfg)]
    exposed = _setgid_exposure(paths)  # residue: hostd/server/setgid.py
    if exposed:
        warnings.append(mounts.exposure_text(exposed))
    warnings += config_checks.warnings(cfg, accounts)  # hostd/cli/config_checks.py
    issuers = sorted({*cfg.issuers, *cfg.oidc})  # keys of ours, identity providers
    summary = (f"{paths.config}: ok: {len(cfg.roles)} roles, {len(issuers)} issuers "
               f"({', '.join(issuers) or 'none'})")
    if not getattr(args, "json", False):
        for w in warnings:
            print(f"jit: warning: {escape(w)}", file=sys.stderr)
    return out(args, {"ok": True, "code": "ok", "message": summary, "warnings": warnings,
                       "roles": sorted(cfg.roles), "issuers": issuers,
                       "setgid_mounts": [{"place": p, "mount": m} for p, m in exposed],
                       "max_ttl": {r.name: r.max_ttl for r in cfg.roles.values()},
                       "guardrails": [g.describe() for g in cfg.guardrails]},
                "\n".join([summary, *config_checks.max_ttls(cfg, paths.config),
                           *config_checks.guardrail_lines(cfg)]))


def _setgid_exposure(paths) -> list[tuple[str, str]]:
    """User-writable places whose mount honours set-id bits, from the mount table under
    the root's proc (a sandbox has none unless linked): where a setgid file made during
    a group grant outlives it until hostd clears it."""
    try:
        text = (paths.proc / "self" / "mountinfo").read_text(errors="surrogateescape")
    except OSError:
        return []
    return mounts.exposed(mounts.parse_mountinfo(text))


def _request_text(r: dict) -> str:
    """One request for `jit requests`: a line of hostd's words, then each piece of the
    requester's text quoted on a line of its own, cut to fit 80 columns (events.shown), so
    padding cannot wrap it into a line that looks like ours."""
    left = ""
    if r["state"] == "pending":
        exp = parse_time(r["expires"], time.time())
        left = f", answer within {format_duration(exp - time.time())}"
    votes = f"{len(r['approvals'])}/{r['needed']} approvals" if r["needed"] else "self-service"
    what = (f"a sudo command (role {shown(r['role'], 32)})" if r.get("kind") == "command"
            else f"role {shown(r['role'], 32)} for {format_duration(r['duration'])}"
            + cli_scheduled.window(r))
    lines = [f"{r['id']}  {shown(r['user'], 32)}  {what}  [{r['state']}, {votes}{left}]",
             framed("command" if r.get("kind") == "command" else "reason", r["reason"])]
    if r.get("ticket"):
        lines.append(framed("ticket", r["ticket"]))
    if r.get("grant_id"):
        lines.append(f"    grant: {r['grant_id']}")
    return "\n".join(lines)


def reached_text(terminals: int | None) -> str:
    """How many approver terminals hostd wrote the request to (None: it did not say)."""
    if terminals is None:
        return "approvers have been notified"
    if terminals == 0:
        return "no approver is logged in (no approver terminal reached)"
    return f"approvers notified on {terminals} terminal{'s' if terminals != 1 else ''}"


def cmd_request(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.for_)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    fields: dict = {"role": args.role, "duration": duration, "reason": args.reason}
    if args.ticket:
        fields["ticket"] = args.ticket
    fields.update(cli_scheduled.request_start(args))  # --start: a window for later
    answer = call("access.request", **fields)
    r = answer["request"]
    note = (f" (capped at the role's maximum, {format_duration(r['duration'])})"
            if r.get("capped") else "")
    if r.get("joined"):
        text = (f"request {r['id']} for role {r['role']} is already pending (asked "
                f"{r['created']}); this joins it. `jit requests --cancel {r['id']}` "
                "withdraws it")
    elif r["state"] == "approved":
        text = (f"request {r['id']}: self-service (break-glass) access granted{note}; "
                f"grant {r['grant_id']}. This is logged as a break-glass event.")
    else:
        text = (f"request {r['id']} created{note}: role {r['role']} for "
                f"{format_duration(r['duration'])}{cli_scheduled.window(r)}, "
                f"needs {r['needed']} approval(s); "
                f"{reached_text(answer.get('approver_terminals'))}")
    if not args.wait or r["state"] != "pending":
        return out(args, answer, text)
    if not args.json:
        print(text + "\nwaiting for a decision (Ctrl-C stops waiting; the request stays)...",
              flush=True)
    while True:
        answer = Client(client_paths().socket, timeout=90).call(
            request("access.wait", id=r["id"], timeout=60))
        if not answer.get("ok") or answer["request"]["state"] != "pending":
            break
    final = answer.get("request") or {}
    if answer.get("ok") and final["state"] != "approved":
        # failed: the approved grant could not be activated; its outcome names why
        code = {"expired": "request_expired", "denied": "denied", "cancelled": "denied"}.get(
            final["state"], final["outcome"].partition(":")[0] or "denied")
        answer = {"ok": False, "code": code, "request": final,
                  "message": f"request {r['id']} was {final['state']}"
                             + (f": {final['outcome']}" if final["outcome"] else "")}
    return out(args, answer, f"request {r['id']} approved; grant {final.get('grant_id')} "
                              + cli_scheduled.held_from(final))


def cmd_requests(args: argparse.Namespace) -> int:
    answer = call("access.list")
    reqs = answer["requests"]
    text = "\n".join(_request_text(r) for r in reqs) if reqs else "no requests"
    return out(args, answer, text)


def cmd_approve(args: argparse.Namespace) -> int:
    fields = {"comment": args.comment} if args.comment else {}
    answer = call("access.approve", id=args.request_id, **fields)
    r = answer["request"]
    if r["state"] != "approved":
        text = f"approval recorded: {len(r['approvals'])}/{r['needed']}"
    elif r.get("kind") == "command":
        text = f"request {r['id']} approved: {r['user']}'s waiting sudo command runs once"
    else:
        text = f"request {r['id']} approved; grant {r['grant_id']} is active for {r['user']}"
    return out(args, answer, text)


def cmd_deny(args: argparse.Namespace) -> int:
    answer = call("access.deny", id=args.request_id, reason=args.reason)
    return out(args, answer, f"request {args.request_id} denied")


def cmd_audit(args: argparse.Namespace) -> int:
    from hostd.audit import (
        journal as audit,  # hostd/audit/journal.py: reading, filters, --held-at, formats
    )

    try:
        return audit.run(args)
    except BrokenPipeError:
        raise
    except OSError as exc:  # the journal reader names no file: name the one given
        if exc.filename is None and (args.journal_file or args.journal_dir):
            exc.filename = ", ".join(args.journal_file or [args.journal_dir])
            if exc.errno in (errno.EBADMSG, errno.ENODATA, errno.EPROTONOSUPPORT):
                exc.strerror = f"not a journal file ({exc.strerror})"
        raise cli_files.file_error(exc) from None


# parser -----------------------------------------------------------------------------------

Command = Callable[..., argparse.ArgumentParser]  # adds one subcommand with --json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jit", description="just-in-time privileged access")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help_text: str, parent=sub) -> argparse.ArgumentParser:
        c = parent.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--json", action="store_true", help="print one JSON object")
        c.set_defaults(func=func)
        return c

    _issuing_commands(command, sub)
    _grant_commands(command)
    _request_commands(command)
    _host_commands(command, sub)
    cli_recordings.add_arguments(sub, command)  # sessions, replay, verify-recording
    cli_live.add_arguments(command)  # watch, terminate (issue 23)
    cli_mask.add_arguments(sub, command)  # mask test
    cli_scheduled.add_arguments(sub, _grants_table, _read_token)  # grants --pending, --start
    return p


def _issuing_commands(command: Command, sub) -> None:
    """Offline: keys, signing and checking grants."""
    c = command("keygen", cmd_keygen, "make an Ed25519 issuer key")
    c.add_argument("--out", required=True, metavar="PATH",
                   help="the private key to write (0600, must not exist yet); the public "
                        "key goes to PATH.pub")

    c = command("issue", cmd_issue, "sign a grant with an issuer key (prints the token)")
    c.add_argument("--key", required=True, metavar="PATH",
                   help="the issuer's private key (from jit keygen, or PEM)")
    c.add_argument("--issuer", required=True, metavar="NAME",
                   help="the issuer's name, as hosts trust it (issuers.d `name`)")
    c.add_argument("--user", required=True, metavar="USER",
                   help="who may use the grant (a login name on the host)")
    c.add_argument("--role", required=True, metavar="ROLE",
                   help="a role of the hosts' jit.toml")
    c.add_argument("--hosts", metavar="SEL,...",
                   help="where the grant is valid (default: every host that trusts the "
                        "issuer)")
    length = c.add_mutually_exclusive_group()
    length.add_argument("--for", dest="for_", metavar="DURATION",
                        help="how long the grant lasts from its start (default 1h)")
    length.add_argument("--until", metavar="TIME", help="when the grant ends, instead of --for")
    c.add_argument("--not-before", "--start", metavar="TIME",
                   help="when the grant starts (default now; later: hosts keep it pending)")
    c.add_argument("--reason", metavar="TEXT", help="why; shown on the host and logged")
    c.add_argument("--ticket", metavar="ID", help="a ticket reference, logged with the grant")

    grant = sub.add_parser("grant", help="offline grant tools",
                           description="offline grant tools").add_subparsers(
        dest="grant_command", required=True, metavar="COMMAND")
    cli_verify.add_arguments(command, grant, _read_token, GRANT_ARG)


GRANT_ARG = "the grant token (from jit issue), or - to read it from standard input"


def _grant_commands(command: Command) -> None:
    c = command("activate", cmd_activate, "activate a grant through hostd")
    c.add_argument("token", metavar="TOKEN|-", help=GRANT_ARG)

    c = command("grants", cmd_grants, "list active grants")
    c.add_argument("--all", action="store_true", help="every user's (root only)")
    c.add_argument("--sessions", action="store_true",
                   help="login sessions registered by pam_jit, with the grants they hold")

    c = command("revoke", cmd_revoke, "end a grant now")
    c.add_argument("grant_id", metavar="GRANT_ID", help="a grant id, as jit grants shows it")
    c.add_argument("--reason", metavar="TEXT", help="why; logged with the revocation")


def _request_commands(command: Command) -> None:
    c = command("request", cmd_request, "ask approvers for a role")
    c.add_argument("role", metavar="ROLE", help="a role of this host's jit.toml")
    c.add_argument("--for", dest="for_", required=True, metavar="DURATION",
                   help="how long you need it (capped at the role's max_ttl)")
    c.add_argument("--reason", required=True, metavar="TEXT",
                   help="why; shown to the approvers and logged")
    c.add_argument("--ticket", metavar="ID", help="a ticket reference, logged")
    c.add_argument("--wait", action="store_true",
                   help="block until decided (Ctrl-C stops waiting; the request stays)")

    command("requests", cmd_requests, "requests you made or may decide")

    c = command("approve", cmd_approve, "approve a request")
    c.add_argument("request_id", metavar="ID", help="a request id, as jit requests shows it")
    c.add_argument("--comment", metavar="TEXT", help="logged with the approval")

    c = command("deny", cmd_deny, "deny a request")
    c.add_argument("request_id", metavar="ID", help="a request id, as jit requests shows it")
    c.add_argument("--reason", required=True, metavar="TEXT",
                   help="why; told to the requester and logged")


def _host_commands(command: Command, sub) -> None:
    command("check-config", cmd_check_config, "check /etc/jit without a daemon")
    cli_setup.add_arguments(command, sub)  # hostd/cli/setup.py

    c = command("audit", cmd_audit, "read jitaccess events back from the journal (root, adm, "
                "systemd-journal)")
    c.add_argument("--since", metavar="TIME", help="events from TIME on (default: all)")
    c.add_argument("--until", metavar="TIME", help="events up to TIME (default: now)")
    c.add_argument("--user", action="append", metavar="USER[,USER]",
                   help="only events about these users (repeatable)")
    c.add_argument("--role", action="append", metavar="ROLE[,ROLE]",
                   help="only events about these roles (repeatable)")
    c.add_argument("--grant", action="append", metavar="GRANT_ID[,GRANT_ID]",
                   help="only events of these grants (repeatable)")
    c.add_argument("--event", action="append", metavar="TYPE[,TYPE]",
                   help="only these event types, e.g. grant_activated,sudo_denied "
                        "(repeatable; journalctl --list-catalog names them)")
    c.add_argument("--held-at", metavar="TIME",
                   help="who held which role at TIME (or live: right now)")
    c.add_argument("--format", choices=("text", "json", "ocsf", "ecs"), default="text",
                   help="text: a table; json: one journal-shaped object per line (as "
                        "--json); ocsf: OCSF 1.8.0 events; ecs: ECS 9.4.0 documents")
    c.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    c.add_argument("--journal-dir", help=argparse.SUPPRESS)  # tests and benchmarks/audit.py
    c.add_argument("--journal-file", action="append", help=argparse.SUPPRESS)


def main(argv: list[str] | None = None) -> int:
    parser = extend(build_parser())  # hostd/cli/extend.py: reload, requests --cancel
    args = parse(parser, sys.argv[1:] if argv is None else argv)  # hostd/cli/argv.py
    try:
        _check_arguments(parser, args)
        return args.func(args)
    except JitError as exc:
        return out(args, exc.to_wire())
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os._exit(0)  # `jit grants | head` is not an error
    except OSError as exc:  # a file the user named: say which and why (hostd/cli/files.py)
        return out(args, cli_files.file_error(exc).to_wire())


if __name__ == "__main__":
    sys.exit(main())
