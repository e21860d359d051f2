"""The environment and command_info sudo gets for an allowed command, as sudoers fills
them with Debian 12's defaults (env_reset, env_keep, env_check, secure_path).

Pure: built from the request, the runas account and the resolved command.
"""

from __future__ import annotations

from hostd.policy.sudorequest import DEFAULT_UMASK, Resolved, RunasUser, SudoRequest

# Debian 12's /etc/sudoers and sudo 1.9.13's compiled-in lists (`sudo -V` as root).
SECURE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
ENV_KEEP = ("COLORS", "DISPLAY", "DPKG_COLORS", "HOSTNAME", "KRB5CCNAME", "LS_COLORS",
            "PS1", "PS2", "XAUTHORITY", "XAUTHORIZATION", "XDG_CURRENT_DESKTOP")
ENV_CHECK = ("COLORTERM", "LANG", "LANGUAGE", "LC_*", "LINGUAS", "TERM", "TZ")
CLOSEFROM = 3
MAIL_DIR = "/var/mail"
ZONEINFO = "/usr/share/zoneinfo/"
PATH_MAX = 4096


def _listed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


def _safe_tz(value: str) -> bool:
    """sudoers' TZ check: a zoneinfo path only, no `..`, no blanks or controls."""
    tz = value[1:] if value.startswith(":") else value
    if tz.startswith("/") and not tz.startswith(ZONEINFO):
        return False
    return (".." not in tz.split("/") and len(value) < PATH_MAX
            and all(ch.isprintable() and not ch.isspace() for ch in value))


def _safe(name: str, value: str) -> bool:
    """env_check: kept only without `%` or `/` (format-string and path tricks)."""
    if name == "TZ":
        return _safe_tz(value)
    return "%" not in value and "/" not in value


def reset_env(req: SudoRequest, runas: RunasUser, command_line: str) -> tuple[str, ...]:
    """The environment as env_reset leaves it (sudoers(5) "Command environment"):
    env_keep and (safe) env_check variables of the user, bash functions (values
    starting with `()`) never; PATH is secure_path; HOME, LOGNAME, USER, SHELL, MAIL
    are the runas user's; SUDO_* describe the invoking user."""
    env: dict[str, str] = {}
    for name, value in req.env.items():
        if value.startswith("()"):
            continue
        if _listed(name, ENV_KEEP) or (_listed(name, ENV_CHECK) and _safe(name, value)):
            env[name] = value
    sudo_ps1 = req.env.get("SUDO_PS1")
    if sudo_ps1 is not None and not sudo_ps1.startswith("()"):
        env["PS1"] = sudo_ps1
    env.setdefault("TERM", "unknown")
    env.update({
        "PATH": ":".join(SECURE_PATH), "HOME": runas.home, "LOGNAME": runas.name,
        "USER": runas.name, "SHELL": runas.shell, "MAIL": f"{MAIL_DIR}/{runas.name}",
        "SUDO_USER": req.user, "SUDO_UID": str(req.uid), "SUDO_GID": str(req.gid),
        "SUDO_COMMAND": command_line[:PATH_MAX],
    })
    return tuple(f"{k}={v}" for k, v in sorted(env.items()))


def _group_vector(runas: RunasUser) -> list[int]:
    """getgrouplist(3) always holds the primary group; keep it first, no duplicates."""
    return [runas.gid, *(g for g in dict.fromkeys(runas.groups) if g != runas.gid)]


def command_info(req: SudoRequest, runas: RunasUser, cmd: Resolved) -> tuple[str, ...]:
    """sudo_plugin(5) command_info as sudoers fills it with Debian's defaults: the
    umask is the union of the user's and 0022 (never lowered); fds from 3 closed;
    use_pty (Debian's /etc/sudoers); intercept, so what the command starts comes back
    to `sudo.check` (not for sudoedit: the editor runs as the user)."""
    info = [
        f"command={cmd.run}",
        f"runas_user={runas.name}",
        f"runas_uid={runas.uid}",
        f"runas_gid={runas.gid}",
        f"runas_groups={','.join(str(g) for g in _group_vector(runas))}",
        f"cwd={runas.home if req.login_shell else req.cwd}",
        f"umask={(DEFAULT_UMASK | req.umask) & 0o777:04o}",
        f"closefrom={CLOSEFROM}",
        "use_pty=true",
    ]
    if req.sudoedit:
        info += ["sudoedit=true", f"sudoedit_nfiles={len(cmd.args)}"]
    else:
        info.append("intercept=true")
    return tuple(info)

