"""Finding: approvers in directory groups are never told. approvers_of enumerated every NSS
user and group; sssd with `enumerate = false` leaves directory groups out of an
enumeration, so %group approvers were never notified. Groups are now looked up by name."""

from __future__ import annotations

import pytest
from test_approvals import World


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    world.accounts.directory.add("sre")  # like sssd: getgrnam answers, getgrall does not
    yield world
    world.store.close()


def test_approvers_in_directory_groups_are_told(w):
    assert "sre" not in {g for g, _, _ in w.accounts._groups()}, "the fake enumerates like sssd"
    r = w.requests.create(1000, "docker", 600, "deploy")
    assert w.notices == [("created", r["id"], ["bob", "carol"])]


def test_approvers_in_directory_groups_resolved_without_enumeration(w):
    w.accounts._groups = lambda: pytest.fail("approvers_of enumerated every group")
    role = w.core.config.roles["docker"]
    assert w.requests.approvers_of(role, "carol") == ["bob"]
