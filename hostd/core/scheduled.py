"""Scheduled grants: verified when presented, applied at their start (issue 22 §2).

A grant whose start (nbf) lies ahead on this host's clock, within its role's
max_lead_time, is verified in full when `jit activate` presents it, kept pending in the
store (hostd/state/schedule.py; its token id counts as used), and announced with
`grant_scheduled`. The expiry timer machinery asks for it at its start: the same
transient `jit-expire-ID` timer and `grant.expire` op, whose handler starts a pending
id instead of expiring it. At the start a second check runs (Core._may_start: the role
is still there and still allows the issuer, the host still matches; the lead adds the
revocation check there), then the grant is applied under the same id. The sweep and the
start-up reconcile start whatever is due whose timer was missed (the host was down),
or drop it with `grant_dropped` when its end has passed too.

Functions over a Core rather than Core methods: lifecycle.py stays the one lifecycle
and under its size bound; it calls in here at four places.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import asdict
from typing import Any

from hostd.core.effects import ArmTimer, CancelTimer
from hostd.errors import JitError
from hostd.events import carried
from hostd.policy import grants as grants_mod
from hostd.policy.durations import rfc3339
from hostd.policy.windows import granted_window
from hostd.state import schedule
from hostd.state.store import GRANT_COLUMNS

# hostd.core.lifecycle.Core, which imports this module (so it is not imported back)
Core = Any

# What each refusal of the second check means, for grant_dropped's message.
WHY = {
    "window_passed": "its window ended before it could start (hostd was not running)",
    "unknown_role": "its role is no longer defined on this host",
    "issuer_not_allowed": "its issuer may no longer grant the role",
    "unknown_issuer": "its issuer is no longer configured on this host",
    "wrong_host": "it no longer names this host",
    "wrong_user": "its user no longer exists",
    "config_error": "its role names a group missing on this host",
    "revoked": "a revocation list in force names it, its key, role or user",
}


def _event(core: Core, event: str, message: str, p: dict, **values: object) -> None:
    """An event about pending row `p` (carrying its start as not_before)."""
    core.events.emit(event, message, **carried(
        event, p, grant_id=p["id"], not_after=rfc3339(p["exp"]),
        not_before=rfc3339(p["not_before"]), **values))


def _groups(core: Core, p: dict) -> tuple[str, ...]:
    """The groups the role gives today: the host decides what a role means at the start."""
    role = core.config.roles.get(p["role"])
    return role.groups if role is not None else ()


def public(core: Core, p: dict) -> dict:
    """A pending grant in grant.list's shape, marked `state: pending`."""
    return {"id": p["id"], "user": p["user"], "role": p["role"],
            "groups": list(_groups(core, p)), "issuer": p["issuer"],
            "not_before": rfc3339(p["not_before"]), "not_after": rfc3339(p["exp"]),
            "exp": p["exp"], "reason": p["reason"],
            "ticket": p["ticket"], "approved_by": p["approved_by"], "state": "pending"}


def add(core: Core, grant: grants_mod.Grant, uid: int, request_id: str | None) -> dict:
    """Keep a verified grant until its start; arm its timer for the start."""
    row = {k: v for k, v in asdict(grant).items() if k not in ("iat", "groups")}
    row.update(id=secrets.token_hex(6), uid=uid, state="pending", scheduled_at=core.now())
    try:
        schedule.add(core.store, row)
    except sqlite3.IntegrityError:
        raise JitError("replayed", "this grant was already activated on this host") from None
    _event(core, "grant_scheduled", f"grant {row['id']} scheduled: {grant.user} will hold "
           f"{grant.role} from {rfc3339(grant.not_before)}", dict(row, groups=grant.groups),
           decision="scheduled", request_id=request_id)
    core.outbox.add(ArmTimer(row["id"], grant.not_before, warn=False))
    return public(core, row)


