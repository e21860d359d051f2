"""accounts: one interface, NSS and sandbox-file implementations, the group/gshadow readers
reconcile uses, and what counts as gpasswd's lock failure (no gpasswd is run here)."""

from __future__ import annotations

import subprocess

import pytest

from hostd.paths import Paths
from hostd.state.accounts import (
    Accounts,
    FileAccounts,
    NssAccounts,
    accounts_for,
    disagreements,
    is_lock_failure,
)


@pytest.fixture
def root(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0::/:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n"
                                "bob:x:1002:2000::/:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nalice:x:1001:\nsre:x:2000:alice\n"
                               "docker:x:999:alice,bob\n")
    (etc / "gshadow").write_text("root:!::\nalice:!::\nsre:!::alice\ndocker:!::bob\n")
    return tmp_path


def test_accounts_for_picks_the_implementation(root):
    assert isinstance(accounts_for(Paths.for_root(root)), FileAccounts)
    assert isinstance(accounts_for(Paths.for_root("/")), NssAccounts)


def test_the_interface_itself_is_abstract(root):
    with pytest.raises(TypeError):
        Accounts(Paths.for_root(root))


def test_members_of_lists_members_only(root):
    a = accounts_for(Paths.for_root(root))
    assert a.members_of("sre") == {"alice"}, "bob's primary group is not a listed membership"
    assert a.members_of("nope") == set()
    assert a.is_member("bob", "sre")


def test_group_and_gshadow_files_are_read_apart(root):
    a = accounts_for(Paths.for_root(root))
    assert a.group_file_members()["docker"] == {"alice", "bob"}
    assert a.gshadow_members()["docker"] == {"bob"}
    assert disagreements(a.group_file_members(), a.gshadow_members()) == {("alice", "docker")}


def test_no_gshadow_means_nothing_to_keep_in_step(root):
    (root / "etc" / "gshadow").unlink()
    a = accounts_for(Paths.for_root(root))
    assert a.gshadow_members() is None
    assert disagreements(a.group_file_members(), None) == set()


def test_disagreements_cover_both_directions():
    group = {"docker": {"alice", "bob"}, "adm": set()}
    gshadow = {"docker": {"bob"}, "adm": {"carol"}, "extra": {"dave"}}
    assert disagreements(group, gshadow) == {("alice", "docker"), ("carol", "adm"),
                                             ("dave", "extra")}


@pytest.mark.parametrize(("rc", "stderr", "lock"), [
    (1, "gpasswd: cannot lock /etc/group; try again later.\n", True),
    (1, "gpasswd: cannot lock /etc/gshadow; try again later.\n", True),
    (1, "gpasswd: Permission denied.\n", False),
    (3, "gpasswd: user 'alice' is not a member of 'docker'\n", False),
    (0, "", False),
])
def test_lock_failure_is_gpasswds_exit_1_with_its_message(rc, stderr, lock):
    assert is_lock_failure(subprocess.CompletedProcess([], rc, "", stderr)) is lock
