"""Host selectors of a grant's `hosts` claim, matched against facts about this host.

`web-*` (hostname glob, case-insensitive), `machine-id:ID`, `10.0.0.0/8` or `192.0.2.7`
(an address of this host). The facts are passed in: hostd/state/hostfacts.py reads
them (hostname, machine-id, addresses through netlink), so matching stays pure.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# fullmatch only: `$` would also accept a trailing newline
_GLOB = re.compile(r"[A-Za-z0-9*?\[\]._-]{1,253}")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    machine_id: str = ""
    addresses: tuple[IPAddress, ...] = field(default_factory=tuple)
    # Where live addresses come from (state.hostfacts.AddressCache); None: `addresses`.
    lookup: Callable[[], tuple[IPAddress, ...]] | None = None

    def current_addresses(self) -> tuple[IPAddress, ...]:
        return self.lookup() if self.lookup is not None else self.addresses


def parse_selector(selector: object) -> tuple[str, object]:
    """Classify one selector; ValueError if it is none of the three forms."""
    if not isinstance(selector, str) or not selector:
        raise ValueError("host selector must be a non-empty string")
    if selector.startswith("machine-id:"):
        mid = selector.removeprefix("machine-id:").lower()
        if not _MACHINE_ID.fullmatch(mid):
            raise ValueError(f"bad machine-id selector {selector!r}")
        return "machine-id", mid
    looks_numeric = selector.isascii() and selector.replace(".", "").isdigit()
    if any(c in selector for c in ":/") or looks_numeric:
        try:
            return "network", ipaddress.ip_network(selector, strict=False)
        except ValueError:
            raise ValueError(f"bad network selector {selector!r}") from None
    if not _GLOB.fullmatch(selector):
        raise ValueError(f"bad hostname selector {selector!r}")
    return "hostname", selector.lower()


def matches(selectors: list[str], facts: HostFacts) -> bool:
    """True if any selector names this host. ValueError on a malformed selector."""
    parsed = [parse_selector(s) for s in selectors]
    for kind, value in parsed:
        if kind == "machine-id" and facts.machine_id and value == facts.machine_id:
            return True
        if kind == "hostname" and fnmatch.fnmatchcase(facts.hostname.lower(), value):
            return True
        if kind == "network" and any(
            addr.version == value.version and addr in value
            for addr in facts.current_addresses()
        ):
            return True
    return False
