"""Commands compared as sudoers compares them, and guardrails matched on that.

A command has several spellings for one file and one meaning: `/bin/rm` and
`/proc/self/root/usr/bin/rm` are `/usr/bin/rm` (merged /usr), `/root/./x` and
`/root//x` are `/root/x`, `-rf` is `-r -f`. Guardrails must hold for the command, not
its spelling, so:

- the program is compared by the file it resolves to: the caller stats it where the
  request is gathered (realpath, device and inode; `FileId`) and passes the answers in
  as data, so this module stays pure;
- path arguments (those starting with `/`, and the path part of a long option
  written `--name=/path`) are normalised lexically before any guardrail or rule sees
  them; only `//` and `/./` are folded for rules (always the same
  file), while guardrails also try `..` folded, since a guardrail that catches more
  spellings can only refuse or pause more;
- a `match` guardrail is searched in every spelling of the line (canonical, as
  resolved before, `..` folded, as typed): any one matching triggers it;
- a `program` guardrail compares files and tries each `args` pattern on every
  spelling of every argument: order and option bundling do not matter.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hostd.policy.config import Config, Guardrail
from hostd.policy.sudorequest import Resolved

_SLASHES = re.compile(r"/{2,}")
_LONG_OPTION = re.compile(r"(--[A-Za-z0-9][A-Za-z0-9_.-]*=)(/.*)", re.DOTALL)
SUDOEDIT = "sudoedit"  # sudoers' pseudo-command: a program guardrail may name it
_DOTS = re.compile(r"(?<=/)\.(?:/|$)")


@dataclass(frozen=True)
class FileId:
    """A program's file as the caller found it: realpath, then device and inode."""

    real: str
    dev: int
    ino: int


Files = Mapping[str, FileId]


def _option_path(arg: str, normalise) -> str | None:
    """`--name=/path` with its path part normalised, None for any other shape: a tool
    reads the path after `=` as it reads a path argument (`--output=/root//x`)."""
    shaped = _LONG_OPTION.fullmatch(arg)
    return shaped[1] + normalise(shaped[2]) if shaped else None


def fold(path: str) -> str:
    """`//` and `/./` folded: the same file whatever the symlinks (`..` is kept, since
    `a/link/..` is not `a` when link is a symlink). `--name=/path` folds its path."""
    if not path.startswith("/"):
        return _option_path(path, fold) or path
    out = _SLASHES.sub("/", path)
    while True:
        folded = _SLASHES.sub("/", _DOTS.sub("", out))
        if folded == out:
            break
        out = folded
    return out


def collapse(path: str) -> str:
    """`..` folded too (lexically): for guardrails only. `--name=/path` likewise."""
    if not path.startswith("/"):
        return _option_path(path, collapse) or path
    out = "/" + posixpath.normpath(path).lstrip("/")
    return out + "/" if path.endswith("/") and out != "/" else out


def canonical(cmd: Resolved, files: Files) -> Resolved:
    """The command as matched and run: the program's real path (what runs, so a
    symlink swapped after the check runs nothing else) and path arguments folded.
    argv_out keeps what the user typed (argv[0] and the arguments as given)."""
    if cmd.path == "sudoedit":
        return Resolved(cmd.path, tuple(fold(a) for a in cmd.args), cmd.run, cmd.argv_out)
    found = files.get(cmd.path)
    path = found.real if found is not None else cmd.path
    run = path if cmd.run == cmd.path else cmd.run
    return Resolved(path, tuple(fold(a) for a in cmd.args), run, cmd.argv_out)


@dataclass(frozen=True)
class Spellings:
    """Every spelling of one command a guardrail is tried on."""

    paths: tuple[str, ...]
    args: tuple[tuple[str, ...], ...]  # per argument, its spellings
    lines: tuple[str, ...]


def spellings(typed: Resolved, canon: Resolved) -> Spellings:
    """The canonical command, the command as resolved before canonicalisation (with
    its path found), `..` folded, and (not for sudoedit) the argv exactly as typed."""
    collapsed = tuple(collapse(a) for a in canon.args)
    args = tuple(tuple(dict.fromkeys(s)) for s in zip(canon.args, typed.args, collapsed,
                                                      strict=True))
    lines = (canon.line, typed.line, " ".join([canon.path, *collapsed]))
    if typed.path != "sudoedit":
        lines += (" ".join(typed.argv_out),)
    return Spellings(tuple(dict.fromkeys((canon.path, typed.path))), args,
                     tuple(dict.fromkeys(lines)))


def _found(pattern: re.Pattern, text: str) -> bool:
    """re.search, written as finditer (hostd keeps .match/.search for the duration
    tokenizer: test_config): a guardrail regex is found anywhere unless anchored."""
    return next(pattern.finditer(text), None) is not None


def _same_program(rail: Guardrail, paths: tuple[str, ...], files: Files) -> bool:
    """By device and inode when both files were found, else by real path, else by
    the lexically normal path (a program that is not there matches only its name).
    `sudoedit` is sudoers' pseudo-command: only a guardrail naming it holds for it."""
    if rail.program == SUDOEDIT or SUDOEDIT in paths:
        return rail.program == SUDOEDIT and SUDOEDIT in paths
    want = files.get(rail.program)
    for path in paths:
        have = files.get(path)
        if want is not None and have is not None and (want.dev, want.ino) == (have.dev,
                                                                               have.ino):
            return True
        names = {path, have.real if have else path}
        if {collapse(rail.program), want.real if want else ""} & names:
            return True
    return False


def triggers(rail: Guardrail, spelt: Spellings, files: Files) -> bool:
    """Whether this guardrail holds for the command, however it is spelt."""
    if rail.match is not None:
        return any(_found(rail.match, line) for line in spelt.lines)
    if not _same_program(rail, spelt.paths, files):
        return False
    return all(any(_found(p, s) for arg in spelt.args for s in arg) for p in rail.args)


def first(config: Config, action: str, spelt: Spellings, files: Files) -> int:
    """The first guardrail of `action` that holds for the command, or -1."""
    for index, rail in enumerate(config.guardrails):
        if rail.action == action and triggers(rail, spelt, files):
            return index
    return -1


def programs(config: Config) -> tuple[str, ...]:
    """The files the caller must identify for the program guardrails."""
    return tuple(dict.fromkeys(r.program for r in config.guardrails
                               if r.program and r.program != SUDOEDIT))
