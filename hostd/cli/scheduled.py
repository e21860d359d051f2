"""`jit` and scheduled grants (issue 22 §2): `jit activate` of a grant that starts later,
`jit grants --pending` (and pending grants listed after the live ones), `jit request
--start TIME`. Wired into the parser by hostd/cli/main.py (build_parser); the ops are
grant.activate, grant.list (`pending`) and access.request (`start`).

TIME is what `jit issue --not-before` takes (policy/durations.parse_time): RFC 3339
(`2026-12-24T22:00:00Z`; no zone means UTC), `@EPOCH`, or `+DURATION` from now.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from hostd.cli.common import UsageError, call, out
from hostd.events import escape
from hostd.policy.durations import format_duration, parse_time

Command = Callable[[argparse.Namespace], int]


def start_of(text: str | None) -> int | None:
    """--start TIME as epoch seconds (None when not given); a usage error names the forms."""
    if not text:
        return None
    try:
        return parse_time(text, time.time())
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def pending_table(grants: list[dict], all_users: bool) -> str:
    """Grants that start later: when they start, how long they last, in how long."""
    now = time.time()
    head = ["ID", *(["USER"] if all_users else []), "ROLE", "GROUPS", "ISSUER", "FROM (UTC)",
            "UNTIL (UTC)", "STARTS IN", "REASON"]
    rows = [[g["id"], *([g["user"]] if all_users else []), g["role"],
             ",".join(g["groups"]) or "-", g["issuer"], g["not_before"].replace("T", " "),
             g["not_after"].replace("T", " "),
             format_duration(parse_time(g["not_before"], now) - now),
             escape(g.get("reason") or "")[:40]] for g in grants]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def wrap_grants(listing: Command, table: Callable[[list[dict], bool], str]) -> Command:
    """`jit grants`: the live grants as before, then the pending ones marked as such;
    `--pending`: those only. `table` is the live grants' table (hostd/cli/main.py)."""

    def cmd_grants(args: argparse.Namespace) -> int:
        if args.sessions:
            return listing(args)
        every = bool(args.all)
        answer = call("grant.list", all=every, **({"pending": True} if args.pending else {}))
        live = [g for g in answer["grants"] if g.get("state") != "pending"]
        later = [g for g in answer["grants"] if g.get("state") == "pending"]
        if args.pending:
            text = (pending_table(later, every) if later else "no pending grants")
        else:
            text = table(live, every)
            if later:
                text += "\n\npending (they start later):\n" + pending_table(later, every)
        return out(args, answer, text)

    return cmd_grants


def wrap_activate(read_token: Callable[[str], str]) -> Command:
    """`jit activate`: a grant that starts later is scheduled, and says so."""

    def cmd_activate(args: argparse.Namespace) -> int:
        answer = call("grant.activate", token=read_token(args.token))
        g = answer["grant"]
        if g.get("state") != "pending":
            left = format_duration(g["exp"] - time.time())
            return out(args, answer, f"grant {g['id']} active: role {g['role']}, groups "
                                     f"{', '.join(g['groups']) or '-'}, until "
                                     f"{g['not_after']} ({left} left)")
        starts = format_duration(parse_time(g["not_before"], time.time()) - time.time())
        answer = dict(answer, message=f"grant {g['id']} scheduled")
        return out(args, answer, f"grant {g['id']} scheduled: role {g['role']} from "
                                 f"{g['not_before']} until {g['not_after']} (starts in "
                                 f"{starts}); `jit grants --pending` lists it, `jit revoke "
                                 f"{g['id']}` cancels it")

    return cmd_activate


def request_start(args: argparse.Namespace) -> dict:
    """access.request's `start` field from `jit request --start TIME`, if given."""
    start = start_of(getattr(args, "start", None))
    return {} if start is None else {"start": start}


def window(r: dict) -> str:
    """A request's fixed window, for the line `jit request` prints ("" for none)."""
    return f", from {r['starts']} until {r['ends']}" if r.get("ends") else ""


def held_from(r: dict) -> str:
    """How `jit request --wait` ends for an approved request: active now, or scheduled
    for the start of its window."""
    if r.get("starts") and parse_time(r["starts"], time.time()) > time.time():
        return (f"is scheduled from {r['starts']} until {r['ends']} (`jit grants --pending` "
                "lists it)")
    return "is active (new logins and `newgrp` see the groups)"


def add_arguments(sub: argparse._SubParsersAction, table: Callable[[list[dict], bool], str],
                  read_token: Callable[[str], str]) -> None:
    """--pending on `jit grants`, --start on `jit request`; `jit activate` reports a
    scheduled grant. `table` and `read_token` are hostd/cli/main.py's."""
    grants = sub.choices["grants"]
    grants.add_argument("--pending", action="store_true",
                        help="only grants that start later (scheduled, not yet held)")
    grants.set_defaults(func=wrap_grants(grants.get_default("func"), table))
    sub.choices["activate"].set_defaults(func=wrap_activate(read_token))
    request = sub.choices["request"]
    request.add_argument("--start", metavar="TIME",
                         help="ask for a window that starts at TIME (fixed now; an approval "
                              "after it grants what is left, after its end it expires)")
