"""Fakes shared by the unit and the integration tests, one of each, kept in step with the
interfaces they stand in for (tests/unit/test_fakes.py): FakeAccounts is an
hostd.state.accounts.Accounts, FakeTimers an hostd.state.timers.ExpiryTimers, Clock a
manual clock for anything that takes `clock=`.

Import as `from fakes import ...` (tests/unit and tests/integration put tests/ on
sys.path in their conftest).
"""

from __future__ import annotations

from hostd.errors import JitError
from hostd.state.accounts import Account, Accounts


class Clock:
    """A clock that moves only when a test sets or advances `t`."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeTimers:
    """Expiry timers that only log what hostd asked (ExpiryTimers)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    async def arm(self, grant_id: str, exp: int) -> None:
        self.log.append(("arm", grant_id))

    async def cancel(self, grant_id: str) -> None:
        self.log.append(("cancel", grant_id))

    async def armed(self) -> set[str]:
        return set()


class FakeAccounts(Accounts):
    """Users and groups in memory; add/remove can be told to fail like gpasswd would.

    `members` is the group file's member lists. gshadow follows it (as gpasswd keeps
    them) until a test splits a membership with `split`, as a gpasswd killed between
    writing the two files would; add/remove then repair both, as real gpasswd does.
    Groups in `directory` are answered by name but missing from an enumeration, like
    sssd's with `enumerate = false`.
    """

    def __init__(self) -> None:  # no Paths: a code path reaching the files fails loudly
        self.uids = {"root": 0, "alice": 1000, "bob": 1001}
        self.primary = {"root": "root", "alice": "alice", "bob": "bob"}
        self.members: dict[str, set[str]] = {
            g: set() for g in ("root", "alice", "bob", "docker", "adm", "staff")}
        self.shadow: dict[str, set[str]] | None = None  # None: in step with `members`
        self.directory: set[str] = set()
        self.fail_add: set[tuple[str, str]] = set()
        self.fail_remove: set[tuple[str, str]] = set()
        self.log: list[tuple[str, str, str]] = []

    # the look-ups of the Accounts interface -------------------------------------------

    def _passwd(self) -> list[tuple[str, int, int]]:
        return [(name, uid, self.gid_of(self.primary.get(name, "")) or 0)
                for name, uid in self.uids.items()]

    def _groups(self) -> list[tuple[str, int, list[str]]]:
        return [(g, self.gid_of(g) or 0, sorted(m)) for g, m in self.members.items()
                if g not in self.directory]

    def account(self, spec: str) -> Account | None:
        name = (self.user_by_uid(int(spec[1:])) if spec.startswith("#") and spec[1:].isdigit()
                else spec)
        if name not in self.uids:
            return None
        group = self.primary.get(name, "")
        primary = self.gid_of(group)
        others = sorted(g for g in (self.gid_of(x) for x in self.groups_of(name) if x != group)
                        if g is not None)
        return Account(name, self.uids[name], primary or 0, f"/home/{name}", "/bin/bash",
                       tuple([primary or 0, *others]), group)

    def user_by_uid(self, uid: int) -> str | None:
        return next((n for n, u in self.uids.items() if u == uid), None)

    def uid_of(self, user: str) -> int | None:
        return self.uids.get(user)

    def group_exists(self, group: str) -> bool:
        return group in self.members

    def gid_of(self, group: str) -> int | None:
        """root 0, the others 2000 + their place in name order (stable per test)."""
        if group not in self.members:
            return None
        return 0 if group == "root" else 2000 + sorted(self.members).index(group)

    def is_member(self, user: str, group: str) -> bool:
        return user in self.members.get(group, set()) or self.primary.get(user) == group

    def members_of(self, group: str) -> set[str]:
        return set(self.members.get(group, set()))

    def groups_of(self, user: str) -> set[str]:
        return {g for g in self.members if self.is_member(user, g)}

    def group_file_members(self) -> dict[str, set[str]]:
        return {g: set(m) for g, m in self.members.items()}

    def gshadow_members(self) -> dict[str, set[str]] | None:
        source = self.members if self.shadow is None else self.shadow
        return {g: set(m) for g, m in source.items()}

    # test controls ----------------------------------------------------------------------

    def split(self, user: str, group: str, *, in_group: bool, in_gshadow: bool) -> None:
        """Leave `user` listed in only the files named, as a killed gpasswd would."""
        if self.shadow is None:
            self.shadow = {g: set(m) for g, m in self.members.items()}
        for table, listed in ((self.members, in_group), (self.shadow, in_gshadow)):
            members = table.setdefault(group, set())
            (members.add if listed else members.discard)(user)

    def add(self, user: str, group: str) -> None:
        self.log.append(("add", user, group))
        if (user, group) in self.fail_add:
            raise JitError("internal", f"gpasswd -a {user} {group} failed")
        self.members[group].add(user)
        if self.shadow is not None:
            self.shadow.setdefault(group, set()).add(user)

    def remove(self, user: str, group: str) -> None:
        self.log.append(("remove", user, group))
        if (user, group) in self.fail_remove:
            raise JitError("internal", f"gpasswd -d {user} {group} failed")
        self.members[group].discard(user)
        if self.shadow is not None:
            self.shadow.setdefault(group, set()).discard(user)

    def listed(self, user: str, group: str) -> bool:
        """In the group file (what the tests have always looked at)."""
        return user in self.members[group]

    def in_step(self, user: str, group: str) -> bool:
        """Listed in both group and gshadow, or in neither."""
        shadow = self.gshadow_members() or {}
        return (user in self.members[group]) == (user in shadow.get(group, set()))
