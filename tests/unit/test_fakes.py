"""The shared fakes (tests/fakes.py) stay in step with the interfaces they stand in for:
a method hostd adds to Accounts or ExpiryTimers, or a signature it changes, fails here
rather than as an AttributeError deep in some other test."""

from __future__ import annotations

import inspect

import pytest
from fakes import Clock, FakeAccounts, FakeTimers

from hostd.state.accounts import Accounts
from hostd.state.timers import ExpiryTimers

# FakeAccounts' own controls (not part of Accounts): what a test sets or reads.
CONTROLS = {"split", "listed", "in_step"}


def _public(cls: type) -> dict[str, object]:
    return {n: v for n, v in vars(cls).items() if callable(v) and not n.startswith("__")}


@pytest.mark.parametrize("name", sorted(Accounts.__abstractmethods__))
def test_fake_accounts_implements_every_abstract_method(name: str) -> None:
    assert name in vars(FakeAccounts), f"FakeAccounts lacks {name}"
    assert inspect.signature(getattr(FakeAccounts, name)) == \
        inspect.signature(getattr(Accounts, name)), name


def test_fake_accounts_overrides_keep_the_interface_signatures() -> None:
    own = _public(FakeAccounts)
    for name in sorted(set(own) - CONTROLS):
        assert hasattr(Accounts, name), f"FakeAccounts.{name} is not in Accounts"
        assert inspect.signature(own[name]) == inspect.signature(getattr(Accounts, name)), name
    assert issubclass(FakeAccounts, Accounts)
    FakeAccounts()  # instantiable: nothing abstract is left


def test_fake_accounts_never_reaches_gpasswd_or_the_files() -> None:
    """What Accounts does with real files and gpasswd is replaced, so a test can never
    change the host's groups."""
    for name in ("add", "remove", "group_file_members", "gshadow_members", "gid_of"):
        assert name in vars(FakeAccounts), name
    with pytest.raises(AttributeError):  # no Paths: a path the fake lacks fails loudly
        _ = FakeAccounts().group_file


def test_fake_accounts_answers_like_the_interface() -> None:
    fake = FakeAccounts()
    fake.add("alice", "docker")
    assert fake.is_member("alice", "docker") and "docker" in fake.groups_of("alice")
    account = fake.account("#1000")
    assert account is not None and account.name == "alice" and account.group == "alice"
    assert fake.gid_of("docker") in account.gids and account.gids[0] == account.gid
    assert fake.account("nobody") is None
    assert ("alice", 1000, fake.gid_of("alice")) in fake._passwd()


@pytest.mark.parametrize("name", ["arm", "cancel", "armed"])
def test_fake_timers_match_expiry_timers(name: str) -> None:
    assert inspect.signature(getattr(FakeTimers, name)) == \
        inspect.signature(getattr(ExpiryTimers, name))
    assert inspect.iscoroutinefunction(getattr(FakeTimers, name))


def test_clock_moves_only_when_told() -> None:
    clock = Clock(100.0)
    assert clock() == clock() == 100.0
    clock.advance(2.5)
    assert clock() == 102.5
