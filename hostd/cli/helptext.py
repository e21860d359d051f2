"""The value formats `jit`'s options share (DURATION, TIME, host selectors), explained
once here and shown where they are used (issue 20): `jit --help` explains all of them,
and each subcommand's `--help` ends with the ones its own options take, found from the
metavars, so an option added later with such a metavar is explained without more code.
"""

from __future__ import annotations

import argparse
import textwrap

# metavar -> what a value of it looks like (the parsers: hostd/policy/durations.py,
# hostd/audit/journal.py parse_when, hostd/policy/hostmatch.py)
FORMATS: dict[str, str] = {
    "DURATION": "DURATION is a length of time: 30s, 15m, 4h, 1h30m, 2d (units s, m, h, d, "
                "largest first).",
    "TIME": "TIME is a moment: 2026-11-30T03:00:00Z (RFC 3339; no zone means UTC), @EPOCH "
            "(Unix seconds) or +DURATION (that long from now); jit audit also takes "
            "-DURATION (that long ago, as in --since -1d) and now.",
    "SEL,...": "SEL is a host selector: a host name or glob (web-*, case-insensitive), "
               "machine-id:ID, or an address (192.0.2.7) or network (10.0.0.0/8) of the "
               "host; a grant is valid on a host that any of its selectors matches.",
}
ORDER = ("DURATION", "TIME", "SEL,...")
GENERAL = ("Every command takes --json (one JSON object on standard output, errors too) "
           "and exits 0 when done, 1 when refused, 2 on a usage or configuration error, 3 "
           "when hostd cannot be reached. `jit COMMAND --help` shows a command's options. "
           "Manual: jit(1); the policy's keys: jit.toml(5).")


def _paragraphs(parts: list[str]) -> str:
    return "\n\n".join(textwrap.fill(p, width=78) for p in parts)


def _metavars(parser: argparse.ArgumentParser) -> set[str]:
    return {str(a.metavar) for a in parser._actions if a.metavar is not None}


def _children(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [child for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for child in a.choices.values()]


def add_epilogs(parser: argparse.ArgumentParser) -> None:
    """The top-level help explains every format and the exit codes; each subcommand's
    help explains the formats its options take (kept as written, not re-wrapped)."""
    parser.epilog = _paragraphs([FORMATS[m] for m in ORDER] + [GENERAL])
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    todo = _children(parser)
    while todo:
        child = todo.pop()
        todo += _children(child)
        used = [FORMATS[m] for m in ORDER if m in _metavars(child)]
        if used:
            child.epilog = _paragraphs(used)
            child.formatter_class = argparse.RawDescriptionHelpFormatter
