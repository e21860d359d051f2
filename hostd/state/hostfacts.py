"""Facts about this host for grant `hosts` selectors: hostname, machine-id and the
addresses, read through netlink (pyroute2) only when a network selector asks.

Reading is state, matching is policy: hostd/policy/hostmatch.py matches selectors over
the HostFacts this module builds.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from pathlib import Path

from hostd.policy.hostmatch import HostFacts, IPAddress


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
