"""Users and groups: look-ups, and membership changes through shadow-utils' gpasswd.

hostd never edits /etc/group or /etc/gshadow itself: gpasswd locks like every other tool
(lckpwdf), keeps gshadow in step and flushes nscd/sssd caches. Under --root, look-ups
read the sandbox's etc/passwd and etc/group, and gpasswd runs with `-Q ROOT`.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import subprocess
from pathlib import Path

from .errors import JitError
from .paths import Paths

GPASSWD = "/usr/bin/gpasswd"
NOT_A_MEMBER = 3  # gpasswd's exit status for `-d` of a user who is not in the group


class Accounts:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths

    # look-ups ---------------------------------------------------------------------------

    def _passwd(self) -> list[tuple[str, int, int]]:
        if not self.paths.sandboxed:
            return [(p.pw_name, p.pw_uid, p.pw_gid) for p in pwd.getpwall()]
        return [(f[0], int(f[2]), int(f[3])) for f in _fields(self.paths.passwd, 7)]

    def _groups(self) -> list[tuple[str, int, list[str]]]:
        if not self.paths.sandboxed:
            return [(g.gr_name, g.gr_gid, list(g.gr_mem)) for g in grp.getgrall()]
        return [(f[0], int(f[2]), [m for m in f[3].split(",") if m])
                for f in _fields(self.paths.group, 4)]

    def user_by_uid(self, uid: int) -> str | None:
        if not self.paths.sandboxed:
            try:
                return pwd.getpwuid(uid).pw_name
            except KeyError:
                return None
        return next((name for name, u, _ in self._passwd() if u == uid), None)

    def uid_of(self, user: str) -> int | None:
        if not self.paths.sandboxed:
            try:
                return pwd.getpwnam(user).pw_uid
            except KeyError:
                return None
        return next((u for name, u, _ in self._passwd() if name == user), None)

    def group_exists(self, group: str) -> bool:
        if not self.paths.sandboxed:
            try:
                grp.getgrnam(group)
                return True
            except KeyError:
                return False
        return any(name == group for name, _, _ in self._groups())

    def is_member(self, user: str, group: str) -> bool:
        """Listed in the group, or the group is the user's primary group."""
        if not self.paths.sandboxed:
            try:
                g = grp.getgrnam(group)
                return user in g.gr_mem or pwd.getpwnam(user).pw_gid == g.gr_gid
            except KeyError:
                return False
        gid = None
        for name, g_id, members in self._groups():
            if name == group:
                if user in members:
                    return True
                gid = g_id
        return gid is not None and any(n == user and g == gid for n, _, g in self._passwd())

    def membership_map(self) -> dict[str, set[str]]:
        """Every group's members (listed or by primary group), read once: reconcile checks
        thousands of memberships and must not re-read the group database for each."""
        by_gid: dict[int, set[str]] = {}
        for name, _, gid in self._passwd():
            by_gid.setdefault(gid, set()).add(name)
        return {name: set(members) | by_gid.get(gid, set())
                for name, gid, members in self._groups()}

    def groups_of(self, user: str) -> set[str]:
        """Groups the user belongs to now (for %group members in the policy). In production
        through getgrouplist(3), as login does: no enumeration of every group in NSS."""
        if not self.paths.sandboxed:
            try:
                gids = os.getgrouplist(user, pwd.getpwnam(user).pw_gid)
            except KeyError:
                return set()
            names = set()
            for gid in gids:
                with contextlib.suppress(KeyError):
                    names.add(grp.getgrgid(gid).gr_name)
            return names
        primary = {g for n, _, g in self._passwd() if n == user}
        return {name for name, gid, members in self._groups() if user in members or gid in primary}

    # changes ----------------------------------------------------------------------------

    def _gpasswd(self, flag: str, user: str, group: str) -> subprocess.CompletedProcess:
        cmd = [GPASSWD]
        if self.paths.sandboxed:
            cmd += ["-Q", str(self.paths.root)]
        cmd += [flag, user, group]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    def add(self, user: str, group: str) -> None:
        result = self._gpasswd("-a", user, group)
        if result.returncode != 0:
            raise JitError("internal", f"gpasswd -a {user} {group} failed: "
                                       f"{result.stderr.strip()[:200]}")

    def remove(self, user: str, group: str) -> None:
        """Idempotent: a user already out of the group is not an error."""
        result = self._gpasswd("-d", user, group)
        if result.returncode not in (0, NOT_A_MEMBER):
            raise JitError("internal", f"gpasswd -d {user} {group} failed: "
                                       f"{result.stderr.strip()[:200]}")


_cache: dict[Path, tuple[tuple[int, int, int], list[list[str]]]] = {}


def _fields(path: Path, count: int) -> list[list[str]]:
    """Parsed colon files of a sandbox root, re-read only when the file changed."""
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
