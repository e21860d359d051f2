"""An issuer's `[revocation]` table (issuers.d/NAME.toml; docs/REVOCATIONS.md).

Kept apart from config.py's issuer parsing so other issuer kinds share it: the loader
hands the table over and stores what comes back on the Issuer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hostd.errors import ConfigError
from hostd.policy.durations import parse_duration

MODES = ("best_effort", "strict")
_KEYS = ("file", "url", "refresh", "mode", "max_stale", "require_list")


@dataclass(frozen=True)
class RevocationConfig:
    """Where an issuer's list comes from and what a stale or missing one means."""

    file: Path | None = None  # pushed by configuration management
    url: str = ""  # pulled by the fetcher into <state>/revocations/NAME.jwt
    refresh: int = 60
    mode: str = "best_effort"
    max_stale: int = 3600
    require_list: bool = False


def _duration(path: Path, data: dict, name: str, default: int) -> int:
    value = data.get(name)
    if value is None:
        return default
    try:
        if not isinstance(value, str):
            raise ValueError("must be a duration like 1m or 1h")
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(str(path), f"revocation.{name}", str(exc)) from None


def parse_revocation(path: Path, data: object, root: Path | None = None
                     ) -> RevocationConfig | None:
    """The `[revocation]` table, or None when the issuer has none. `root` re-roots an
    absolute `file` inside a sandbox, as key paths are."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "revocation", "must be a table")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(str(path), f"revocation.{key}", "unknown key")
    file, url = data.get("file"), data.get("url", "")
    if file is not None and (not isinstance(file, str) or not file.startswith("/")):
        raise ConfigError(str(path), "revocation.file", "must be an absolute path")
    if not isinstance(url, str) or (url and not url.startswith(("https://", "http://"))):
        raise ConfigError(str(path), "revocation.url", "must be an http(s) URL")
    if file is None and not url:
        raise ConfigError(str(path), "revocation", "give file, url or both")
    mode = data.get("mode", "best_effort")
    if mode not in MODES:
        raise ConfigError(str(path), "revocation.mode", f"must be one of {', '.join(MODES)}")
    require = data.get("require_list", False)
    if not isinstance(require, bool):
        raise ConfigError(str(path), "revocation.require_list", "must be true or false")
    where = None
    if file is not None:
        where = Path(file)
        if root is not None and not where.is_relative_to(root):
            where = root / file.lstrip("/")
    return RevocationConfig(where, url, _duration(path, data, "refresh", 60), mode,
                            _duration(path, data, "max_stale", 3600), require)
