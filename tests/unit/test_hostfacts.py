"""hostfacts: this host's facts for `hosts` selectors, read outside the pure policy."""

from __future__ import annotations


def test_address_cache_rereads_after_ttl(monkeypatch):
    import ipaddress

    from hostd.state import hostfacts

    reads = iter([(ipaddress.ip_address("10.0.0.1"),), (ipaddress.ip_address("10.0.0.2"),)])
    monkeypatch.setattr(hostfacts, "read_addresses", lambda: next(reads))
    clock = [100.0]
    monkeypatch.setattr(hostfacts.time, "monotonic", lambda: clock[0])
    cache = hostfacts.AddressCache(ttl=30)
    assert str(cache()[0]) == "10.0.0.1"
    clock[0] += 10
    assert str(cache()[0]) == "10.0.0.1", "cached within the ttl"
    clock[0] += 25
    assert str(cache()[0]) == "10.0.0.2", "read again after the ttl"


def test_read_facts_under_a_sandbox_root(tmp_path):
    from hostd.state.hostfacts import AddressCache, read_facts

    (tmp_path / "hostname").write_text("web-7\n")
    (tmp_path / "machine-id").write_text("AB" * 16 + "\n")
    facts = read_facts(tmp_path / "hostname", tmp_path / "machine-id", sandboxed=True)
    assert (facts.hostname, facts.machine_id) == ("web-7", "ab" * 16)
    assert isinstance(facts.lookup, AddressCache), "addresses are read lazily, through netlink"
    missing = read_facts(tmp_path / "none", tmp_path / "none", sandboxed=True)
    assert missing.hostname and missing.machine_id == ""
