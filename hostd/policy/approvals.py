"""Approval rules: who may request a role, who may decide on a request, when the votes
decide it, and what a command approval is bound to.

Pure functions over the policy and plain request rows: the Requests service
(hostd/core/requests.py) applies them to the store; sudo and login decisions use
`in_members` and `command_subject`. No store, no clock, no I/O here.
"""

from __future__ import annotations

import hashlib
import json

from hostd.errors import JitError
from hostd.policy.config import Role

MAX_REASON = 1024


def in_members(members: tuple[str, ...], user: str, user_groups: set[str]) -> bool:
    """`alice` or `%group` entries of the policy."""
    return any(m == user or (m.startswith("%") and m[1:] in user_groups) for m in members)


def may_request(role: Role, user: str, user_groups: set[str]) -> None:
    if not in_members(role.requesters, user, user_groups):
        raise JitError("not_requester", f"you are not among the requesters of role {role.name}")


CANCELLED = "cancelled"  # ended by its requester (withdrawn, or sudo's Ctrl-C)


def shown_state(req: dict) -> str:
    """The state users read: a cancelled request is stored as expired with outcome
    `cancelled` (the table's states predate it) and shown as `cancelled` everywhere."""
    return CANCELLED if req["state"] == "expired" and req.get("outcome") == CANCELLED \
        else req["state"]


def may_decide(role: Role, req: dict, approver: str, approver_groups: set[str],
               now: int) -> None:
    """Checks common to approve and deny, in the order an approver would want them."""
    if approver == req["user"]:
        raise JitError("self_approval", "you cannot decide on your own request")
    if not in_members(role.approvers, approver, approver_groups):
        raise JitError("not_approver", f"you are not an approver of role {role.name}")
    if shown_state(req) == CANCELLED:
        raise JitError("already_decided", f"request {req['id']} was cancelled by its requester")
    if req["state"] == "expired" or (req["state"] == "pending" and req["expires"] <= now):
        raise JitError("request_expired", f"request {req['id']} expired unanswered")
    if req["state"] != "pending":
        raise JitError("already_decided", f"request {req['id']} is {req['state']}")


def tally(decisions: list[dict], needed: int) -> str:
    """pending, approved or denied: one denial ends it; N distinct approvers approve."""
    if any(d["decision"] == "deny" for d in decisions):
        return "denied"
    approvers = {d["approver"] for d in decisions if d["decision"] == "approve"}
    return "approved" if len(approvers) >= needed else "pending"


def clean_reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise JitError("reason_required", "a reason is required")
    if len(reason) > MAX_REASON:
        raise JitError("bad_request", f"reason longer than {MAX_REASON} characters")
    return reason.strip()


def command_subject(user: str, runas: str, argv: list[str], cwd: str, host: str) -> dict:
    """What a command approval is bound to: nothing else may use it."""
    argv_digest = hashlib.sha256(json.dumps(argv, ensure_ascii=False).encode()).hexdigest()
    return {"user": user, "runas": runas, "argv_sha256": argv_digest, "cwd": cwd, "host": host}


def subject_digest(subject: dict) -> str:
    return hashlib.sha256(json.dumps(subject, sort_keys=True).encode()).hexdigest()
