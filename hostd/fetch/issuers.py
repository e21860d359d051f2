"""The few issuers.d fields the fetcher needs, read in ONE function (`read_issuers`) so
the lead can swap it for the shared parser of hostd/policy/config.py once OIDC issuers
are part of it (branch oidc-verify). Files are read as hostd reads them: root's alone."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from hostd.errors import ConfigError
from hostd.fetch.http import FetchError, check_url
from hostd.paths import Paths
from hostd.policy.config import NAME
from hostd.policy.durations import parse_duration
from hostd.policy.trust import read_file

DEFAULT_ALGORITHMS = ("RS256",)
DEFAULT_REVOCATION_REFRESH = 60


@dataclass(frozen=True)
class FetchedIssuer:
    """What the fetcher and `jit login` use of one issuers.d file."""

    name: str
    path: Path
    oidc: bool  # type = "oidc": discovery and JWKS are fetched
    issuer: str = ""
    client_id: str = ""
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    revocation_url: str | None = None
    revocation_refresh: int = DEFAULT_REVOCATION_REFRESH

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _str(path: Path, data: dict, key: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(str(path), key, "a non-empty string is required")
    return value


def _issuer(path: Path, data: dict) -> FetchedIssuer:
    name = _str(path, data, "name")
    if not NAME.fullmatch(name):  # it names directories and files under /var/lib/jit
        raise ConfigError(str(path), "name", f"{name!r} is not a name like corp-idp")
    kind = data.get("type", "key")
    if kind not in ("key", "oidc"):
        raise ConfigError(str(path), "type", f"{kind!r} is not \"key\" or \"oidc\"")
    rev = data.get("revocation", {})
    if not isinstance(rev, dict):
        raise ConfigError(str(path), "revocation", "a table is required")
    url = rev.get("url")
    refresh = DEFAULT_REVOCATION_REFRESH
    try:
        if url is not None:
            check_url(_str(path, rev, "url"))
        if "refresh" in rev:
            refresh = parse_duration(rev["refresh"])
    except (FetchError, ValueError) as exc:
        key = "revocation.url" if isinstance(exc, FetchError) else "revocation.refresh"
        raise ConfigError(str(path), key, str(exc)) from None
    if kind == "key":
        return FetchedIssuer(name, path, False, revocation_url=url, revocation_refresh=refresh)
    issuer = _str(path, data, "issuer")
    try:
        check_url(issuer)
    except FetchError as exc:
        raise ConfigError(str(path), "issuer", exc.message) from None
    algs = data.get("algorithms", list(DEFAULT_ALGORITHMS))
    if not isinstance(algs, list) or not algs or not all(isinstance(a, str) for a in algs):
        raise ConfigError(str(path), "algorithms", "a non-empty list of names is required")
    return FetchedIssuer(name, path, True, issuer, _str(path, data, "client_id"),
                         tuple(algs), url, refresh)


def read_issuers(paths: Paths) -> dict[str, FetchedIssuer]:
    """Every issuer of issuers.d by name (ConfigError names the file and key)."""
    found: dict[str, FetchedIssuer] = {}
    if not paths.issuers_dir.is_dir():
        return found
    for file in sorted(paths.issuers_dir.glob("*.toml")):
        try:
            data = tomllib.loads(read_file(file, paths.root).decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(file), "", f"not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(str(file), "", f"cannot read: {exc.strerror}") from None
        issuer = _issuer(file, data)
        if issuer.name in found:
            raise ConfigError(str(file), "name", f"issuer {issuer.name!r} defined twice")
        found[issuer.name] = issuer
    return found
