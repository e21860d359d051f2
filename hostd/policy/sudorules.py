"""sudo rules' `commands` entries, read as sudoers reads a Cmnd (sudoers(5)).

`ALL`, `/path`, `/path args`, `/path ""`, `sudoedit [files]`: parsed once, when the
policy is loaded (config.SudoRule holds the parsed rules), with their wildcards compiled
to regexes then, so a sudo check matches and compiles nothing. Wildcards are POSIX
fnmatch(3) with sudoers' escapes; sudoers' regular expressions (`^...$`) are named by
`Rule.problem` for `jit check-config` and never match.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    """One `commands` entry of a sudo rule, parsed as sudoers reads a Cmnd."""

    text: str
    kind: str  # "all", "command", "sudoedit", "regex" (not supported: never matches)
    path: str = ""
    args: str | None = None  # None: any arguments
    no_args: bool = False  # `""`: no arguments at all
    # compiled when parsed; None: no wildcard there, or one that never matches
    path_regex: re.Pattern | None = field(default=None, compare=False, repr=False)
    args_regex: re.Pattern | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind == "command" and _is_glob_path(self.path):
            object.__setattr__(self, "path_regex", glob_regex(self.path, pathname=True))
        if self.kind in ("command", "sudoedit") and self.args is not None:
            object.__setattr__(self, "args_regex",
                               glob_regex(self.args, pathname=self.kind == "sudoedit"))

    @property
    def problem(self) -> str | None:
        """Why a `commands` entry can never match here, for `jit check-config` to warn:
    sudoers' regular expressions (`^...$`, sudo 1.9.10) are POSIX ERE, which Python's
    re only resembles, so such rules are refused rather than matched differently."""
        if self.kind == "regex":
            return "regular expressions (^...$) are not supported; use shell wildcards"
        if self.kind != "all" and self.args is not None and self.args_regex is None:
            return "the argument pattern is not a valid wildcard expression"
        return None

    def matches(self, path: str, args: tuple[str, ...]) -> bool:
        """sudoers' command matching for one Cmnd: ALL matches everything, sudoedit too.
        `path` is the resolved absolute command, or "sudoedit" with the files as args."""
        if self.kind == "all":
            return True
        if self.kind == "regex":
            return False
        if (self.kind == "sudoedit") != (path == "sudoedit"):
            return False
        if self.kind == "command" and not self._path_matches(path):
            return False
        if self.no_args:
            return not args
        if self.args is None:
            return True
        return self.args_regex is not None and self.args_regex.fullmatch(" ".join(args)) is not None

    def _path_matches(self, path: str) -> bool:
        """Exact, a directory (`/usr/bin/`: files directly in it), or a glob whose
        wildcards never match `/` (sudoers: `/usr/bin/*` is not `/usr/bin/X11/xterm`)."""
        if not self.path.startswith("/"):
            return False
        if self.path.endswith("/"):
            return posixpath.dirname(path) + "/" == self.path
        if _is_glob_path(self.path):
            return self.path_regex is not None and self.path_regex.fullmatch(path) is not None
        return self.path == path


def _is_glob_path(path: str) -> bool:
    return path.startswith("/") and not path.endswith("/") and any(ch in path for ch in "*?[")


_CLASSES = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
            "lower": "a-z", "space": r" \t\n\r\f\v", "blank": r" \t", "xdigit": "0-9A-Fa-f",
            "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")}


def _bracket(pattern: str, i: int) -> tuple[str, bool, int] | None:
    """A `[...]` expression starting after `[`: (class body, negated, next index), or
    None when it does not close (then `[` is literal, as in fnmatch(3))."""
    j, n, items = i, len(pattern), []
    negated = j < n and pattern[j] in "!^"
    j += negated
    first = True
    while j < n:
        c = pattern[j]
        if c == "]" and not first:
            return "".join(items), negated, j + 1
        first = False
        if pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            if end < 0 or pattern[j + 2:end] not in _CLASSES:
                return None
            items.append(_CLASSES[pattern[j + 2:end]])
            j = end + 2
        elif c == "\\" and j + 1 < n:
            items.append(re.escape(pattern[j + 1]))
            j += 2
        elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            items.append(f"{re.escape(c)}-{re.escape(pattern[j + 2])}")
            j += 3
        else:
            items.append(re.escape(c))
            j += 1
    return None


def glob_regex(pattern: str, pathname: bool = False) -> re.Pattern | None:
    """POSIX fnmatch(3) as a regex to fullmatch: `*`, `?`, `[...]`, `[!...]`, `\\x`.
    Python's fnmatch has no backslash escapes, so sudoers' `\\*` would not be literal.
    `pathname` is FNM_PATHNAME: nothing matches `/` (command paths, sudoedit files).
    None when the pattern is no valid expression (a rule that never matches)."""
    one = "[^/]" if pathname else "."
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(one + "*")
        elif c == "?":
            out.append(one)
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[" and (parsed := _bracket(pattern, i)) is not None:
            body, negated, i = parsed
            if negated:
                out.append(f"[^{'/' if pathname else ''}{body}]")
            else:
                out.append(f"{'(?!/)' if pathname else ''}[{body}]")
        else:
            out.append(re.escape(c))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:  # e.g. a reversed range [z-a]
        return None


def fnmatch(pattern: str, text: str, pathname: bool = False) -> bool:
    regex = glob_regex(pattern, pathname)
    return regex is not None and regex.fullmatch(text) is not None



def parse_rule(text: str) -> Rule:
    """`ALL`, `/path`, `/path args`, `/path ""`, `sudoedit [files]` (a leading path on
    sudoedit is dropped, as sudoers does). Arguments are one string, words joined by
    one space, matched against the user's arguments joined the same way."""
    words = text.split()
    if words == ["ALL"]:
        return Rule(text, "all")
    head, rest = (words[0], words[1:]) if words else ("", [])
    if _is_regex(head) or (rest and _is_regex(" ".join(rest))):
        return Rule(text, "regex", head)
    kind = "sudoedit" if head.rsplit("/", 1)[-1] == "sudoedit" else "command"
    if rest == ['""']:
        return Rule(text, kind, head, None, no_args=True)
    return Rule(text, kind, head, " ".join(rest) if rest else None)


def _is_regex(part: str) -> bool:
    return part.startswith("^") and part.endswith("$")


def rule_problem(text: str) -> str | None:
    """Why a `commands` entry can never match here, for `jit check-config` to warn:
    sudoers' regular expressions (`^...$`, sudo 1.9.10) are POSIX ERE, which Python's
    re only resembles, so such rules are refused rather than matched differently."""
    return parse_rule(text).problem
