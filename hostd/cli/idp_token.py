"""`jit activate ROLE --id-token FILE|-` and `jit idp test TOKEN|-` (issue 21 items 4, 6).

`jit activate TOKEN` (a grant of an issuer key) is unchanged: with --id-token the
positional argument is the role and the ID token comes from FILE (or standard input).
`jit idp test` is offline: it reads issuers.d and the key cache itself. The cache is
root's alone (CONTRACTS §A), so a verdict needs root; anyone can see the decoded claims
and which rules they would match, since those are in the token for all to read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from hostd.cli.common import UsageError, call, out
from hostd.events import escape
from hostd.policy.durations import format_duration, parse_duration
from hostd.policy.grants import MAX_TOKEN

ID_FILE_HELP = ("activate the role TOKEN names (then a ROLE) with an identity provider's "
                 "ID token read from FILE, or - for standard input")
IDP_ONLY = ("for_", "reason", "issuer")


def read_id_token(arg: str) -> str:
    """The ID token from a file, or standard input for `-`, bounded like a grant."""
    if arg == "-":
        text = sys.stdin.read(MAX_TOKEN + 2)
    else:
        with open(arg, encoding="utf-8") as fh:  # OSError: main names the file
            text = fh.read(MAX_TOKEN + 2)
    token = text.strip()
    if not token:
        raise UsageError("the ID token is empty")
    if len(token) > MAX_TOKEN:
        raise UsageError(f"the ID token is larger than {MAX_TOKEN // 1024} KiB")
    return token


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """--id-token and its options on `jit activate`; `jit idp test`."""
    activate = sub.choices["activate"]
    positional = next(a for a in activate._actions if a.dest == "token")
    positional.help = f"{positional.help}; with --id-token, the role to activate"
    activate.add_argument("--id-token", metavar="FILE|-", help=ID_FILE_HELP)
    activate.add_argument("--for", dest="for_", metavar="DURATION",
                          help="with --id-token: how long (default and maximum: the "
                               "role's max_ttl)")
    activate.add_argument("--reason", metavar="TEXT", help="with --id-token: why; logged")
    activate.add_argument("--issuer", metavar="NAME",
                          help="with --id-token: the OIDC issuer (default: the one whose "
                               "issuer is the token's iss)")
    activate.set_defaults(func=_wrap(activate.get_default("func")))
    idp = sub.choices.get("idp")
    if idp is None:
        idp = sub.add_parser("idp", help="identity providers (OIDC issuers)",
                             description="identity providers (OIDC issuers)")
        idp.add_subparsers(dest="idp_command", required=True, metavar="COMMAND")
    commands = next(a for a in idp._actions if isinstance(a, argparse._SubParsersAction))
    c = commands.add_parser("test", help="verify an ID token offline and show what it maps "
                            "to (a verdict needs root: the key cache is root's)",
                            description="verify an ID token offline against issuers.d and "
                            "the key cache; show its claims, the claims_to_roles rules it "
                            "matches and the verdict")
    c.add_argument("token", metavar="TOKEN|-", help="the ID token, or - for standard input")
    c.add_argument("--issuer", metavar="NAME", help="the OIDC issuer to check against")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_idp_test)


def _wrap(plain):
    def cmd(args: argparse.Namespace) -> int:
        if args.id_token is None:
            given = [f"--{n.rstrip('_').replace('_', '-')}" for n in IDP_ONLY
                     if getattr(args, n, None)]
            if given:
                raise UsageError(f"{given[0]} needs --id-token")
            return plain(args)
        return cmd_activate_id_token(args)
    return cmd


def cmd_activate_id_token(args: argparse.Namespace) -> int:
    fields: dict = {"token": read_id_token(args.id_token), "role": args.token}
    if args.for_:
        try:
            fields["duration"] = parse_duration(args.for_)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
    if args.reason:
        fields["reason"] = args.reason
    if args.issuer:
        fields["issuer"] = args.issuer
    answer = call("idp.activate", **fields)
    via = f" (via {answer['issuer']}: {escape(', '.join(answer['matched']))})"
    if "request" in answer:
        r = answer["request"]
        return out(args, answer, f"request {r['id']} {r['state']}: role {r['role']} needs "
                                 f"approval{via}")
    g = answer["grant"]
    left = format_duration(g["exp"] - time.time())
    return out(args, answer, f"grant {g['id']} active: role {g['role']}, groups "
                             f"{', '.join(g['groups']) or '-'}, until {g['not_after']} "
                             f"({left} left){via}")


def cmd_idp_test(args: argparse.Namespace) -> int:
    from hostd.cli.idp_verdict import verdict

    given: str = args.token
    answer = verdict(read_id_token(given) if given == "-" else given.strip(), args.issuer,
                     time.time())
    return out(args, answer, _text(answer)) if answer["ok"] else _refused(args, answer)


def _refused(args: argparse.Namespace, answer: dict) -> int:
    if not args.json and answer.get("claims") is not None:
        print(_text(answer))
    return out(args, answer)


def _text(answer: dict) -> str:
    lines = [f"issuer: {answer.get('issuer') or '-'}", "claims:"]
    for name, value in (answer.get("claims") or {}).items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        lines.append(f"  {escape(name)}: {escape(shown)}")
    lines.append("rules matched:" if answer.get("rules") else "rules matched: none")
    for r in answer.get("rules") or []:
        lines.append(f"  [{r['index']}] {escape(r['claim'])} {r['match']} "
                     f"{escape(r['value'])} -> {', '.join(r['roles'])} "
                     f"(matched {escape(', '.join(r['matched']))})")
    lines.append(f"roles on this host: {', '.join(answer.get('roles') or []) or 'none'}")
    lines.append(f"verdict: {answer['verdict']}"
                 + (f" ({escape(answer['message'])})" if not answer["ok"] else ""))
    return "\n".join(lines)

