"""Revocation lists on this host: which list is in force per issuer, and what it ends.

For each issuer with a `[revocation]` table, hostd reads the pushed `file` and the
fetched copy (<state>/revocations/NAME.jwt), keeps the verified one with the highest
seq, refuses a lower seq than the last accepted (a rollback) and keeps the previous list
when a new one is corrupt or unverifiable. The last accepted list is in the store, so a
restart neither forgets a lock nor takes an older list. Runs in the ordered worker:
`reload` (op revocations.reload, at start, after a policy reload) and `sweep`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from hostd.errors import JitError
from hostd.paths import Paths
from hostd.policy import revocations as rev
from hostd.policy.revconfig import RevocationConfig
from hostd.policy.revocations import RevocationList, read_bounded
from hostd.state import revstore

REVOKED = "revoked"


@dataclass
class IssuerState:
    """What `jit revocations status` shows for one issuer."""

    accepted_at: int = 0
    last_error: str = ""
    last_error_at: int = 0


class Revocations:
    """The lists in force; `refusal` is the one question activations ask (CONTRACTS §D)."""

    def __init__(self, core: object, paths: Paths) -> None:
        self.core = core  # hostd.core.lifecycle.Core (not imported: lifecycle imports us)
        self.paths = paths
        self.lists: dict[str, RevocationList] = {}
        self.state: dict[str, IssuerState] = {}
        self._refused_digest: dict[Path, str] = {}  # an unchanged bad file: one event
        self._stamps: dict[Path, str] = {}  # each source as last read (sweep re-reads)
        for issuer, (_seq, token, at) in revstore.accepted(core.store).items():
            try:
                self.lists[issuer] = rev.decode_unverified(token)  # verified when accepted
            except JitError as exc:  # only a newer hostd's stricter parser could say so
                core.events.emit("revocations_refused", f"the stored revocation list of "
                                 f"{issuer} no longer parses: {exc.message}", issuer=issuer,
                                 code=exc.code, reason=exc.message, path="state.db")
                continue
            self._st(issuer).accepted_at = at

    def _st(self, issuer: str) -> IssuerState:
        return self.state.setdefault(issuer, IssuerState())

    def configured(self) -> dict[str, RevocationConfig]:
        return {name: i.revocation for name, i in self.core.config.issuers.items()
                if i.revocation is not None}

    # loading ------------------------------------------------------------------------------

    def sources(self, name: str, cfg: RevocationConfig) -> list[Path]:
        out = [cfg.file] if cfg.file is not None else []
        if cfg.url:
            out.append(self.paths.revocations_dir / f"{name}.jwt")
        return out

    def reload(self) -> dict[str, dict]:
        """Re-read every issuer's sources; accept what is newer; end what is now revoked."""
        outcome = {}
        for name, cfg in self.configured().items():
            outcome[name] = self._reload_one(name, cfg)
        outcome_ended = self.enforce()
        for name in outcome:
            outcome[name]["ended"] = [g for g, issuer in outcome_ended if issuer == name]
        return outcome

    def _reload_one(self, name: str, cfg: RevocationConfig) -> dict:
        best: tuple[RevocationList, Path] | None = None
        self._st(name).last_error = ""  # what this reading finds wrong, if anything
        for path in self.sources(name, cfg):
            lst = self._read(name, path)
            if lst is not None and (best is None or lst.seq > best[0].seq):
                best = (lst, path)
        if best is not None:
            self._accept(name, *best)
        current = self.lists.get(name)
        return {"seq": current.seq if current else None,
                "error": self._st(name).last_error}

    def _read(self, name: str, path: Path) -> RevocationList | None:
        self._stamps[path] = token_digest(path)
        try:
            token = read_bounded(path)
            if token is None:
                return None
            lst = rev.verify(token, self.core.config, self.core.clock())
            if lst.issuer != name:
                raise JitError("malformed", f"the list is {lst.issuer!r}'s, not {name!r}'s")
            return lst
        except JitError as exc:
            self._refused(name, path, exc.code, exc.message, token_digest(path))
            return None

    def _accept(self, name: str, lst: RevocationList, path: Path) -> None:
        current = self.lists.get(name)
        if current is not None and current.token == lst.token:
            return  # the same list read again
        if current is not None and lst.seq <= current.seq:
            why = ("rollback" if lst.seq < current.seq else "seq reused")
            self._refused(name, path, "rollback", f"{why}: seq {lst.seq} after accepted seq "
                          f"{current.seq}",
                          hashlib.sha256(lst.token.encode()).hexdigest())
            return
        now = self.core.now()
        revstore.save(self.core.store, name, lst.seq, lst.token, now)
        # a new dict, never changed in place: the loop reads it (list_grants, sudo,
        # pam) while the worker accepts
        self.lists = {**self.lists, name: lst}
        st = self._st(name)
        st.accepted_at, st.last_error = now, ""
        self.core.events.emit("revocations_loaded", f"revocation list of {name} seq {lst.seq} "
                              f"accepted from {path}: {len(lst.entries)} entries",
                              issuer=name, count=len(lst.entries), path=str(path),
                              revocation_list=f"{name}#{lst.seq}")

    def _refused(self, name: str, path: Path, code: str, message: str, digest: str) -> None:
        st = self._st(name)
        st.last_error, st.last_error_at = f"{path}: {message}", self.core.now()
        if self._refused_digest.get(path) == digest:
            return  # the same refused content again: said once already
        self._refused_digest[path] = digest
        current = self.lists.get(name)
        keeping = f"keeping seq {current.seq}" if current else "no list accepted yet"
        self.core.events.emit("revocations_refused", f"revocation list of {name} from {path} "
                              f"refused ({code}): {message}; {keeping}",
                              issuer=name, code=code, reason=message, path=str(path))

    # deciding -----------------------------------------------------------------------------

    def refusal(self, grant_claims: object, user: str) -> tuple[str, str] | None:
        """(`revoked`, why) when a grant (a Grant, a grant row or claims with issuer, jti,
        role, kid) of `user` must not hold now: an entry in force, or its issuer's list
        missing (require_list) or stale in strict mode. None: go."""
        return self._decide(_claims(grant_claims, user), self.core.clock(), self.configured())

    def _decide(self, claims: dict, now: float, configured: dict[str, RevocationConfig]
                ) -> tuple[str, str] | None:
        hit = self._entry(claims, now)
        return (REVOKED, describe(*hit)) if hit else self._stale(claims, now, configured)

    def _entry(self, claims: dict, now: float
               ) -> tuple[str, RevocationList, rev.Entry] | None:
        """The first list entry in force for `claims`: (list's issuer, list, entry)."""
        for name, lst in self.lists.items():
            entry = rev.match(lst, claims, now, self.core.host)
            if entry is not None:
                return name, lst, entry
        return None

    def _stale(self, claims: dict, now: float, configured: dict[str, RevocationConfig]
               ) -> tuple[str, str] | None:
        """No entry names it: its issuer's list missing (require_list) or stale (strict)."""
        issuer = claims.get("issuer")
        cfg = configured.get(issuer) if isinstance(issuer, str) else None
        return None if cfg is None else self._freshness(issuer, cfg, now)

    def _freshness(self, issuer: str, cfg: RevocationConfig, now: float
                   ) -> tuple[str, str] | None:
        lst = self.lists.get(issuer)
        if lst is None:
            if cfg.require_list:
                return REVOKED, f"no revocation list of {issuer} accepted yet (require_list)"
            return None
        if cfg.mode == "strict" and is_stale(lst, cfg, now):
            return REVOKED, (f"the revocation list of {issuer} (seq {lst.seq}) is stale "
                             f"and the issuer's mode is strict")
        return None

    def check_user(self, user: str) -> None:
        """A request of a user a `sub` entry locks is refused (JitError revoked)."""
        now = self.core.clock()
        for name, lst in self.lists.items():
            entry = rev.locks_user(lst, user, now, self.core.host)
            if entry is not None:
                raise JitError(REVOKED, describe(name, lst, entry))

    def enforce(self) -> list[tuple[str, str]]:
        """End every active grant `refusal` says no to, like `jit revoke`; (id, issuer).
        Without any entry or a strict/require_list issuer, nothing can: no grant is read
        (the sweep runs this every sweep_interval, with up to 10,000 live grants)."""
        ended: list[tuple[str, str]] = []
        configured, now = self.configured(), self.core.clock()
        if not any(lst.entries for lst in self.lists.values()) and not any(
                c.mode == "strict" or c.require_list for c in configured.values()):
            return ended
        for claims in revstore.live_claims(self.core.store):
            hit = self._entry(claims, now)
            refused = (REVOKED, describe(*hit)) if hit else self._stale(claims, now,
                                                                         configured)
            if refused is None:
                continue
            g = self.core.store.get_grant(claims["id"])
            self.core.end_revoked(g, refused[1], self._named(hit, g["issuer"]))
            ended.append((g["id"], g["issuer"]))
        return ended

    def _named(self, hit: tuple[str, RevocationList, rev.Entry] | None, issuer: str) -> dict:
        """The event fields naming the list and entry that ended a grant (a stale or
        missing list: the grant's issuer's own)."""
        if hit is not None:
            name, lst, entry = hit
            return {"revocation_list": f"{name}#{lst.seq}", "revocation_entry": entry.label()}
        lst = self.lists.get(issuer)
        return {"revocation_list": f"{issuer}#{lst.seq}" if lst else issuer}

    def sweep(self) -> None:
        """Each sweep: re-read a source changed since it was read, warn of stale lists,
        end what strict mode or an entry now in force ends (a host selector by address
        may come to match; an `until` passing needs nothing: matching checks it)."""
        if any(token_digest(p) != self._stamps.get(p) for name, cfg in
               self.configured().items() for p in self.sources(name, cfg)):
            self.reload()  # a write the path unit missed, or no path unit at all
        now = self.core.clock()
        for name, cfg in self.configured().items():
            lst = self.lists.get(name)
            if lst is not None and is_stale(lst, cfg, now):
                self.core.events.emit(
                    "revocations_stale", f"revocation list of {name} (seq {lst.seq}) is "
                    f"stale: next update was due {int(now - lst.next_update)} s ago "
                    f"({cfg.mode})", issuer=name, mode=cfg.mode,
                    revocation_list=f"{name}#{lst.seq}")
        self.enforce()

    def status(self) -> list[dict]:
        now = self.core.clock()
        out = []
        for name, cfg in sorted(self.configured().items()):
            lst, st = self.lists.get(name), self._st(name)
            out.append({
                "issuer": name, "mode": cfg.mode, "require_list": cfg.require_list,
                "seq": lst.seq if lst else None,
                "iat": lst.iat if lst else None,
                "age": int(now - lst.iat) if lst else None,
                "next_update": lst.next_update if lst else None,
                "stale": bool(lst and is_stale(lst, cfg, now)),
                "entries": len(lst.entries) if lst else 0,
                "in_force": rev.in_force_count(lst, now, self.core.host) if lst else 0,
                "accepted_at": st.accepted_at or None,
                "last_error": st.last_error or None,
                "last_error_at": st.last_error_at if st.last_error else None,
                "sources": [str(p) for p in self.sources(name, cfg)],
            })
        return out


def is_stale(lst: RevocationList, cfg: RevocationConfig, now: float) -> bool:
    return now > lst.next_update + cfg.max_stale


def describe(name: str, lst: RevocationList, entry: rev.Entry) -> str:
    why = f": {entry.reason}" if entry.reason else ""
    return f"revoked by the revocation list of {name} (seq {lst.seq}, {entry.label()}){why}"


def token_digest(path: Path) -> str:
    """What identifies a refused file's content (so an unchanged one is reported once)."""
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _claims(grant: object, user: str) -> dict:
    if isinstance(grant, dict):
        out = dict(grant)
    else:
        out = {k: getattr(grant, k, None) for k in ("issuer", "jti", "role", "kid")}
    out.setdefault("issuer", out.get("iss"))
    out["user"] = user
    return out
