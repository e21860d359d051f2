"""The identity providers' key cache as hostd reads it, and the refresh hostd asks for.

hostd talks to no identity provider (issue 21 item 2): `jit idp refresh` (the
jit-idp-refresh units) writes `<state>/idp/NAME/{jwks,discovery,state}.json`
(CONTRACTS §A) and hostd only reads them. A JWKS is parsed once per change of its
file (inode, size, mtime), not per request: parsing four RSA keys costs about as much
as the whole rest of an activation. The files are trust files like issuer keys: root's
alone (hostd/policy/trust.py), or they are not read.

An unknown kid means the provider rotated its keys: `IdpRefresh` starts
`jit-idp-refresh@NAME.service` (over D-Bus, or in a sandbox by writing the unit name to
`run/jit/idp-refresh-requests`, which tests read), at most once a minute per issuer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from hostd.errors import JitError
from hostd.policy.idp import OidcIssuer
from hostd.policy.idptoken import JwkKey, keyset
from hostd.policy.trust import read_file

REFRESH_INTERVAL = 60.0  # seconds between two refreshes hostd asks for, per issuer
UNIT = "jit-idp-refresh@{}.service"


@dataclass(frozen=True)
class _Entry:
    stamp: tuple  # (jwks stat, state stat, algorithms): a change of any re-parses
    keys: tuple[JwkKey, ...]
    fetched_at: float


def _stamp(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class IdpCache:
    """Keys of each OIDC issuer, from the fetcher's files; `keys` is idptoken's keys_of."""

    def __init__(self, idp_dir: Path, clock: Callable[[], float] = time.time,
                 trusted_from: Path | None = Path("/")) -> None:
        self.idp_dir, self.clock, self.trusted_from = idp_dir, clock, trusted_from
        self._entries: dict[str, _Entry] = {}

    def keys(self, issuer: OidcIssuer) -> tuple[JwkKey, ...]:
        """The issuer's usable keys; stale_keys when missing, unreadable or too old."""
        entry = self._entry(issuer)
        age = self.clock() - entry.fetched_at
        if age > issuer.max_stale:
            raise JitError("stale_keys", f"the keys of {issuer.name} were fetched "
                           f"{int(age)}s ago (max_stale {issuer.max_stale}s): run "
                           f"`jit idp refresh {issuer.name}` and check `jit idp status`")
        return entry.keys

    def _entry(self, issuer: OidcIssuer) -> _Entry:
        d = self.idp_dir / issuer.name
        try:
            stamp = (_stamp(d / "jwks.json"), _stamp(d / "state.json"), issuer.algorithms)
        except OSError:
            raise JitError("stale_keys", f"no cached keys for {issuer.name}: run "
                           f"`jit idp refresh {issuer.name}`") from None
        entry = self._entries.get(issuer.name)
        if entry is not None and entry.stamp == stamp:
            return entry
        try:
            doc = self._read(d / "jwks.json")
            state = self._read(d / "state.json")
            fetched_at = state.get("fetched_at") if isinstance(state, dict) else None
            if isinstance(fetched_at, bool) or not isinstance(fetched_at, int | float):
                raise ValueError("state.json has no fetched_at")
            entry = _Entry(stamp, keyset(doc, issuer.algorithms), float(fetched_at))
        except (OSError, ValueError, JitError) as exc:
            why = exc.message if isinstance(exc, JitError) else str(exc)
            raise JitError("stale_keys", f"the key cache of {issuer.name} is unusable "
                           f"({why[:120]}): run `jit idp refresh {issuer.name}`") from None
        self._entries[issuer.name] = entry
        return entry

    def _read(self, path: Path) -> object:
        return json.loads(read_file(path, self.trusted_from).decode("utf-8"))


class IdpRefresh:
    """Asks for one issuer's keys to be fetched again, at most once a minute each."""

    def __init__(self, start_unit: Callable[[str], Awaitable[object]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.start_unit, self.clock = start_unit, clock
        self._last: dict[str, float] = {}

    def due(self, name: str) -> bool:
        """True (and the minute starts now) when a refresh of `name` may be asked."""
        now = self.clock()
        last = self._last.get(name)
        if last is not None and now - last < REFRESH_INTERVAL:
            return False
        self._last[name] = now
        return True

    async def request(self, name: str) -> bool:
        """Start the refresh unit if due; False when rate-limited. A failure to start is
        raised to the caller (it logs it): the refusal stays unknown_key either way."""
        if not self.due(name):
            return False
        await self.start_unit(UNIT.format(name))
        return True


def sandbox_starter(run_dir: Path) -> Callable[[str], Awaitable[None]]:
    """In a --root sandbox no unit is started: the request is written down for the test
    (which plays the fetcher) to see, one unit name a line."""
    async def start(unit: str) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "idp-refresh-requests", "a", encoding="utf-8") as fh:
            fh.write(unit + "\n")
    return start


def systemd_starter(bus: object) -> Callable[[str], Awaitable[object]]:
    """StartUnit over the system bus hostd already holds (its timers')."""
    from hostd.state import dbus
    from hostd.state.systemd_timers import MANAGER, SYSTEMD, SYSTEMD_PATH

    async def start(unit: str) -> object:
        return await dbus.call(bus, SYSTEMD, SYSTEMD_PATH, MANAGER, "StartUnit", "ss",
                               [unit, "replace"])
    return start
