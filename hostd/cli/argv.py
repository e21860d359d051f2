"""Argument pre-processing for `jit` before argparse sees it.

argparse takes any word that starts with `-` and is not a plain negative number for an
option, so `jit audit --since -1d` failed with "expected one argument" although the
README writes it that way. Every option whose metavar is TIME accepts `-DURATION`
(that long ago); such a value is glued to its option (`--since=-1d`) here, once for
every command, instead of each command working around it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import NoReturn

TIME_METAVAR = "TIME"
_RELATIVE = re.compile(r"-[0-9][0-9a-z.]*\Z")  # -1d, -2h, -90m, -1h30m


def time_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string, in any subcommand, that takes a TIME."""
    found: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= time_options(child)
        elif action.option_strings and action.metavar == TIME_METAVAR:
            found.update(action.option_strings)
    return found


def join_relative_times(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`--since -1d` -> `--since=-1d` for every TIME option; nothing else changes.
    Words after `--` are operands and stay as they are."""
    options = time_options(parser)
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            out.extend(argv[i:])
            break
        if (word in options and i + 1 < len(argv) and word.startswith("--")
                and _RELATIVE.match(argv[i + 1])):
            out.append(f"{word}={argv[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found += _parsers(child)
    return found


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args after join_relative_times; with --json on the line a usage error is
    one JSON object on stdout ({"ok": false, "code": "usage", ...}, exit 2) like every
    other error, so a script reading --json output never gets argparse's text."""
    argv = join_relative_times(parser, argv)
    words = argv[:argv.index("--")] if "--" in argv else argv
    if "--json" in words:
        for p in _parsers(parser):
            p.error = _json_error(p)  # type: ignore[method-assign]
    return parser.parse_args(argv)


def _json_error(parser: argparse.ArgumentParser):
    def error(message: str) -> NoReturn:
        from hostd.events import escape

        print(json.dumps({"ok": False, "code": "usage",
                          "message": escape(f"{parser.prog}: {message}")}, sort_keys=True))
        sys.exit(2)

    return error
