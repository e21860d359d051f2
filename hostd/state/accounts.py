"""Users and groups: look-ups, and membership changes through shadow-utils' gpasswd.

hostd never edits /etc/group or /etc/gshadow itself: gpasswd locks like every other tool
(lckpwdf), keeps gshadow in step and flushes nscd/sssd caches. `Accounts` is the
interface; `NssAccounts` answers from NSS in production, `FileAccounts` from a sandbox
root's etc/passwd and etc/group (gpasswd then runs with `-Q ROOT`). `accounts_for(paths)`
picks one. Both read the group and gshadow *files* when reconcile checks that the two
agree, since gpasswd writes them one after the other and can be killed in between.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from hostd.errors import JitError
from hostd.paths import Paths

GPASSWD = "/usr/bin/gpasswd"
NOT_A_MEMBER = 3  # gpasswd's exit status for `-d` of a user who is not in the group
# gpasswd (shadow 4.13) exits 1 and says "cannot lock /etc/group; try again later." when
# another process holds group.lock or gshadow.lock with a live pid (a dead pid's lock it
# removes itself). Measured on Debian 12; messages read under LC_ALL=C.
LOCK_FAILED = 1
LOCK_MESSAGE = "cannot lock"
LOCK_RETRY_WAITS = (0.1, 0.2, 0.4, 0.8, 1.5)  # 3 s at most, then the sweep takes over


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: str
    shell: str
    gids: tuple[int, ...]  # primary first, then supplementary, as getgrouplist(3) gives
    group: str  # the primary group's name ("" when it has none)


def _uid_spec(spec: str) -> int | None:
    """`#1001` -> 1001; anything else -> None (a name)."""
    if spec.startswith("#") and spec[1:].isascii() and spec[1:].isdigit():
        return int(spec[1:])
    return None


class Accounts(ABC):
    """Look-ups and gpasswd changes, the same over NSS and over a sandbox root."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    # look-ups (per implementation) ------------------------------------------------------

    @abstractmethod
    def _passwd(self) -> list[tuple[str, int, int]]:
        """Every user as (name, uid, primary gid)."""

    @abstractmethod
    def _groups(self) -> list[tuple[str, int, list[str]]]:
        """Every group as (name, gid, listed members)."""

    @abstractmethod
    def account(self, spec: str) -> Account | None:
        """A user named `spec`, or `#UID` as sudo -u takes it, with what running a
        command as them needs (sudo's runas account)."""

    @abstractmethod
    def user_by_uid(self, uid: int) -> str | None: ...

    @abstractmethod
    def uid_of(self, user: str) -> int | None: ...

    @abstractmethod
    def group_exists(self, group: str) -> bool: ...

    @abstractmethod
    def is_member(self, user: str, group: str) -> bool:
        """Listed in the group, or the group is the user's primary group."""

    @abstractmethod
    def members_of(self, group: str) -> set[str]:
        """The group's listed members, looked up by name (no enumeration of NSS)."""

    @abstractmethod
    def groups_of(self, user: str) -> set[str]:
        """Groups the user belongs to now (for %group members in the policy)."""

    def gid_of(self, group: str) -> int | None:
        """The group's gid: what running processes hold in their credentials."""
        return next((gid for name, gid, _ in self._groups() if name == group), None)

    # the files gpasswd writes -----------------------------------------------------------

    @property
    def group_file(self) -> Path:
        return self.paths.root / "etc" / "group"

    @property
    def gshadow_file(self) -> Path:
        return self.paths.root / "etc" / "gshadow"

    def group_file_members(self) -> dict[str, set[str]]:
        """Listed members per group in the local group file (4th field), not NSS: what
        gpasswd wrote, with no cache in between."""
        return _members_field(self.group_file)

    def gshadow_members(self) -> dict[str, set[str]] | None:
        """Listed members per group in gshadow (4th field); None when there is no gshadow,
        so there is nothing to keep in step."""
        if not self.gshadow_file.exists():
            return None
        return _members_field(self.gshadow_file)

    # changes ----------------------------------------------------------------------------

    def gpasswd_prefix(self) -> list[str]:
        """The gpasswd command before the flag (`-Q ROOT` in a sandbox)."""
        return [GPASSWD]

    def _gpasswd(self, flag: str, user: str, group: str) -> subprocess.CompletedProcess:
        """Run gpasswd; retry promptly while another process (or the gpasswd a crash left
        running) holds the lock, so a restart does not leave memberships wrong until the
        next sweep."""
        cmd = [*self.gpasswd_prefix(), flag, user, group]
        env = {**os.environ, "LC_ALL": "C"}  # the lock message is matched below
        result = _run(cmd, env)
        for wait in LOCK_RETRY_WAITS:
            if not is_lock_failure(result):
                break
            time.sleep(wait)
            result = _run(cmd, env)
        return result

    def add(self, user: str, group: str) -> None:
        """Also repairs a half membership: `-a` of a user listed in only one of group and
        gshadow lists them in both (measured, shadow 4.13)."""
        result = self._gpasswd("-a", user, group)
        if result.returncode != 0:
            raise JitError("internal", f"gpasswd -a {user} {group} failed: "
                                       f"{result.stderr.strip()[:200]}")

    def remove(self, user: str, group: str) -> None:
        """Idempotent: a user already out of the group is not an error. A user listed in
        only one of group and gshadow is taken out of both (measured, shadow 4.13)."""
        result = self._gpasswd("-d", user, group)
        if result.returncode not in (0, NOT_A_MEMBER):
            raise JitError("internal", f"gpasswd -d {user} {group} failed: "
                                       f"{result.stderr.strip()[:200]}")