def drop(core: Core, p: dict, code: str) -> bool:
    """Give up a pending grant at its start: nothing is applied; logged, once."""
    if not schedule.finish(core.store, p["id"], "dropped", core.now(), code):
        return False
    _event(core, "grant_dropped", f"scheduled grant {p['id']} of {p['user']} dropped: "
           f"{WHY.get(code, code)}", dict(p, groups=_groups(core, p)), code=code,
           decision="dropped")
    return False


def start(core: Core, grant_id: str) -> bool:
    """The start of a pending grant (its timer, the sweep or the reconcile): the second
    check, then the grant applied under its pending id. An early call re-arms."""
    p = schedule.get(core.store, grant_id)
    if p is None or p["state"] != "pending":
        return False
    now = core.now()
    if p["not_before"] > now:  # fired early: ask again at the start
        core.outbox.add(ArmTimer(grant_id, p["not_before"], warn=False))
        return False
    if granted_window(p["not_before"], p["exp"], now) is None:  # its end passed too
        return drop(core, p, "window_passed")
    code = core._may_start(p)
    uid = core.accounts.uid_of(p["user"])
    if code is None and uid is None:
        code = "wrong_user"
    groups = _groups(core, p)
    if code is None and not all(core.accounts.group_exists(g) for g in groups):
        code = "config_error"
    if code is not None:
        return drop(core, p, code)
    grant = grants_mod.Grant(
        jti=p["jti"], issuer=p["issuer"], user=p["user"], role=p["role"], groups=groups,
        not_before=p["not_before"], exp=p["exp"], iat=p["scheduled_at"],
        hosts=tuple(p["hosts"]), reason=p["reason"], ticket=p["ticket"],
        approved_by=tuple(p["approved_by"]), kid=p["kid"])
    try:
        core.apply(grant, uid, grant_id=grant_id,
                   insert=lambda row, intended: schedule.promote(core.store, grant_id, row,
                                                                 intended, GRANT_COLUMNS))
    except JitError as exc:  # apply undid what it did (the grant row says failed)
        _event(core, "grant_dropped", f"scheduled grant {grant_id} of {p['user']} could not "
               f"start: {exc.message}", dict(p, groups=groups), code=exc.code,
               decision="dropped")
        return False
    return True


def cancel(core: Core, p: dict, caller_uid: int, reason: str) -> dict:
    """`jit revoke ID` of a pending grant: it never starts (its holder or root)."""
    if caller_uid != 0 and p["uid"] != caller_uid:
        raise JitError("not_found", f"no grant {p['id']!r} of yours")
    by = core.accounts.user_by_uid(caller_uid) or str(caller_uid)
    if not schedule.finish(core.store, p["id"], "cancelled", core.now(),
                           reason or "revoked"):
        raise JitError("not_found", f"grant {p['id']} already "
                                    f"{schedule.get(core.store, p['id'])['state']}")
    _event(core, "grant_revoked", f"scheduled grant {p['id']} cancelled by {by}",
           dict(p, groups=_groups(core, p)), reason=reason or p["reason"],
           decision="cancelled", approver=by)
    core.outbox.add(CancelTimer(p["id"]))
    return dict(public(core, p), state="cancelled")


def start_due(core: Core) -> list[str]:
    """Start (or drop) every pending grant whose start has come: the backstop for a
    missed timer, and after downtime, the reconcile's work."""
    return [gid for gid in schedule.due(core.store, core.now()) if start(core, gid)]


def arm_all(core: Core) -> None:
    """At start-up: a timer at the start of every pending grant (warnings come later,
    with the expiry timer armed when it starts)."""
    for grant_id, when in schedule.starts(core.store):
        core.outbox.add(ArmTimer(grant_id, when, warn=False))


def listed(core: Core, user: str | None, store: object | None = None) -> list[dict]:
    """Pending grants (a user's, or all) in grant.list's shape."""
    return [public(core, p) for p in schedule.pending(store or core.store, user)]


def cancel_all(core: Core, reason: str) -> list[str]:
    """`jit-hostd --revoke-all`: no pending grant may start after it (ids cancelled)."""
    return [cancel(core, p, 0, reason)["id"] for p in schedule.pending(core.store)]
