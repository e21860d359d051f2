"""Host selectors of a grant's `hosts` claim, matched against facts about this host.

`web-*` (hostname glob, case-insensitive), `machine-id:ID`, `10.0.0.0/8` or `192.0.2.7`
(an address of this host, read through netlink with pyroute2).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# fullmatch only: `$` would also accept a trailing newline
_GLOB = re.compile(r"[A-Za-z0-9*?\[\]._-]{1,253}")
_MACHINE_ID = re.compile(r"[0-9a-f]{32}")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    machine_id: str = ""
    addresses: tuple[IPAddress, ...] = field(default_factory=tuple)
    # Where live addresses come from (AddressCache in hostd); None: `addresses` as given.
    lookup: Callable[[], tuple[IPAddress, ...]] | None = None

    def current_addresses(self) -> tuple[IPAddress, ...]:
        return self.lookup() if self.lookup is not None else self.addresses


class AddressCache:
    """This host's addresses, read through netlink only when a network selector needs
    them (importing pyroute2 costs the daemon about 14 MB) and at most every 30 s, so
    an address gained or lost later (DHCP, VPN) is seen."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._value: tuple[IPAddress, ...] = ()
        self._read_at: float | None = None

    def __call__(self) -> tuple[IPAddress, ...]:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at > self.ttl:
            self._value, self._read_at = read_addresses(), now
        return self._value


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


def read_addresses() -> tuple[IPAddress, ...]:
    """This host's addresses via netlink; empty if netlink is unavailable."""
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover - python3-pyroute2 is a Depends
        return ()
    found: list[IPAddress] = []
    try:
        with IPRoute() as ipr:
            for msg in ipr.get_addr():
                addr = msg.get_attr("IFA_ADDRESS")
                if addr:
                    found.append(ipaddress.ip_address(addr.split("%")[0]))
    except OSError:
        return ()
    return tuple(found)


def read_facts(hostname_file: Path, machine_id_file: Path, sandboxed: bool) -> HostFacts:
    """Facts about this host; under a sandbox root the root's etc/hostname wins."""
    hostname = socket.gethostname()
    if sandboxed and hostname_file.exists():
        hostname = hostname_file.read_text().strip() or hostname
    machine_id = ""
    if machine_id_file.exists():
        machine_id = machine_id_file.read_text().strip().lower()
    return HostFacts(hostname=hostname, machine_id=machine_id, lookup=AddressCache())
