"""Access requests and approvals: `jit request`, `jit approve`, `jit deny`.

One approvals store serves roles now and sudo's `approve` guardrails later: a request
is either for a role (kind `role`: on the last approval hostd signs a grant with this
host's key and activates it through the same path as any grant) or for one command
(kind `command`: bound to a subject digest of user, runas, argv, cwd and host; approved
once, used once, within its lifetime).

The decisions are pure functions over data (`may_request`, `may_decide`, `tally`, in
hostd/policy/approvals.py); the Requests class applies them to the store and tells
approvers. Identity always comes from the caller's uid (SO_PEERCRED), never from a
field.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass

from hostd.core.effects import Notify
from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.events import carried
from hostd.masking import text as textmask
from hostd.policy.approvals import (
    CANCELLED,
    clean_reason,
    in_members,
    may_decide,
    may_request,
    shown_state,
    subject_digest,
    tally,
)
from hostd.policy.config import HOST_ISSUER, Role
from hostd.policy.durations import format_duration, rfc3339
from hostd.policy.windows import granted_window, request_window

ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud, typed by hand
ID_LENGTH = 8
MAX_PENDING_PER_USER = 5  # more would only flood approvers' terminals


def new_request_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(ID_LENGTH))


# the service ------------------------------------------------------------------------------

@dataclass
class HostSigner:
    """Signs grants as the built-in issuer `host` for requests approved here."""

    private_key: object
    selector: str  # names this host only: machine-id:ID, else the hostname

    def sign(self, user: str, role: str, duration: int, now: int, reason: str, ticket: str,
             approved_by: list[str], jti: str | None = None, start: int | None = None) -> str:
        """A grant from `start` (default now) for `duration` seconds."""
        from hostd.policy.grants import issue

        begin = now if start is None else start
        return issue(self.private_key, HOST_ISSUER, user, role, begin, begin + duration,
                     [self.selector], now, reason=reason, ticket=ticket,
                     approved_by=approved_by, jti=jti)


def request_jti(request_id: str) -> str:
    """A request's grant has this token id: at most one grant per request (a second is
    `replayed`), and after a crash the grant is found from the request."""
    return f"request-{request_id}"


class Requests:
    def __init__(self, core: Core, signer: HostSigner | None, signer_error: str = "") -> None:
        self.core = core
        self.signer = signer
        self.signer_error = signer_error or "this host has no issuer key"

    def notify(self, kind: str, req: dict, recipients: list[str]) -> None:
        """A notice is an effect: the server sends it off the worker, after the change."""
        self.core.outbox.add(Notify(kind, req, tuple(recipients)))

    @property
    def store(self):
        return self.core.store

    def _who(self, uid: int) -> tuple[str, set[str]]:
        name = self.core.accounts.user_by_uid(uid)
        if name is None:
            raise JitError("permission_denied", f"uid {uid} has no local user name")
        return name, self.core.accounts.groups_of(name)

    def _role(self, name: str) -> Role:
        role = self.core.config.roles.get(name)
        if role is None:
            raise JitError("unknown_role", f"role {name!r} is not defined on this host")
        return role

    def approvers_of(self, role: Role, requester: str) -> list[str]:
        """Users who may decide (for notices): named users and the listed members of named
        groups, each group looked up by name: enumerating NSS misses directory groups
        (sssd with `enumerate = false`), whose approvers would never be told."""
        users: set[str] = set()
        for m in role.approvers:
            users |= self.core.accounts.members_of(m[1:]) if m.startswith("%") else {m}
        return sorted(users - {requester})

    def public(self, req: dict) -> dict:
        """The §12 shape of `jit requests --json`."""
        decisions = self.store.decisions(req["id"])
        return {"id": req["id"], "kind": req["kind"], "user": req["user"], "role": req["role"],
                "state": shown_state(req), "reason": req["reason"], "ticket": req["ticket"],
                "duration": req["duration"], "needed": req["needed"],
                "approvals": [d["approver"] for d in decisions if d["decision"] == "approve"],
                "denied_by": [d["approver"] for d in decisions if d["decision"] == "deny"],
                "created": rfc3339(req["created"]), "expires": rfc3339(req["expires"]),
                "grant_id": req["grant_id"] or None, "outcome": req["outcome"],
                "starts": rfc3339(req["starts"]) if req.get("ends") else None,
                "ends": rfc3339(req["ends"]) if req.get("ends") else None}

    # requesting -------------------------------------------------------------------------

    def create(self, uid: int, role_name: str, duration: int, reason: object,
               ticket: str = "", start: int | None = None) -> dict:
        """A request for a role, now or (`start`) for a window fixed here: the request
        stays answerable until the window ends, an approval never moves it."""
        user, groups = self._who(uid)
        role = self._role(role_name)
        may_request(role, user, groups)
        return self.open(uid, user, role, duration, clean_reason(reason), ticket, start)

    def open(self, uid: int, user: str, role: Role, duration: int, reason: str,
             ticket: str = "", start: int | None = None, **told: object) -> dict:
        """A role request for `user`, already allowed to ask (may_request, or an
        identity provider's token: hostd/core/idp.py, whose fields `told` adds to
        request_created)."""
        if self.core.revocations is not None:  # a person a list locks is locked here too
            self.core.revocations.check_user(user)
        self.expire_due()
        window = self._window(role, duration, start)
        pending = [r for r in self.store.requests(("pending",)) if r["user"] == user]
        same = next((r for r in pending if r["kind"] == "role" and r["role"] == role.name
                     and (r["starts"], r["ends"]) == window[:2]), None)
        if same is not None:  # asking again (after Ctrl-C of --wait) joins the first
            return dict(self.public(same), joined=True, capped=False)
        if len(pending) >= MAX_PENDING_PER_USER:
            raise JitError("too_many_requests", f"you already have {len(pending)} pending "
                                                "requests; wait for a decision")
        if duration <= 0:
            raise JitError("bad_request", "duration must be positive")
        if self.signer is None:  # nothing could be granted: say so before anyone is asked
            raise JitError("config_error", f"requests are disabled: {self.signer_error}")
        capped = min(duration, role.max_ttl)
        now = self.core.now()
        req = {"id": new_request_id(), "kind": "role", "user": user, "uid": uid,
               "role": role.name, "duration": capped, "reason": reason, "ticket": ticket,
               "needed": role.approvals, "state": "pending", "created": now,
               "expires": window[1] or now + self.core.config.request_ttl,
               "starts": window[0], "ends": window[1]}
        self.store.insert_request(req)
        req = self.store.get_request(req["id"])
        if role.approvals == 0:  # break-glass: self-service with a reason, loudly logged
            grant_id = self._grant(req, [])  # logged once taken: a failed one gave nothing
            self._request_event("breakglass", f"break-glass: {user} took role {role.name} "
                                f"for {format_duration(capped)}", req,
                                grant_id=grant_id, decision="self-service")
        else:
            self._request_event("request_created", f"{user} requests role {role.name} "
                                f"for {format_duration(capped)}", req, decision="pending",
                                **told)
            self.notify("created", self.public(req), self.approvers_of(role, user))
        out = self.public(self.store.get_request(req["id"]))
        out["capped"] = capped < duration
        return out

    def _window(self, role: Role, duration: int, start: int | None) -> tuple[int, int, bool]:
        """(starts, ends, capped) of a request for later; (0, 0, False): from approval."""
        if start is None:
            return 0, 0, False
        return request_window(start, duration, self.core.now(), role.max_lead_time,
                              role.max_ttl, self.core.config.leeway, role.name)

    def create_command(self, uid: int, role_name: str, subject: dict, reason: str) -> dict:
        """A pending approval for one command (sudo's `approve` guardrail). The command
        line is kept masked: approvers see which command, never its secrets."""
        reason = textmask.mask_text(reason)[0]
        user, _ = self._who(uid)
        role = self._role(role_name)
        now = self.core.now()
        req = {"id": new_request_id(), "kind": "command", "user": user, "uid": uid,
               "role": role.name, "reason": reason or "guarded command",
               "subject": json.dumps(subject, sort_keys=True),
               "subject_digest": subject_digest(subject), "needed": max(1, role.approvals),
               "state": "pending", "created": now,
               "expires": now + self.core.config.sudo_approval_timeout}
        self.store.insert_request(req)
        req = self.store.get_request(req["id"])
        self._request_event("request_created", f"{user} asks to run a guarded command", req,
                            decision="pending")
        self.notify("created", self.public(req), self.approvers_of(role, user))
        return self.public(req)

    def consume_command(self, request_id: str, subject: dict) -> bool:
        """True once for an approved, unexpired command approval bound to this subject."""
        req = self.store.get_request(request_id)
        if (req is None or req["kind"] != "command" or req["state"] != "approved"
                or req["subject_digest"] != subject_digest(subject)
                or req["expires"] <= self.core.now()):
            return False
        return self.store.set_request_state(request_id, "used", self.core.now(),
                                            expect="approved", outcome="used")

    def cancel_command(self, request_id: str, user: str) -> bool:
        """The sudo that waited gave up (Ctrl-C): its approval can no longer be used, so
        the request ends now rather than wait for approvers who no longer matter."""
        req = self.store.get_request(request_id)
        if req is None or req["kind"] != "command" or req["user"] != user:
            return False
        if not self.store.set_request_state(request_id, "expired", self.core.now(),
                                            expect="pending", outcome=CANCELLED):
            return False
        self._request_event("request_expired", f"request {request_id} of {user} cancelled: "
                            "the command no longer waits", req, decision=CANCELLED)
        return True

    def withdraw(self, uid: int, request_id: str) -> dict:
        """`jit requests --cancel ID`: the requester ends their own pending role request;
        it ends as a Ctrl-C'd sudo approval does (state `cancelled`, one name everywhere)."""
        user, _ = self._who(uid)
        req = self.store.get_request(request_id) if isinstance(request_id, str) else None
        if req is None or req["user"] != user or req["kind"] != "role":
            raise JitError("not_found", f"no request {request_id!r} of yours to withdraw")
        if not self.store.set_request_state(request_id, "expired", self.core.now(),
                                            expect="pending", outcome=CANCELLED):
            raise JitError("already_decided", f"request {request_id} is "
                                              f"{shown_state(self.store.get_request(request_id))}")
        self._request_event("request_expired", f"request {request_id} of {user} cancelled: "
                            "withdrawn by its requester", req, decision=CANCELLED)
        return self.public(self.store.get_request(request_id))

    # deciding ---------------------------------------------------------------------------

    def _decide(self, uid: int, request_id: str, decision: str, comment: str) -> dict:
        approver, groups = self._who(uid)
        req = self.store.get_request(request_id) if isinstance(request_id, str) else None
        if req is None:
            raise JitError("not_found", f"no request {request_id!r}")
        role = self._role(req["role"])
        now = self.core.now()
        if req["state"] == "pending" and req["expires"] <= now:
            self._expire(req)
            req = self.store.get_request(request_id)
        may_decide(role, req, approver, groups, now)
        try:
            with self.store.transaction():
                self.store.add_decision(request_id, approver, uid, decision, comment, now)
        except sqlite3.IntegrityError:
            raise JitError("already_decided", "you already decided on this request") from None
        event = "request_approved" if decision == "approve" else "request_denied"
        self._request_event(event, f"{approver} {decision}d request {request_id} of "
                            f"{req['user']}", req, reason=comment or req["reason"],
                            approver=approver, decision=decision)
        decisions = self.store.decisions(request_id)
        outcome = tally(decisions, req["needed"])
        if outcome == "denied":
            if self.store.set_request_state(request_id, "denied", now, expect="pending",
                                            outcome=comment):
                self.notify("denied", self.public(self.store.get_request(request_id)),
                            [req["user"]])
        elif outcome == "approved":
            if req["kind"] == "role":
                self._grant(req, [d["approver"] for d in decisions
                                  if d["decision"] == "approve"])
            else:
                self.store.set_request_state(request_id, "approved", now, expect="pending")
            self.notify("approved", self.public(self.store.get_request(request_id)),
                        [req["user"]])
        return self.public(self.store.get_request(request_id))

    def approve(self, uid: int, request_id: str, comment: str = "") -> dict:
        return self._decide(uid, request_id, "approve", comment)

    def deny(self, uid: int, request_id: str, reason: object) -> dict:
        return self._decide(uid, request_id, "deny", clean_reason(reason))

    def _grant(self, req: dict, approvers: list[str]) -> str:
        """Sign as `host` and activate through the one verification path."""
        now = self.core.now()
        if self.signer is None:
            raise JitError("config_error", f"requests are disabled: {self.signer_error}")
        start, duration = now, req["duration"]
        if req["ends"]:  # a window fixed when asked: what is left of it, from its start
            window = granted_window(req["starts"], req["ends"], now)
            if window is None:
                self._expire(req)
                raise JitError("request_expired", f"request {req['id']}: its window ended")
            start, duration = window[0], window[1] - window[0]
        token = self.signer.sign(req["user"], req["role"], duration, now, req["reason"],
                                 req["ticket"], approvers, request_jti(req["id"]), start)
        try:
            grant = self.core.activate(token, 0)
        except JitError as exc:
            self.store.set_request_state(req["id"], "failed", now, expect="pending",
                                         outcome=f"{exc.code}: {exc.message}")
            raise
        self.store.set_request_state(req["id"], "approved", now, expect="pending",
                                     grant_id=grant["id"], outcome="granted")
        return grant["id"]

    def finish_interrupted(self) -> list[str]:
        """At start: a crash between the deciding vote (or a break-glass request) and the
        request's new state left it pending. Finish what the votes decided: a grant
        already made is found by its token id; one never made is made now."""
        finished = []
        for req in self.store.requests(("pending",)):
            decisions = self.store.decisions(req["id"])
            outcome = tally(decisions, req["needed"]) if req["kind"] == "role" else "pending"
            now = self.core.now()
            if outcome == "denied":
                self.store.set_request_state(req["id"], "denied", now, expect="pending",
                                             outcome="denied")
            elif outcome == "approved":
                grant_id = self.store.grant_of_token(HOST_ISSUER, request_jti(req["id"]))
                if grant_id:
                    self.store.set_request_state(req["id"], "approved", now, expect="pending",
                                                 grant_id=grant_id, outcome="granted")
                else:
                    try:
                        self._grant(req, [d["approver"] for d in decisions
                                          if d["decision"] == "approve"])
                    except JitError:
                        pass  # _grant marked it failed, with the reason
            else:
                continue
            finished.append(req["id"])
            done = self.store.get_request(req["id"])
            if done["state"] in ("approved", "denied"):
                self.notify(done["state"], self.public(done), [req["user"]])
        return finished

    def own(self, uid: int, request_id: str) -> dict:
        """One of the caller's own requests, its expiry applied (for `access.wait`)."""
        user, _ = self._who(uid)
        req = self.store.get_request(request_id)
        if req is None or req["user"] != user:
            raise JitError("not_found", f"no request {request_id!r} of yours")
        if req["state"] == "pending" and req["expires"] <= self.core.now() and self._expire(req):
            req = self.store.get_request(request_id)
        return self.public(req)

    # listing and expiry -----------------------------------------------------------------

    def visible(self, uid: int, request_id: str | None = None) -> list[dict]:
        """The caller's own requests and the pending ones the caller may decide."""
        user, groups = self._who(uid)
        now = self.core.now()
        self.expire_due()
        out = []
        for req in self.store.requests(since=now - 86400):
            if request_id is not None and req["id"] != request_id:
                continue
            role = self.core.config.roles.get(req["role"])
            mine = req["user"] == user
            decides = (role is not None and req["state"] == "pending" and not mine
                       and in_members(role.approvers, user, groups))
            if mine or decides or uid == 0:
                out.append(self.public(req))
        return out

    def expire_due(self) -> list[str]:
        now = self.core.now()
        return [r["id"] for r in self.store.requests(("pending",))
                if r["expires"] <= now and self._expire(r)]

    def _expire(self, req: dict) -> bool:
        if not self.store.set_request_state(req["id"], "expired", self.core.now(),
                                            expect="pending", outcome="unanswered"):
            return False
        self._request_event("request_expired", f"request {req['id']} of {req['user']} "
                            f"expired unanswered", req, decision="expired")
        self.notify("expired", self.public(req), [req["user"]])
        return True

    def _request_event(self, event: str, message: str, req: dict, **values: object) -> None:
        """An event about request row `req`: the fields its type declares
        (events.carried), taken from the row (its `id` is the request_id)."""
        self.core.events.emit(event, message, **carried(event, req, request_id=req["id"],
                                                        **values))