class NssAccounts(Accounts):
    """Production: pwd/grp through NSS; a user's groups through getgrouplist(3)."""

    def _passwd(self) -> list[tuple[str, int, int]]:
        return [(p.pw_name, p.pw_uid, p.pw_gid) for p in pwd.getpwall()]

    def _groups(self) -> list[tuple[str, int, list[str]]]:
        return [(g.gr_name, g.gr_gid, list(g.gr_mem)) for g in grp.getgrall()]

    def account(self, spec: str) -> Account | None:
        uid = _uid_spec(spec)
        try:
            p = pwd.getpwuid(uid) if uid is not None else pwd.getpwnam(spec)
            gids = os.getgrouplist(p.pw_name, p.pw_gid)
        except (KeyError, ValueError, OverflowError, OSError):
            return None
        try:
            group = grp.getgrgid(p.pw_gid).gr_name
        except KeyError:
            group = ""
        return Account(p.pw_name, p.pw_uid, p.pw_gid, p.pw_dir, p.pw_shell,
                       (p.pw_gid, *(g for g in gids if g != p.pw_gid)), group)

    def user_by_uid(self, uid: int) -> str | None:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return None

    def uid_of(self, user: str) -> int | None:
        try:
            return pwd.getpwnam(user).pw_uid
        except KeyError:
            return None

    def group_exists(self, group: str) -> bool:
        try:
            grp.getgrnam(group)
            return True
        except KeyError:
            return False

    def gid_of(self, group: str) -> int | None:
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            return None

    def is_member(self, user: str, group: str) -> bool:
        try:
            g = grp.getgrnam(group)
            return user in g.gr_mem or pwd.getpwnam(user).pw_gid == g.gr_gid
        except KeyError:
            return False

    def members_of(self, group: str) -> set[str]:
        try:
            return set(grp.getgrnam(group).gr_mem)
        except KeyError:
            return set()

    def groups_of(self, user: str) -> set[str]:
        """As login does: no enumeration of every group in NSS."""
        try:
            gids = os.getgrouplist(user, pwd.getpwnam(user).pw_gid)
        except KeyError:
            return set()
        names = set()
        for gid in gids:
            with contextlib.suppress(KeyError):
                names.add(grp.getgrgid(gid).gr_name)
        return names


