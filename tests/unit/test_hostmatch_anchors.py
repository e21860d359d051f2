"""hostmatch: selectors are matched whole; `$` used to accept a trailing newline."""

from __future__ import annotations

import pytest

from hostd.policy.hostmatch import parse_selector


@pytest.mark.parametrize("selector", ["web-1\n", "machine-id:0123456789abcdef0123456789abcdef\n"],
                         ids=["hostname", "machine-id"])
def test_host_selector_with_trailing_newline_is_refused(selector):
    with pytest.raises(ValueError):
        parse_selector(selector)


def test_host_selectors_without_newline_still_parse():
    assert parse_selector("web-*") == ("hostname", "web-*")
    assert parse_selector("machine-id:" + "0" * 32) == ("machine-id", "0" * 32)
