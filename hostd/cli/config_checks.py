"""What `jit check-config` adds to "the files parse" (issue 20): names that do not exist
on this host, approvals that can never be given, and each role's effective max_ttl.

These are warnings, not errors: a directory (sssd) may know a user this host cannot look
up yet, and hostd serves such a policy. They catch the README-shaped mistakes a new
admin makes: `%oncall` on a fresh host, an `approve` guardrail under a role nobody may
approve.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from hostd.policy.config import Config, Role
from hostd.policy.durations import compact_duration
from hostd.state.accounts import Accounts


def _missing(members: tuple[str, ...], accounts: Accounts) -> list[str]:
    """Members (`user` or `%group`) this host cannot resolve."""
    out = []
    for m in members:
        if m.startswith("%"):
            if not accounts.group_exists(m[1:]):
                out.append(f"group {m!r} does not exist on this host")
        elif accounts.uid_of(m) is None:
            out.append(f"user {m!r} does not exist on this host")
    return out


def _decidable(role: Role, accounts: Accounts) -> int:
    """How many distinct users this host knows among the role's approvers."""
    users: set[str] = set()
    for m in role.approvers:
        if m.startswith("%"):
            users |= accounts.members_of(m[1:])
        elif accounts.uid_of(m) is not None:
            users.add(m)
    return len(users)


def name_warnings(cfg: Config, accounts: Accounts) -> list[str]:
    """Every policy list of users and %groups, resolved on this host."""
    lists: list[tuple[str, tuple[str, ...]]] = []
    for r in cfg.roles.values():
        lists += [(f"role {r.name}: requesters", r.requesters),
                  (f"role {r.name}: approvers", r.approvers)]
    lists += [(f"standing[{i}]: members", s.members) for i, s in enumerate(cfg.standing)]
    lists.append(("login: require_grant", cfg.login_require_grant))
    return [f"{where}: {problem}" for where, members in lists
            for problem in _missing(members, accounts)]


def approval_warnings(cfg: Config, accounts: Accounts) -> list[str]:
    """Requests and paused sudo commands that nobody could ever decide."""
    out = []
    pausing = [g.describe() for g in cfg.guardrails if g.action == "approve"]
    for r in cfg.roles.values():
        if r.sudo and pausing and not r.approvers:
            out.append(f"role {r.name}: no approvers, so sudo commands an approve guardrail "
                       f"matches ({'; '.join(pausing)}) can never be "
                       "approved under it (add approvers to the role)")
        if r.requesters and r.approvers and r.approvals > 0:
            known = _decidable(r, accounts)
            if known < r.approvals:
                out.append(f"role {r.name}: approvals = {r.approvals} but this host knows "
                           f"{known} approver(s): its requests can never be approved")
        if r.moderation is not None and _decidable(r, accounts) < r.moderation.watchers:
            out.append(f"role {r.name}: moderation needs {r.moderation.watchers} "
                       f"moderator(s) but this host knows {_decidable(r, accounts)} "
                       "approver(s): its sessions can never start")
    if pausing and cfg.standing:
        out.append("standing rules have no approvers: commands they allow that an approve "
                   "guardrail matches are refused (run them from a grant)")
    return out


def guardrail_warnings(cfg: Config, is_file=os.path.isfile) -> list[str]:
    """A `program` guardrail is compared by file; one naming no file on this host can
    only match that exact path (a typo there guards nothing). `sudoedit` is sudoers'
    pseudo-command, no file."""
    return [f"guardrails[{i}]: program {g.program!r} is not a file on this host, so the "
            "guardrail matches only that path" for i, g in enumerate(cfg.guardrails)
            if g.program and g.program != "sudoedit" and not is_file(g.program)]


def guardrail_lines(cfg: Config) -> list[str]:
    """Each guardrail in both forms' words, for check-config's summary."""
    return [f"guardrails[{i}]: {g.describe()}" for i, g in enumerate(cfg.guardrails)]


def oidc_warnings(cfg: Config) -> list[str]:
    """claims_to_roles rules that can never give their role (issue 21): the role is not
    defined, or does not list the issuer; an OIDC issuer no role lists."""
    out = []
    for issuer in cfg.oidc.values():
        for i, rule in enumerate(issuer.claims_to_roles):
            for name in rule.roles:
                role = cfg.roles.get(name)
                if role is None:
                    out.append(f"issuer {issuer.name}: claims_to_roles[{i}] names role "
                               f"{name!r}, which is not defined")
                elif issuer.name not in role.issuers:
                    out.append(f"issuer {issuer.name}: claims_to_roles[{i}] gives role "
                               f"{name!r}, whose issuers do not list {issuer.name!r}")
        if not any(issuer.name in r.issuers for r in cfg.roles.values()):
            out.append(f"issuer {issuer.name}: no role lists it in its issuers")
    return out


def revocation_warnings(cfg: Config, now: float | None = None) -> list[str]:
    """An issuer's pushed revocation list that is missing or would be refused (hostd
    keeps the previous one, or refuses the issuer's grants under require_list)."""
    import time

    now = time.time() if now is None else now
    from hostd.errors import JitError
    from hostd.policy import revocations as rev

    out = []
    for name, issuer in sorted(cfg.issuers.items()):
        table = issuer.revocation
        if table is None or table.file is None:
            continue
        try:
            token = rev.read_bounded(table.file)
            if token is None:
                if table.require_list or table.mode == "strict":
                    out.append(f"issuer {name}: revocation list {table.file} does not exist: "
                               "its grants are refused until a list is accepted")
                continue
            rev.verify(token, cfg, now)
        except JitError as exc:
            out.append(f"issuer {name}: revocation list {table.file} would be refused: "
                       f"{exc.message}")
    return out


def warnings(cfg: Config, accounts: Accounts) -> list[str]:
    """Everything above, in the order an admin reads the file."""
    return (name_warnings(cfg, accounts) + approval_warnings(cfg, accounts)
            + guardrail_warnings(cfg) + oidc_warnings(cfg) + revocation_warnings(cfg))


def max_ttls(cfg: Config, config_file: Path) -> list[str]:
    """One line per role with its max_ttl, saying when it is the default (1h)."""
    try:
        raw = tomllib.loads(config_file.read_text(encoding="utf-8")).get("roles", {})
    except (OSError, ValueError):
        raw = {}
    return [f"role {r.name}: max_ttl {compact_duration(r.max_ttl)}"
            + ("" if "max_ttl" in raw.get(r.name, {}) else " (the default)")
            + (f", max_lead_time {compact_duration(r.max_lead_time)}"
               if "max_lead_time" in raw.get(r.name, {}) else "")
            for r in sorted(cfg.roles.values(), key=lambda r: r.name)]
