"""A TOML table being read, shared by jit.toml and the issuer files (config.py, idp.py).

Every error names the file and the key; keys never read are errors (a typo must not
silently drop a restriction).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hostd.errors import ConfigError
from hostd.policy.durations import parse_duration

# Matched with fullmatch only: `$` would also accept a trailing newline ("alice\n").
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?")


class Table:
    """A TOML table being read: tracks which keys were used so leftovers are errors."""

    def __init__(self, path: Path, prefix: str, data: Any) -> None:
        if not isinstance(data, dict):
            raise ConfigError(str(path), prefix, "must be a table")
        self.path, self.prefix, self.data, self.used = path, prefix, data, set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(str(self.path), self.key(name), problem)

    def get(self, name: str, kind: type | tuple, default: Any = None, required: bool = False):
        self.used.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "is required")
            return default
        value = self.data[name]
        if kind is int and isinstance(value, bool):
            raise self.fail(name, "must be an integer")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(name, f"must be {names}, not {type(value).__name__}")
        return value

    def strings(self, name: str, pattern: re.Pattern | None = None, what: str = "",
                unique: bool = False) -> tuple:
        values = self.get(name, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, str) or (pattern is not None and not pattern.fullmatch(v)):
                raise self.fail(name, f"{v!r} is not a valid {what or 'string'}")
            if unique and v in values[:i]:
                raise self.fail(name, f"{json.dumps(v)} listed twice")
        return tuple(values)

    def duration(self, name: str, default: int) -> int:
        value = self.get(name, str)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(name, str(exc)) from None

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def regex(self, name: str) -> re.Pattern:
        value = self.get(name, str, required=True)
        try:
            return re.compile(value)
        except re.error as exc:
            raise self.fail(name, f"bad regular expression: {exc}") from None

    def finish(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise self.fail(extra[0], "unknown key")
