"""Login gating (`[login]`, DESIGN.md §7): who needs a grant to log in, whether they
hold one, what the PAM module tells them, and the gate file it reads when hostd cannot
answer. Pure functions, except `write_gate`.

A user is gated when `[login] require_grant` names them or a `%group` they belong to;
a gated user is admitted only while holding a live grant whose role (in the policy as
it is now) has `login = true`. Root is never gated: a broken policy or hostd must never
lock the console out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from hostd.events import shown
from hostd.policy.approvals import in_members
from hostd.policy.config import Config
from hostd.policy.durations import format_duration
from hostd.policy.liveness import is_live

GATE_VERSION = 1


@dataclass(frozen=True)
class LoginDecision:
    allowed: bool
    gated: bool
    grant_ids: tuple[str, ...] = ()  # the live login=true grants that admit a gated user
    message: str = ""  # shown to the user on refusal


def gated(require: Iterable[str], user: str, user_groups: set[str]) -> bool:
    """Named in require_grant, directly or through a %group; never root."""
    if user == "root":
        return False
    return in_members(tuple(require), user, user_groups)


def live(grants: Iterable[dict], user: str, now: int) -> list[dict]:
    """The user's grants that hold now: active and not past exp, swept or not."""
    return [g for g in grants if g.get("user") == user and is_live(g, now)]


def login_grants(config: Config, grants: Iterable[dict], user: str, now: int) -> list[dict]:
    """Live grants whose role, as the policy says now, admits logins."""
    return [g for g in live(grants, user, now)
            if (role := config.roles.get(g["role"])) is not None and role.login]


def suggested_role(config: Config, user: str, user_groups: set[str]) -> tuple[str | None, bool]:
    """(role, may_request): a login = true role the user may request here, else any
    login = true role (which only an issuer can grant them), else None."""
    roles = [r for r in config.roles.values() if r.login]
    mine = [r for r in roles if in_members(r.requesters, user, user_groups)]
    chosen = (mine or roles or [None])[0]
    return (chosen.name if chosen is not None else None), bool(mine)


def refusal(host: str, role: str | None, may_request: bool = True) -> str:
    """What a refused user reads: only what this user can do (a request only when they
    are among the role's requesters)."""
    where = shown(host, 60)
    if role is None:
        return (f"jit: logging in to {where} requires an active grant; no role here "
                "admits logins: ask the administrator")
    if not may_request:
        return (f"jit: logging in to {where} requires an active grant of role "
                f"{shown(role, 32)}; ask an administrator for one")
    return f"jit: logging in to {where} requires an active grant; ask with: jit request {role}"


def decide(config: Config, grants: Iterable[dict], user: str, user_groups: set[str],
           now: int, host: str) -> LoginDecision:
    """pam.account's answer for `user`."""
    if not gated(config.login_require_grant, user, user_groups):
        return LoginDecision(True, False)
    admitting = login_grants(config, grants, user, now)
    if admitting:
        return LoginDecision(True, True, tuple(g["id"] for g in admitting))
    return LoginDecision(False, True,
                         message=refusal(host, *suggested_role(config, user, user_groups)))


def session_text(grants: Iterable[dict], now: int) -> str:
    """What a new login session prints: each live grant with its time left, and how new
    groups reach a shell that is already running. Empty without grants."""
    rows = sorted(grants, key=lambda g: g["exp"])
    if not rows:
        return ""
    lines = ["jit: active grants:"]
    for g in rows:
        groups = ", ".join(g["groups"]) or "no groups"
        lines.append(f"jit:   {shown(g['role'], 32)} ({shown(groups, 60)}): "
                     f"{format_duration(g['exp'] - now)} left (grant {g['id']})")
    first = next((grp for g in rows for grp in g["groups"]), None)
    hint = (f"; `newgrp {shown(first, 32)}` for a shell that is already running" if first
            else "")
    lines.append(f"jit: a grant's groups apply to logins made after it was activated{hint}")
    return "\n".join(lines)


# The gate file: what pam_jit needs when hostd cannot answer ---------------------------------

def gate_rules(config: Config) -> dict:
    """The part of the policy the PAM module applies on its own: who is gated, and what
    happens to everyone else while hostd is unreachable."""
    return {"v": GATE_VERSION, "require_grant": list(config.login_require_grant),
            "when_unreachable": config.login_when_unreachable}


def write_gate(path: Path, config: Config) -> bool:
    """Write the gate file (root-only, atomic rename, fsynced) when it changed; True if
    written. Called whenever hostd loads a policy, so the file holds across reboots."""
    data = (json.dumps(gate_rules(config), sort_keys=True) + "\n").encode()
    try:
        if path.read_bytes() == data and (os.stat(path).st_mode & 0o077) == 0:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return True
