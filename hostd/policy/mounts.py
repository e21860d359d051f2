"""Mounts and where set-id bits take effect: /proc/PID/mountinfo parsed, the mounts a
setgid walk covers (`effective`), and the user-writable places exposed to setgid residue
(`jit check-config` and hostd's start event). Pure: text in, data out."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# Filesystems no user writes set-id files to, or on which no exec happens.
PSEUDO = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "tracefs",
    "securityfs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "autofs",
    "binfmt_misc", "efivarfs", "nsfs", "rpc_pipefs", "selinuxfs", "nfsd",
})
# Places where ordinary users can write, named by `jit check-config` and the start event.
USER_WRITABLE = ("/home", "/tmp", "/var/tmp", "/dev/shm", "/var/mail",  # noqa: S108 - named, not used
                 "/var/crash")

@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    options: frozenset[str]  # per-mount and superblock options together
    source: str  # major:minor and root inside the filesystem: bind mounts share it


def _unescape(field: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as \ooo octal."""
    if "\\" not in field:
        return field
    out, i = bytearray(), 0
    raw = field.encode("utf-8", "surrogateescape")
    while i < len(raw):
        if raw[i:i + 1] == b"\\" and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def parse_mountinfo(text: str) -> list[Mount]:
    """Mounts from /proc/self/mountinfo (proc(5)); bad lines are skipped."""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        a, b = left.split(), right.split()
        if not sep or len(a) < 6 or len(b) < 3:
            continue
        options = frozenset(a[5].split(",")) | frozenset(b[2].split(","))
        out.append(Mount(_unescape(a[4]), b[0], options, f"{a[2]}:{_unescape(a[3])}"))
    return out


def effective(mounts: Iterable[Mount]) -> list[Mount]:
    """Mounts where a set-id bit takes effect and a user could have set one: not nosuid,
    not read-only, not a pseudo filesystem; one mount point per filesystem subtree (a
    bind mount of what another mount shows is walked once)."""
    seen, out = set(), []
    for m in mounts:
        if "nosuid" in m.options or "ro" in m.options or m.fstype in PSEUDO:
            continue
        if m.source in seen:
            continue
        seen.add(m.source)
        out.append(m)
    return sorted(out, key=lambda m: m.point)


def mount_of(path: str, mounts: Iterable[Mount]) -> Mount | None:
    """The mount a path is on: the longest mount point above it (the last one mounted
    there wins, as in the kernel)."""
    best: Mount | None = None
    for m in mounts:
        p = m.point.rstrip("/")
        if (path == m.point or path.startswith(p + "/")) and (
                best is None or len(m.point) >= len(best.point)):
            best = m
    return best


def exposed(mounts: list[Mount], places: Iterable[str] = USER_WRITABLE,
            exists: Callable[[str], bool] = os.path.isdir) -> list[tuple[str, str]]:
    """(place, mount point) for each user-writable place whose mount honours set-id
    bits: there a group grant's setgid file outlives the grant until hostd clears it."""
    out = []
    for place in places:
        if not exists(place):
            continue
        m = mount_of(place, mounts)
        if m is not None and m in effective(mounts):
            out.append((place, m.point))
    return out


def exposure_text(found: list[tuple[str, str]]) -> str:
    places = ", ".join(f"{p} (mount {m})" if p != m else p for p, m in found)
    return (f"set-id bits take effect where users can write: {places}; a setgid file "
            "made during a group grant keeps the group after it until hostd clears it "
            "at the grant's end. Mounting these nosuid closes this for good")
