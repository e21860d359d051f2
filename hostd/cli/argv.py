"""Argument pre-processing for `jit` before argparse sees it.

argparse takes any word that starts with `-` and is not a plain negative number for an
option, so `jit audit --since -1d` failed with "expected one argument" although the
README writes it that way. Every option whose metavar is TIME accepts `-DURATION`
(that long ago); such a value is glued to its option (`--since=-1d`) here, once for
every command, instead of each command working around it.
"""

from __future__ import annotations

import argparse
import re

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
