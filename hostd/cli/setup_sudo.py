"""`jit setup sudo --enable | --disable`: switch sudo's policy to jit_sudo.so and back.

The switch is one `Plugin` line in /etc/sudo.conf. Enabling keeps a backup of the file
as it was and writes the new one by atomic rename; disabling puts the backup back byte
for byte when the file is still as we left it, and otherwise removes only our line, so
an administrator's later edits survive. A second policy plugin line (sudoers_policy)
would be refused by sudo, so an active one is commented out, marked, and restored.
The text functions are pure; the file functions do the I/O.
"""

from __future__ import annotations

import os
from pathlib import Path

PLUGIN_LINE = "Plugin jit_policy /usr/libexec/jitaccess/jit_sudo.so"
# sudo.conf has no trailing comments (words after the path are plugin options): the
# mark is a line of its own above ours.
MARK = "# jitaccess: sudo's policy is jit_sudo.so (`jit setup sudo --disable` restores)"
DISABLED = "#jitaccess-disabled# "


def _is_policy_line(line: str) -> bool:
    words = line.split()
    return len(words) >= 3 and words[0] == "Plugin" and words[1].endswith("_policy")


def enabled(text: str) -> bool:
    return any(line.split() == PLUGIN_LINE.split() for line in text.splitlines())


def enable_text(text: str) -> str:
    """sudo.conf with our Plugin line first and any other policy plugin commented out."""
    if enabled(text):
        return text
    out = [MARK, PLUGIN_LINE]
    for line in text.splitlines():
        out.append(DISABLED + line if _is_policy_line(line) else line)
    return "\n".join(out) + "\n"


def disable_text(text: str) -> str:
    """sudo.conf without our line, other policy plugins as they were."""
    out = []
    for line in text.splitlines():
        if line.split() == PLUGIN_LINE.split() or line == MARK:
            continue
        out.append(line.removeprefix(DISABLED))
    return "\n".join(out) + ("\n" if out else "")


def backup_path(conf: Path) -> Path:
    return conf.with_name(conf.name + ".jit-backup")


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Write beside the file, fsync, rename: sudo never reads half a file."""
    tmp = path.with_name(f".{path.name}.jit-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        os.write(fd, text.encode())
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def enable(conf: Path) -> bool:
    """Add our Plugin line, keeping a backup of the file as it was; False if already on."""
    text = conf.read_text() if conf.exists() else ""
    if enabled(text):
        return False
    if conf.exists():
        write_atomically(backup_path(conf), text, 0o644)
    write_atomically(conf, enable_text(text))
    return True


def disable(conf: Path) -> bool:
    """Remove our line: the backup byte for byte if the file is as enable left it, else
    only our line (later edits are kept); False if it was not on."""
    text = conf.read_text() if conf.exists() else ""
    if not enabled(text):
        return False
    backup = backup_path(conf)
    if backup.exists() and enable_text(backup.read_text()) == text:
        write_atomically(conf, backup.read_text())
        backup.unlink()
    else:
        write_atomically(conf, disable_text(text))
    return True


# the lockout guard ------------------------------------------------------------------------

def ways_to_root(cfg, grants: list[dict]) -> list[str]:
    """What lets someone run commands as root once jit_sudo.so is sudo's policy: a
    standing rule, or an active grant whose role has a rule for root."""
    out = [f"[[standing]] for {', '.join(st.members)}" for st in cfg.standing
           if any(rule.runas == "root" for rule in st.sudo)]
    for g in grants:
        role = cfg.roles.get(g["role"])
        if role is not None and any(rule.runas == "root" for rule in role.sudo):
            out.append(f"grant {g['id']} of {g['user']} (role {g['role']})")
    return out


def uncovered(cfg, admins: dict[str, set[str]]) -> list[str]:
    """Users sudoers lets run anything today whom no standing rule for root covers: they
    lose sudo when jit_sudo.so takes over. `admins`: user -> the user's groups."""
    from hostd.policy.approvals import in_members

    root_standing = [st for st in cfg.standing if any(r.runas == "root" for r in st.sudo)]
    return sorted(user for user, groups in admins.items()
                  if not any(in_members(st.members, user, groups) for st in root_standing))


ADMIN_GROUPS = ("sudo", "admin", "wheel")


def sudoers_admins() -> dict[str, set[str]]:
    """Members of the usual admin groups whom sudoers lets run ALL (asked with
    `sudo -n -l -U USER`, as sudoers itself answers), with their groups."""
    import grp
    import pwd
    import re
    import subprocess

    candidates: set[str] = set()
    for name in ADMIN_GROUPS:
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        candidates |= set(g.gr_mem)
        candidates |= {p.pw_name for p in pwd.getpwall() if p.pw_gid == g.gr_gid}
    run_all = re.compile(r"\((ALL|root)(\s*:\s*[^)]*)?\)\s+(\w+:\s*)*ALL")
    out: dict[str, set[str]] = {}
    for user in sorted(candidates):
        result = subprocess.run(["sudo", "-n", "-l", "-U", user], capture_output=True,
                                text=True, timeout=10, check=False)
        if result.returncode == 0 and any(run_all.fullmatch(line.strip())
                                          for line in result.stdout.splitlines()):
            gids = os.getgrouplist(user, pwd.getpwnam(user).pw_gid)
            out[user] = {grp.getgrgid(gid).gr_name for gid in gids}
    return out
