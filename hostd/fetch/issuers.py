"""The few issuers.d fields the fetcher needs, read with the policy's own parsers
(`read_issuers`). Files are read as hostd reads them: root's alone."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from hostd.errors import ConfigError
from hostd.fetch.http import FetchError, check_url
from hostd.paths import Paths
from hostd.policy.config import NAME
from hostd.policy.idp import parse_oidc_issuer
from hostd.policy.revconfig import parse_revocation
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


def _issuer(path: Path, data: dict) -> FetchedIssuer:
    """What the fetcher uses of one issuer file, read by the policy's own parsers
    (hostd/policy/idp.py, revconfig.py): the fetcher and hostd never disagree on a file."""
    if data.get("type", "key") == "oidc":
        oidc = parse_oidc_issuer(path, data)
        return FetchedIssuer(oidc.name, path, True, oidc.issuer, oidc.client_id,
                             tuple(oidc.algorithms))
    name = data.get("name")
    if data.get("type", "key") != "key":
        raise ConfigError(str(path), "type", f"{data.get('type')!r} is not \"key\" or \"oidc\"")
    if not isinstance(name, str) or not NAME.fullmatch(name):  # names files under /var/lib/jit
        raise ConfigError(str(path), "name", f"{name!r} is not a name like corp-idp")
    rev = parse_revocation(path, data.get("revocation"))
    if rev is None or not rev.url:
        return FetchedIssuer(name, path, False)
    try:
        check_url(rev.url)
    except FetchError as exc:
        raise ConfigError(str(path), "revocation.url", exc.message) from None
    return FetchedIssuer(name, path, False, revocation_url=rev.url,
                         revocation_refresh=rev.refresh)


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
