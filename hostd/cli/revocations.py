"""`jit revocations build|reload|status` (docs/REVOCATIONS.md).

`build` is the issuer side, offline like `jit issue`: it signs the next list (seq + 1,
the previous list's entries kept, those whose `until` passed dropped). `reload` asks
hostd to re-read the lists now (what the path unit jit-revocations.path runs when a
list file is written); `status` shows, per issuer, the list in force.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from hostd.cli import files as cli_files
from hostd.cli.common import UsageError, call, out
from hostd.errors import JitError
from hostd.events import escape
from hostd.policy import revocations as rev
from hostd.policy.durations import parse_duration, parse_time, rfc3339

HELP = "build a signed revocation list (issuer side), or reload and show this host's"


def _entries(args: argparse.Namespace, now: int) -> list[rev.Entry]:
    until = None
    if args.until:
        try:
            until = parse_time(args.until, now)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    hosts = tuple(h.strip() for h in (args.hosts or "").split(",") if h.strip())
    out = []
    for kind, values in (("sub", args.user), ("jti", args.jti), ("role", args.role),
                         ("kid", args.kid)):
        for value in values or ():
            # the same checks a host makes, so a list is never built that hosts refuse
            out.append(rev.parse_entry(len(out), {kind: value, **({"hosts": list(hosts)}
                                                             if hosts else {}),
                                             **({"until": until} if until else {}),
                                             "reason": args.reason or ""}))
    return out


def cmd_build(args: argparse.Namespace) -> int:
    now = int(time.time())
    try:
        next_update = parse_duration(args.next_update)
    except ValueError as exc:
        raise UsageError(f"--next-update: {exc}") from None
    previous = None
    if args.previous:
        try:
            text = Path(args.previous).read_text(encoding="ascii").strip()
        except UnicodeDecodeError:
            raise UsageError(f"{args.previous}: not a revocation list") from None
        previous = rev.decode_unverified(text)
    try:
        new = _entries(args, now)
    except JitError as exc:
        raise UsageError(exc.message) from None
    lst = rev.next_list(previous, args.issuer, new, now, next_update)
    token = rev.sign(cli_files.private_key(Path(args.key)), lst)
    answer = {"ok": True, "code": "ok", "message": "revocation list built", "seq": lst.seq,
              "entries": len(lst.entries), "next_update": rfc3339(lst.next_update)}
    if args.out:
        _write(Path(args.out), token)
        answer["path"] = args.out
        return out(args, answer, f"{args.out}: {args.issuer} seq {lst.seq}, "
                   f"{len(lst.entries)} entr{'y' if len(lst.entries) == 1 else 'ies'}, next update "
                   f"{rfc3339(lst.next_update)}")
    answer["token"] = token
    return out(args, answer, token)


def _write(path: Path, token: str) -> None:
    """Atomically (a host's path unit may read it the moment it appears), 0644."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cmd_reload(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise JitError("permission_denied", "jit revocations reload: run it as root")
    try:
        answer = call("revocations.reload")
    except JitError as exc:
        if exc.code != "unreachable":
            raise
        return out(args, {"ok": True, "code": "ok", "reloaded": False,
                           "message": "hostd is not running"},
                   "hostd is not running (it reads the lists when it starts)")
    lines = [f"{escape(name)}: seq {v['seq'] if v['seq'] is not None else '-'}"
             + (f", ended {len(v['ended'])} grants" if v["ended"] else "")
             + (f"; last error: {escape(v['error'])}" if v["error"] else "")
             for name, v in sorted(answer["issuers"].items())]
    return out(args, answer, "\n".join(lines) or "no issuer has a [revocation] table")


def cmd_status(args: argparse.Namespace) -> int:
    answer = call("revocations.status")
    lines = []
    for s in answer["issuers"]:
        age = "-" if s["age"] is None else f"{s['age']}s"
        lines.append(f"{escape(s['issuer'])}: seq {s['seq'] if s['seq'] is not None else '-'}"
                     f", age {age}, {s['in_force']} of {s['entries']} entries in force, "
                     f"mode {s['mode']}{', STALE' if s['stale'] else ''}"
                     + (f"; last error: {escape(s['last_error'])}" if s["last_error"]
                        else ""))
    return out(args, answer, "\n".join(lines) or "no issuer has a [revocation] table")


def add_arguments(sub) -> None:
    """`jit revocations ...` under `sub`, the top-level subparsers."""
    group = sub.add_parser("revocations", help=HELP, description=HELP).add_subparsers(
        dest="revocations_command", required=True, metavar="COMMAND")

    def command(name: str, func, help_text: str) -> argparse.ArgumentParser:
        c = group.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--json", action="store_true", help="print one JSON object")
        c.set_defaults(func=func)
        return c

    c = command("build", cmd_build, "sign the next revocation list (seq + 1, entries kept)")
    c.add_argument("--key", required=True, metavar="PATH",
                   help="the issuer's private key (from jit keygen, or PEM)")
    c.add_argument("--issuer", required=True, metavar="NAME",
                   help="the issuer's name, as hosts trust it (issuers.d `name`)")
    c.add_argument("--previous", metavar="PATH",
                   help="the last list built: its seq and entries carry over")
    c.add_argument("--user", action="append", metavar="USER",
                   help="lock this user: their grants and requests (repeatable)")
    c.add_argument("--jti", action="append", metavar="ID", help="revoke one grant by its jti "
                   "(repeatable)")
    c.add_argument("--role", action="append", metavar="ROLE",
                   help="revoke the issuer's grants of this role (repeatable)")
    c.add_argument("--kid", action="append", metavar="KID",
                   help="revoke the grants signed by this key id (repeatable)")
    c.add_argument("--until", metavar="TIME", help="the new entries end at TIME (default: "
                   "in force until removed)")
    c.add_argument("--reason", metavar="TEXT", help="why; hosts log it and tell the user")
    c.add_argument("--hosts", metavar="SEL,...", help="the new entries apply only there "
                   "(default: every host)")
    c.add_argument("--next-update", default="1h", metavar="DURATION",
                   help="when the next list is due (default 1h; hosts add max_stale)")
    c.add_argument("--out", metavar="PATH", help="write the list there (atomically) instead "
                   "of printing it")

    command("reload", cmd_reload, "have hostd re-read the revocation lists now (root)")
    command("status", cmd_status, "per issuer: the list in force, its age, errors")
