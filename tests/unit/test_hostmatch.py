"""hostmatch: the three selector forms of a grant's `hosts` claim, matched against facts."""

from __future__ import annotations

import ipaddress

import pytest

from hostd.policy.hostmatch import HostFacts, matches, parse_selector

MID = "0123456789abcdef0123456789abcdef"
FACTS = HostFacts(
    hostname="Web-01.Example.COM",
    machine_id=MID,
    addresses=(ipaddress.ip_address("10.1.2.3"), ipaddress.ip_address("192.0.2.7"),
               ipaddress.ip_address("2001:db8::7"), ipaddress.ip_address("::1")),
)

PARSED = [
    ("glob", "web-*", ("hostname", "web-*")),
    ("glob-lowered", "WEB-?.Example.com", ("hostname", "web-?.example.com")),
    ("glob-class", "web-[0-9][0-9]", ("hostname", "web-[0-9][0-9]")),
    ("machine-id", f"machine-id:{MID}", ("machine-id", MID)),
    ("machine-id-upper", f"machine-id:{MID.upper()}", ("machine-id", MID)),
    ("ipv4-network", "10.0.0.0/8", ("network", ipaddress.ip_network("10.0.0.0/8"))),
    ("ipv4-host-bits", "10.1.2.3/8", ("network", ipaddress.ip_network("10.0.0.0/8"))),
    ("ipv4-address", "192.0.2.7", ("network", ipaddress.ip_network("192.0.2.7/32"))),
    ("ipv6-network", "2001:db8::/32", ("network", ipaddress.ip_network("2001:db8::/32"))),
    ("ipv6-address", "::1", ("network", ipaddress.ip_network("::1/128"))),
]


@pytest.mark.parametrize("selector,expected", [p[1:] for p in PARSED], ids=[p[0] for p in PARSED])
def test_parse_selector(selector, expected):
    assert parse_selector(selector) == expected


MALFORMED = [
    ("empty", ""),
    ("none", None),
    ("int", 10),
    ("list", ["web-*"]),
    ("space", "web 01"),
    ("shell-chars", "web;rm"),
    ("slash-glob", "web/*"),
    ("too-long", "a" * 254),
    ("machine-id-short", "machine-id:abc"),
    ("machine-id-not-hex", "machine-id:" + "g" * 32),
    ("machine-id-empty", "machine-id:"),
    ("bad-prefix-length", "10.0.0.0/33"),
    ("bad-octet", "300.1.1.1"),
    ("bare-number", "10"),
    ("three-octets", "1.2.3"),
    ("double-prefix", "10.0.0.0/8/9"),
    ("bad-ipv6", "2001:db8:::1"),
    ("colon-hostname", "host:22"),
]


@pytest.mark.parametrize("selector", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_selector_raises(selector):
    with pytest.raises(ValueError):
        parse_selector(selector)
    with pytest.raises(ValueError):
        matches(["web-*", selector], FACTS)  # refused even next to one that matches


MATCHES = [
    ("glob-case-insensitive", ["web-*"], True),
    ("glob-upper-selector", ["WEB-0?.EXAMPLE.COM"], True),
    ("exact-name", ["web-01.example.com"], True),
    ("glob-whole-name-only", ["web-01"], False),
    ("glob-other", ["db-*"], False),
    ("star-matches-all", ["*"], True),
    ("glob-class", ["web-0[0-9].example.com"], True),
    ("glob-class-miss", ["web-0[2-9].example.com"], False),
    ("machine-id", [f"machine-id:{MID}"], True),
    ("machine-id-upper", [f"machine-id:{MID.upper()}"], True),
    ("machine-id-other", ["machine-id:" + "f" * 32], False),
    ("ipv4-network", ["10.0.0.0/8"], True),
    ("ipv4-network-miss", ["10.2.0.0/16"], False),
    ("ipv4-address", ["192.0.2.7"], True),
    ("ipv4-address-miss", ["192.0.2.8"], False),
    ("ipv6-network", ["2001:db8::/32"], True),
    ("ipv6-network-miss", ["2001:db9::/32"], False),
    ("ipv6-loopback", ["::1"], True),
    ("any-of-several", ["db-*", "machine-id:" + "f" * 32, "10.1.2.0/24"], True),
    ("none-of-several", ["db-*", "172.16.0.0/12"], False),
    ("empty-list", [], False),
]


@pytest.mark.parametrize("selectors,expected", [m[1:] for m in MATCHES],
                         ids=[m[0] for m in MATCHES])
def test_matches(selectors, expected):
    assert matches(selectors, FACTS) is expected


def test_machine_id_never_matches_a_host_without_one():
    bare = HostFacts(hostname="web-01")
    assert matches([f"machine-id:{MID}"], bare) is False


def test_ipv4_network_does_not_match_an_ipv4_mapped_ipv6_address():
    """Families are compared, never converted: ::ffff:10.1.2.3 is not in 10.0.0.0/8."""
    mapped = HostFacts(hostname="h", addresses=(ipaddress.ip_address("::ffff:10.1.2.3"),))
    assert matches(["10.0.0.0/8"], mapped) is False


def test_network_does_not_match_a_host_without_addresses():
    assert matches(["0.0.0.0/0", "::/0"], HostFacts(hostname="h")) is False


def test_addresses_are_looked_up_only_for_network_selectors():
    import ipaddress

    from hostd.policy.hostmatch import HostFacts, matches

    calls = []

    def lookup():
        calls.append(1)
        return (ipaddress.ip_address("10.1.2.3"),)

    facts = HostFacts("web-1", "", lookup=lookup)
    assert matches(["web-*"], facts) and calls == []
    assert matches(["10.0.0.0/8"], facts) and calls == [1]
    assert not matches(["192.168.0.0/16"], facts)