class FileAccounts(Accounts):
    """A sandbox root: its etc/passwd, etc/group and etc/gshadow; gpasswd `-Q ROOT`."""

    def _passwd(self) -> list[tuple[str, int, int]]:
        return [(f[0], int(f[2]), int(f[3])) for f in _fields(self.paths.passwd, 7)]

    def _groups(self) -> list[tuple[str, int, list[str]]]:
        return [(f[0], int(f[2]), _split_members(f[3])) for f in _fields(self.paths.group, 4)]

    def account(self, spec: str) -> Account | None:
        uid = _uid_spec(spec)
        row = next((f for f in _fields(self.paths.passwd, 7)
                    if (int(f[2]) == uid if uid is not None else f[0] == spec)), None)
        if row is None:
            return None
        name, gid = row[0], int(row[3])
        groups = self._groups()
        extra = tuple(g for n, g, members in groups if name in members and g != gid)
        group = next((n for n, g, _ in groups if g == gid), "")
        return Account(name, int(row[2]), gid, row[5], row[6], (gid, *extra), group)

    def user_by_uid(self, uid: int) -> str | None:
        return next((name for name, u, _ in self._passwd() if u == uid), None)

    def uid_of(self, user: str) -> int | None:
        return next((u for name, u, _ in self._passwd() if name == user), None)

    def group_exists(self, group: str) -> bool:
        return any(name == group for name, _, _ in self._groups())

    def is_member(self, user: str, group: str) -> bool:
        gid = None
        for name, g_id, members in self._groups():
            if name == group:
                if user in members:
                    return True
                gid = g_id
        return gid is not None and any(n == user and g == gid for n, _, g in self._passwd())

    def members_of(self, group: str) -> set[str]:
        return next((set(m) for name, _, m in self._groups() if name == group), set())

    def groups_of(self, user: str) -> set[str]:
        primary = {g for n, _, g in self._passwd() if n == user}
        return {name for name, gid, members in self._groups() if user in members or gid in primary}

    def gpasswd_prefix(self) -> list[str]:
        return [GPASSWD, "-Q", str(self.paths.root)]


def accounts_for(paths: Paths) -> Accounts:
    """NSS for the real root, the sandbox's files under --root."""
    return FileAccounts(paths) if paths.sandboxed else NssAccounts(paths)


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False, env=env)


def is_lock_failure(result: subprocess.CompletedProcess) -> bool:
    """gpasswd gave up because group.lock or gshadow.lock is held: worth a retry."""
    return result.returncode == LOCK_FAILED and LOCK_MESSAGE in (result.stderr or "")


def disagreements(group: dict[str, set[str]],
                  gshadow: dict[str, set[str]] | None) -> set[tuple[str, str]]:
    """(user, group) listed in exactly one of group and gshadow: what a gpasswd killed
    between writing the two files leaves behind."""
    if gshadow is None:
        return set()
    pairs = set()
    for name in group.keys() | gshadow.keys():
        for user in group.get(name, set()) ^ gshadow.get(name, set()):
            pairs.add((user, name))
    return pairs


def _split_members(field: str) -> list[str]:
    return [m for m in field.split(",") if m]


def _members_field(path: Path) -> dict[str, set[str]]:
    return {f[0]: set(_split_members(f[3])) for f in _fields(path, 4)}


_cache: dict[Path, tuple[tuple[int, int, int], list[list[str]]]] = {}


def _fields(path: Path, count: int) -> list[list[str]]:
    """Parsed colon files, re-read only when the file changed."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return []
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(":")
        if len(parts) >= count and parts[0] and not line.startswith(("#", "+", "-")):
            rows.append(parts)
    _cache[path] = (stamp, rows)
    return rows
