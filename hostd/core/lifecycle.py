"""The brain: activation, revocation, expiry and reconcile, over store, accounts, events.

No sockets and no timers here: the server adapts the socket to these calls and carries
out the effects they state (hostd/core/effects.py: arm or cancel a timer, notify). The clock
is injected so tests can move time. Every change to the host is written to the store
first, then made, then marked done; `reconcile` finishes or undoes whatever a crash
interrupted.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict

from hostd.core import scheduled
from hostd.core.effects import ArmTimer, CancelTimer, EndSessions, Outbox
from hostd.core.revocations import Revocations
from hostd.errors import JitError
from hostd.events import carried
from hostd.masking import text as textmask
from hostd.policy import grants as grants_mod
from hostd.policy.config import HOST_ISSUER, Config
from hostd.policy.durations import rfc3339
from hostd.policy.hostmatch import HostFacts, matches
from hostd.policy.liveness import is_live
from hostd.policy.windows import is_scheduled
from hostd.state import schedule
from hostd.state.accounts import Accounts, disagreements
from hostd.state.journal import Events
from hostd.state.store import Store

SEEN_TOKEN_GRACE = 3600  # keep token ids an hour past exp + leeway (they expire anyway)


def request_of(issuer: str, jti: str) -> str | None:
    """The request a host-signed grant was issued for (its jti is `request-ID`, see
    approvals.request_jti), so grant_activated names it; None for other grants."""
    if issuer == HOST_ISSUER and jti.startswith("request-"):
        return jti.removeprefix("request-")
    return None


class Core:
    def __init__(self, config: Config, store: Store, accounts: Accounts, events: Events,
                 host: HostFacts, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.accounts = accounts
        self.events = events
        self.host = host
        self.clock = clock
        self.outbox = Outbox()
        # this boot's /proc/sys/kernel/random/boot_id ("" unknown), kept with each
        # pending ending: one from an earlier boot has no process left to end
        self.boot_id = ""
        # the revocation lists in force (hostd/core/revocations.py; None: none kept)
        self.revocations: Revocations | None = None

    @property
    def config(self) -> Config:
        return self._config

    @config.setter
    def config(self, config: Config) -> None:
        """Every policy hostd takes (at start, on reload) also masks the command lines
        its events log with that policy's [masking] (hostd/masking/text.py)."""
        self._config = config
        textmask.configure(config)

    def take_effects(self) -> list:
        """What the last calls decided must follow (the server carries it out)."""
        return self.outbox.take()

    def now(self) -> int:
        return int(self.clock())

    # reading ----------------------------------------------------------------------------

    def verify(self, token: object) -> grants_mod.Grant:
        return grants_mod.verify(token, self.config, self.host, self.clock())

    def public_grant(self, g: dict) -> dict:
        """The §12 shape of one grant for `grant.list` and `jit grants --json`."""
        return {
            "id": g["id"], "user": g["user"], "role": g["role"], "groups": g["groups"],
            "issuer": g["issuer"], "not_before": rfc3339(g["not_before"]),
            "not_after": rfc3339(g["exp"]), "exp": g["exp"], "reason": g["reason"],
            "ticket": g["ticket"], "approved_by": g["approved_by"],
        }

    def list_grants(self, caller_uid: int, all_users: bool = False,
                    store: Store | None = None, name: str | None = None,
                    pending: bool | None = None) -> list[dict]:
        """Live grants (an expired one is never shown as held, swept or not), then the
        scheduled ones still pending (`state: pending`); `pending` True: those only,
        False: none. `store` is the server's read-only connection, so listing never
        waits behind a change; `name`: the caller's user name, when the caller looked it
        up already (the loop asks its accounts cache, never NSS)."""
        now = self.now()
        if all_users and caller_uid != 0:
            raise JitError("permission_denied", "only root may list every user's grants")
        user = None if all_users else (name or self._name(caller_uid))
        rows = [] if pending else self.unrevoked((store or self.store).grants("active", user=user))
        live = [dict(self.public_grant(g), state="active") for g in rows if is_live(g, now)]
        return live + ([] if pending is False else scheduled.listed(self, user, store))

    def unrevoked(self, rows: list[dict]) -> list[dict]:
        """Grant rows no revocation list refuses now: a grant a list (or a strict stale
        one) ends at the next sweep authorizes nothing (sudo, login) meanwhile."""
        if self.revocations is None:
            return rows
        return [g for g in rows if self.revocations.refusal(g, g["user"]) is None]

    def _name(self, uid: int) -> str:
        name = self.accounts.user_by_uid(uid)
        if name is None:
            raise JitError("wrong_user", f"uid {uid} has no local user name")
        return name

    # activation -------------------------------------------------------------------------

    def activate(self, token: object, caller_uid: int) -> dict:
        """Verify and apply a grant. Raises JitError (and logs grant_refused) on refusal."""
        try:
            return self._activate(token, caller_uid)
        except JitError as exc:
            self.events.refusal("grant_refused", f"grant refused: {exc.code}: {exc.message}",
                                uid=caller_uid, user=self.accounts.user_by_uid(caller_uid),
                                code=exc.code, decision="refused", reason=exc.message)
            raise

    def check(self, token: object) -> grants_mod.Grant:
        """A grant as activation would first judge it, changing and logging nothing:
        verified, not over on this host's clock, refused by no revocation list."""
        grant = self.verify(token)
        if grant.exp <= self.now():  # within leeway, but over on this host's clock
            raise JitError("expired", "grant has already ended")
        refused = self.revocations and self.revocations.refusal(grant, grant.user)
        if refused:
            raise JitError(*refused)
        return grant

    def _activate(self, token: object, caller_uid: int) -> dict:
        grant = self.check(token)
        uid = self.accounts.uid_of(grant.user)
        if uid is None:
            raise JitError("wrong_user", f"grant names {grant.user!r}, no such local user")
        if caller_uid not in (0, uid):
            raise JitError("wrong_user", f"grant is for {grant.user!r}, not for the caller")
        missing = [g for g in grant.groups if not self.accounts.group_exists(g)]
        if missing:
            raise JitError("config_error", f"role {grant.role!r} names missing group "
                                           f"{missing[0]!r}")
        if is_scheduled(grant.not_before, self.now()):  # verified now, applied at its start
            return scheduled.add(self, grant, uid, request_of(grant.issuer, grant.jti))
        return self.apply(grant, uid)

    def _may_start(self, grant: dict) -> str | None:
        """The second check of a scheduled grant at its start (None: go, else the
        refusal code): the policy still has its role and lets its issuer grant it, and
        its host selectors still name this host, and no revocation list refuses it."""
        if self.revocations is not None and self.revocations.refusal(grant, grant["user"]):
            return "revoked"
        role = self.config.roles.get(grant["role"])
        if role is None:
            return "unknown_role"
        if grant["issuer"] != HOST_ISSUER and grant["issuer"] not in self.config.issuers:
            return "unknown_issuer"
        if grant["issuer"] not in role.issuers:
            return "issuer_not_allowed"
        try:
            return None if matches(list(grant["hosts"]), self.host) else "wrong_host"
        except ValueError:
            return "wrong_host"

    def apply(self, grant: grants_mod.Grant, uid: int, grant_id: str | None = None,
              insert: Callable[[dict, list], None] | None = None, **told: object) -> dict:
        """Record intent, add memberships, mark them applied; undo all on failure.
        A scheduled grant starts under its pending id, `insert` moving it over; `told`:
        more grant_activated fields (an identity provider's: hostd/core/idp.py)."""
        now = self.now()
        grant_id = grant_id or secrets.token_hex(6)
        intended = [(grp, self._standing(grant.user, grp)) for grp in grant.groups]
        row = {k: v for k, v in asdict(grant).items() if k not in ("iat",)}
        row.update(id=grant_id, uid=uid, state="active", activated_at=now)
        try:
            (insert or self.store.insert_grant)(row, intended)
        except sqlite3.IntegrityError:
            raise JitError("replayed", "this grant was already activated on this host") from None
        try:
            for grp, standing in intended:
                if not standing and not self.accounts.is_member(grant.user, grp):
                    self.accounts.add(grant.user, grp)
                    self._grant_event("membership_added", f"{grant.user} added to {grp}",
                                      row, groups=[grp])
                self.store.set_membership(grant_id, grp, "applied")
        except Exception:  # undo everything, then let the caller see the error
            self._end(row, "failed", "activation failed", "hostd")
            self.store.forget_token(grant.issuer, grant.jti)
            raise
        self._grant_event("grant_activated",
                          f"grant {grant_id} activated: {grant.user} holds {grant.role}",
                          row, decision="activated",
                          request_id=request_of(grant.issuer, grant.jti), **told)
        self.outbox.add(ArmTimer(grant_id, grant.exp))
        return self.public_grant(self.store.get_grant(grant_id))

    def _standing(self, user: str, grp: str) -> bool:
        """Was this membership the user's before any live grant? Then never remove it."""
        if not self.accounts.is_member(user, grp):
            return False
        holders = self.store.live_holders(user, grp)
        if holders:
            return all(h["standing"] for h in holders)
        return not self.store.leftovers(user, grp)

    def _grant_event(self, event: str, message: str, g: dict, **values: object) -> None:
        """An event about grant row `g`: the fields its type declares (events.carried),
        taken from the row (its `id` is the grant_id, its `exp` the not_after)."""
        self.events.emit(event, message, **carried(event, g, grant_id=g["id"],
                                                   not_after=rfc3339(g["exp"]), **values))

    # ending -----------------------------------------------------------------------------

    def revoke(self, grant_id: str, caller_uid: int, reason: str = "") -> dict:
        """The subject drops its own grant; root any."""
        g = self.store.get_grant(grant_id) if isinstance(grant_id, str) else None
        p = schedule.get(self.store, grant_id) if g is None and isinstance(grant_id, str) \
            else None
        if p is not None:  # not started yet: cancelled, never applied
            return scheduled.cancel(self, p, caller_uid, reason)
        if g is None or (caller_uid != 0 and g["uid"] != caller_uid):
            raise JitError("not_found", f"no grant {grant_id!r} of yours")
        if g["state"] != "active":
            raise JitError("not_found", f"grant {grant_id} already ended ({g['state']})")
        by = self.accounts.user_by_uid(caller_uid) or str(caller_uid)
        self._revoke(g, reason or "revoked", by, f"grant {grant_id} revoked by {by}",
                     reason or g["reason"])
        return self.public_grant(g)

    def _revoke(self, g: dict, reason: str, by: str, message: str, logged_reason: str,
                **fields: object) -> None:
        ending = self._ending(g, "policy changed" if reason == "policy changed"
                              else "revoked", by)
        self._end(g, "revoked", reason, by, ending)
        self._grant_event("grant_revoked", message, g, reason=logged_reason,
                          decision="revoked", approver=by, **fields)
        self.outbox.add(CancelTimer(g["id"]))
        self.outbox.add(ending)

    def _ending(self, g: dict, reason: str, by: str) -> EndSessions:
        """What the grant opened must end too: a removed group stays in the credentials
        of every process started while it was held. The groups named are those this
        grant takes away, not one kept for a standing membership or another live grant
        (a failed removal counts: the grant is over either way). A role gone from the
        policy ends its sessions: the default, and the side that fails closed. Stated
        before the grant ends, so `_end` records it in the same transaction."""
        role = self.config.roles.get(g["role"])
        mode = role.on_expiry if role is not None else "terminate-sessions"
        gids = []
        for m in self.store.memberships(g["id"]):
            if (m["standing"] or m["state"] == "kept"
                    or self.store.live_holders(m["user"], m["grp"], exclude=g["id"])):
                continue  # what _release keeps
            gid = self.accounts.gid_of(m["grp"])
            if gid is not None and gid != 0:  # gid 0 is root's, never a grant's to end
                gids.append((m["grp"], gid))
        return EndSessions(g["id"], g["uid"], g["user"], g["role"], tuple(gids), mode,
                           reason, by)

    def pending_endings(self) -> list[EndSessions]:
        """At start: endings a previous run recorded and did not carry out (killed, or
        stopped, first), to carry out now like live ones. A row from an earlier boot
        is deleted instead: no process of that boot survives, and logind's session ids
        and pids have started over."""
        out = []
        for r in self.store.pending_endings():
            if r["boot_id"] and self.boot_id and r["boot_id"] != self.boot_id:
                self.store.forget_ending(r["grant_id"])
                continue
            out.append(EndSessions(r["grant_id"], r["uid"], r["user"], r["role"], r["gids"],
                                   r["mode"], r["reason"], r["ended_by"]))
        return out

    def end_unsupported(self) -> list[str]:
        """After the policy changed: end live grants whose role is gone, or whose issuer
        is gone or no longer allowed for the role. Only with a policy that loaded: a
        broken one (no roles at all) must never end anything."""
        ended = []
        for g in self.store.grants("active"):
            role = self.config.roles.get(g["role"])
            issuer_ok = (g["issuer"] == HOST_ISSUER or g["issuer"] in self.config.issuers
                         or g["issuer"] in self.config.oidc)
            if role is not None and issuer_ok and g["issuer"] in role.issuers:
                continue
            self._revoke(g, "policy changed", "hostd",
                         f"grant {g['id']} revoked: policy changed", "policy changed")
            ended.append(g["id"])
        return ended

    def end_revoked(self, g: dict, why: str, fields: dict) -> None:
        """A revocation list ends `g` now, like `jit revoke` (`fields` name the list)."""
        self._revoke(g, "revoked", "revocations", f"grant {g['id']} {why}", why, **fields)

    def expire(self, grant_id: str) -> bool:
        """Expire a grant if it is due; a timer firing early changes nothing."""
        g = self.store.get_grant(grant_id)
        if g is None:  # a scheduled grant's timer asks at its start
            return scheduled.start(self, grant_id)
        if g["state"] != "active":
            return False
        if is_live(g, self.now()):  # fired early: ask again at exp
            self.outbox.add(ArmTimer(g["id"], g["exp"]))
            return False
        ending = self._ending(g, "expired", "hostd")
        self._end(g, "expired", "expired", "hostd", ending)
        self._grant_event("grant_expired", f"grant {grant_id} expired: {g['user']} no longer "
                          f"holds {g['role']}", g, decision="expired")
        self.outbox.add(ending)
        return True

    def sweep(self) -> list[str]:
        """Expire everything due and retry removals that failed: the backstop for missed
        timers and for a gpasswd that could not run (say /etc/group was locked)."""
        expired = [gid for gid in self.store.due_grants(self.now()) if self.expire(gid)]
        scheduled.start_due(self)  # starts whose timer was missed (the host was down)
        self.finish_unfinished()
        self.events.flush_refusals()  # summaries of held-back refusals whose window passed
        return expired

    def finish_unfinished(self) -> None:
        """Complete what a crash or a failed gpasswd left half done."""
        for m in self.store.unfinished():
            g = self.store.get_grant(m["grant_id"])
            if m["grant_state"] == "active":  # crashed mid-activation: finish it
                if (m["standing"] or self.accounts.is_member(m["user"], m["grp"])
                        or self._put_back(g, m)):
                    self.store.set_membership(g["id"], m["grp"], "applied")
            else:
                self._release(g, m)

    def revoke_all(self, reason: str) -> list[str]:
        """Every grant ends (package removal), and none scheduled will start."""
        ended = scheduled.cancel_all(self, reason)
        for g in self.store.grants("active"):
            self._revoke(g, reason, "hostd", f"grant {g['id']} revoked: {reason}", reason)
            ended.append(g["id"])
        return ended

    def _end(self, g: dict, state: str, reason: str, by: str,
             ending: EndSessions | None = None) -> None:
        """Mark the grant ended first, with what its end must still do (`ending`, in the
        same transaction), then take back what only it needed."""
        row = None
        if ending is not None:
            row = {"uid": ending.uid, "user": ending.user, "role": ending.role,
                   "gids": ending.gids, "mode": ending.mode, "reason": ending.reason,
                   "ended_by": ending.by, "boot_id": self.boot_id}
        self.store.end_grant(g["id"], state, self.now(), reason, by, row)
        for m in self.store.memberships(g["id"]):
            if m["state"] in ("applied", "pending"):
                self._release(g, m)

    def _release(self, g: dict, m: dict) -> None:
        """Remove one membership unless it is standing or another live grant needs it."""
        if m["standing"] or self.store.live_holders(m["user"], m["grp"], exclude=g["id"]):
            self.store.set_membership(g["id"], m["grp"], "kept")
            return
        if self.accounts.uid_of(m["user"]) is None:  # account deleted: nothing to take back
            self.store.set_membership(g["id"], m["grp"], "removed")
            self._grant_event("membership_removed", f"{m['user']} no longer exists; membership "
                              f"of {m['grp']} ended with the account", g, groups=[m["grp"]])
            return
        try:
            self.accounts.remove(m["user"], m["grp"])
        except JitError as exc:  # left 'applied': reconcile retries
            self._grant_event("config_error", f"could not remove {m['user']} from {m['grp']}: "
                              f"{exc.message}", g)
            return
        self.store.set_membership(g["id"], m["grp"], "removed")
        self._grant_event("membership_removed", f"{m['user']} removed from {m['grp']}", g,
                          groups=[m["grp"]])

    def _put_back(self, g: dict, m: dict) -> bool:
        """Re-add a live grant's membership; a failure (the account or group is gone) is
        logged and skipped, so one bad row never stops hostd from starting."""
        try:
            self.accounts.add(m["user"], m["grp"])
            return True
        except JitError as exc:
            self._grant_event("config_error", f"could not restore {m['user']} in {m['grp']}: "
                              f"{exc.message}", g)
            return False

    # start-up ---------------------------------------------------------------------------

    def reconcile(self) -> list[tuple[str, int]]:
        """At every start: expire what fell due, finish interrupted work, put back
        memberships live grants need, in both group and gshadow, and take out the half of
        an ended one that a gpasswd killed between the two files left behind. Returns the
        live grants to arm timers for."""
        self.sweep()
        group = self.accounts.group_file_members()  # the files gpasswd writes, not NSS
        half = disagreements(group, self.accounts.gshadow_members())
        self._repair_live(group, half)
        self._repair_ended(group, half)
        self.store.prune_seen(self.now() - self.config.leeway - SEEN_TOKEN_GRACE)
        scheduled.arm_all(self)  # pending grants' starts (their own timers: no warnings)
        return self.store.live_grants()

    def _repair_live(self, group: dict[str, set[str]], half: set[tuple[str, str]]) -> None:
        """A live grant's non-standing membership must be in both files (removed by hand,
        or a gpasswd killed half way): `gpasswd -a` lists the user in both."""
        for m in self.store.active_memberships():
            pair = (m["user"], m["grp"])
            if m["standing"] or (m["user"] in group.get(m["grp"], set()) and pair not in half):
                continue  # standing: the user's own, not hostd's to change
            g = self.store.get_grant(m["grant_id"])
            if self._put_back(g, m):
                if pair in half:
                    self._repaired("membership_added", g, group, pair, "added to both")
                group.setdefault(m["grp"], set()).add(m["user"])
                half.discard(pair)

    def _repair_ended(self, group: dict[str, set[str]], half: set[tuple[str, str]]) -> None:
        """A user in one file only, whose newest membership row is an ended grant's and not
        standing, comes out of both (`gpasswd -d`); what hostd never managed is left."""
        for user, grp in sorted(half):
            if self.store.live_holders(user, grp):
                continue  # a live grant wants it (put back above, or it could not be)
            rows = [(g, m) for g in self.store.grants(state=None, user=user)
                    for m in self.store.memberships(g["id"]) if m["grp"] == grp]
            if not rows:
                continue  # never hostd's: left to whoever made it
            g, m = max(rows, key=lambda r: (r[0]["activated_at"], r[0]["id"]))
            if m["standing"]:
                continue  # the user's own membership: never removed
            try:
                self.accounts.remove(user, grp)
            except JitError as exc:
                self._grant_event("config_error", f"could not remove {user} from {grp}: "
                                  f"{exc.message}", g)
                continue
            self._repaired("membership_removed", g, group, (user, grp), "removed from both")

    def _repaired(self, event: str, g: dict, group: dict[str, set[str]],
                  pair: tuple[str, str], done: str) -> None:
        user, grp = pair
        where = "group" if user in group.get(grp, set()) else "gshadow"
        self._grant_event(event, f"repaired {user} in {grp}: listed in {where} only (a gpasswd "
                          f"interrupted between the two files); {done}", g, groups=[grp])
