"""Signed revocation lists (docs/REVOCATIONS.md): the format, its verification, matching.

A list is a compact JWS with header `typ: "jit-revocations+jwt"`, signed by a key of an
issuer in issuers.d, with claims {iss, seq, iat, next_update, entries}. Pure: whether a
list is newer than the last one accepted, and what it ends, is hostd/core/revocations.py.
Each entry names exactly one of jti, sub, role, kid; `hosts` narrows it to some hosts
(selectors as in grants), `until` ends it, `reason` says why. Every bound below is
checked before anything is trusted: a list is attacker-sized input until verified and
still a peer's input after.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import jwt

from hostd.errors import JitError
from hostd.policy import grants as grants_mod
from hostd.policy.config import HOST_ISSUER, Config
from hostd.policy.hostmatch import HostFacts, matches, parse_selector
from hostd.policy.keys import thumbprint

if TYPE_CHECKING:
    from pathlib import Path

TYP = "jit-revocations+jwt"
MAX_LIST = 1024 * 1024  # bytes of the compact JWS (the fetcher's bound too)
MAX_ENTRIES = 100_000
MAX_SEQ = 2**53  # seq in [0, 2^53): every JSON reader holds it exactly
MAX_TIME = 2**40
MAX_REASON = 1024
MAX_VALUE = 256
IAT_LEEWAY = 60  # seconds a list's iat may be ahead of this host's clock
KINDS = ("jti", "sub", "role", "kid")
_ENTRY_KEYS = frozenset((*KINDS, "hosts", "until", "reason"))
_VALUE = re.compile(r"[\x21-\x7e]{1,256}")  # printable ASCII, no space


@dataclass(frozen=True)
class Entry:
    """One revocation: what it names (`kind` = `value`), where, until when, why."""

    kind: str
    value: str
    hosts: tuple[str, ...] = ()
    until: int | None = None
    reason: str = ""

    def label(self) -> str:
        """How events and `jit revocations status` name it: `jti=abc`."""
        return f"{self.kind}={self.value}"

    def in_force(self, now: float, host: HostFacts) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return not self.hosts or matches(list(self.hosts), host)

    def to_json(self) -> dict:
        out: dict = {self.kind: self.value}
        if self.hosts:
            out["hosts"] = list(self.hosts)
        if self.until is not None:
            out["until"] = self.until
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class RevocationList:
    """A verified list (or, from `decode_unverified`, a parsed one for `build`)."""

    issuer: str
    seq: int
    iat: int
    next_update: int
    entries: tuple[Entry, ...]
    token: str = ""

    @cached_property
    def index(self) -> dict[tuple[str, str], tuple[Entry, ...]]:
        """Entries by (kind, value): a grant is matched in a few look-ups, not a scan."""
        out: dict[tuple[str, str], list[Entry]] = {}
        for e in self.entries:
            out.setdefault((e.kind, e.value), []).append(e)
        return {k: tuple(v) for k, v in out.items()}


def _bad(message: str) -> JitError:
    return JitError("malformed", message)


def _int(claims: dict, name: str, high: int) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < high:
        raise _bad(f"claim {name!r} must be an integer from 0 to {high - 1}")
    return value


def parse_entry(i: int, item: object) -> Entry:
    """One entry, checked whole: exactly one subject, known keys only (an entry whose
    scope this host cannot read must not be guessed at), bounded strings."""
    if not isinstance(item, dict):
        raise _bad(f"entries[{i}] is not an object")
    unknown = sorted(set(item) - _ENTRY_KEYS)
    if unknown:
        raise _bad(f"entries[{i}] has unknown key {unknown[0][:40]!r}")
    kinds = [k for k in KINDS if k in item]
    if len(kinds) != 1:
        raise _bad(f"entries[{i}] must name exactly one of {', '.join(KINDS)}")
    value = item[kinds[0]]
    if not isinstance(value, str) or not _VALUE.fullmatch(value):
        raise _bad(f"entries[{i}].{kinds[0]} must be 1-{MAX_VALUE} printable characters")
    hosts = item.get("hosts", [])
    if not isinstance(hosts, list) or len(hosts) > 64:
        raise _bad(f"entries[{i}].hosts must be a list of at most 64 selectors")
    for selector in hosts:
        try:
            parse_selector(selector)
        except ValueError as exc:
            raise _bad(f"entries[{i}].hosts: {exc}") from None
    until = item.get("until")
    if until is not None and (isinstance(until, bool) or not isinstance(until, int)
                              or not 0 <= until < MAX_TIME):
        raise _bad(f"entries[{i}].until must be a time in epoch seconds")
    reason = item.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise _bad(f"entries[{i}].reason must be a string of at most {MAX_REASON}")
    return Entry(kinds[0], value, tuple(hosts), until, reason)


def _shape(claims: dict, token: str) -> RevocationList:
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise _bad("claim 'iss' must be a string")
    entries = claims.get("entries")
    if not isinstance(entries, list):
        raise _bad("claim 'entries' must be a list")
    if len(entries) > MAX_ENTRIES:
        raise _bad(f"more than {MAX_ENTRIES} entries")
    seq = _int(claims, "seq", MAX_SEQ)
    iat = _int(claims, "iat", MAX_TIME)
    next_update = _int(claims, "next_update", MAX_TIME)
    if next_update < iat:
        raise _bad("claim 'next_update' is before 'iat'")
    return RevocationList(iss, seq, iat, next_update,
                          tuple(parse_entry(i, e) for i, e in enumerate(entries)), token)


def _header(token: object) -> tuple[str, dict, dict]:
    token, header, claims = grants_mod._unverified(token, MAX_LIST)
    typ = grants_mod.token_type(header)
    if typ != TYP:
        raise _bad(f"not a revocation list (header typ {str(typ)[:40]!r}, "
                      f"expected {TYP!r})")
    return token, header, claims


def verify(token: object, config: Config, now: float) -> RevocationList:
    """A list verified offline: its type, a configured issuer's signature, its shape,
    iat not ahead of this clock. JitError (malformed, unknown_issuer, bad_signature,
    algorithm_not_allowed) otherwise. Whether its seq may replace the last one accepted
    needs state: the caller decides."""
    token, header, unverified = _header(token)
    iss = unverified.get("iss")
    if not isinstance(iss, str):
        raise _bad("claim 'iss' must be a string")
    issuer = config.issuers.get(iss)
    if issuer is None or iss == HOST_ISSUER:
        raise JitError("unknown_issuer", f"issuer {iss[:64]!r} is not configured on this "
                                         "host for revocation lists")
    claims, _kid = grants_mod._check_signature(token, header, issuer)
    lst = _shape(claims, token)
    if lst.iat > now + IAT_LEEWAY:
        raise _bad("claim 'iat' is in the future")
    return lst


def decode_unverified(token: str) -> RevocationList:
    """The issuer side's own previous list (`jit revocations build --previous`), read
    without a key: the issuer signed it, and signs the next one anyway."""
    token, _, claims = _header(token)
    return _shape(claims, token)


def sign(private_key: object, lst: RevocationList) -> str:
    """The compact JWS of `lst` (its token field ignored), kid = the key's thumbprint."""
    from hostd.policy.keys import algorithm_for

    claims = {"iss": lst.issuer, "seq": lst.seq, "iat": lst.iat,
              "next_update": lst.next_update, "entries": [e.to_json() for e in lst.entries]}
    kid = thumbprint(private_key.public_key())  # type: ignore[attr-defined]
    token = jwt.encode(claims, private_key, algorithm=algorithm_for(private_key),
                       headers={"kid": kid, "typ": TYP})
    if len(token) > MAX_LIST:
        raise JitError("too_large", f"the list is larger than {MAX_LIST // 1024} KiB")
    return token


def next_list(previous: RevocationList | None, issuer: str, new: list[Entry], now: int,
              next_update: int) -> RevocationList:
    """The list after `previous`: seq + 1, its entries kept (those whose `until` passed
    dropped, an entry given again replaced), `new` added."""
    if previous is not None and previous.issuer != issuer:
        raise JitError("usage", f"the previous list is {previous.issuer!r}'s, not {issuer!r}'s")
    keep = [e for e in (previous.entries if previous else ())
            if (e.until is None or e.until > now)
            and not any((n.kind, n.value, n.hosts) == (e.kind, e.value, e.hosts) for n in new)]
    seq = previous.seq + 1 if previous else 1
    if seq >= MAX_SEQ:
        raise JitError("usage", "seq would overflow")
    entries = tuple(keep + new)
    if len(entries) > MAX_ENTRIES:
        raise JitError("usage", f"more than {MAX_ENTRIES} entries")
    return RevocationList(issuer, seq, now, now + next_update, entries)


def match(lst: RevocationList, grant: dict, now: float, host: HostFacts) -> Entry | None:
    """The first entry of `lst` in force for `grant` (a grant row or claims with issuer,
    jti, user, role, kid). jti, role and kid entries reach the list issuer's own grants;
    a sub entry every grant of the person, whoever issued it (the host's own from
    requests, another issuer's, an identity provider's): a lock only takes away, and a
    locked person is locked (Teleport's user locks; issue 22)."""
    kinds = KINDS if grant.get("issuer") == lst.issuer else ("sub",)
    for kind in kinds:
        value = grant.get("user" if kind == "sub" else kind)
        for e in lst.index.get((kind, value), ()) if isinstance(value, str) else ():
            if e.in_force(now, host):
                return e
    return None


def locks_user(lst: RevocationList, user: str, now: float, host: HostFacts) -> Entry | None:
    """A sub entry in force for `user`: their requests are refused on this host."""
    for e in lst.index.get(("sub", user), ()):
        if e.in_force(now, host):
            return e
    return None


def in_force_count(lst: RevocationList, now: float, host: HostFacts) -> int:
    return sum(1 for e in lst.entries if e.in_force(now, host))


def read_bounded(path: Path) -> str | None:
    """A list file's text (None: absent). Never blocks on a FIFO, never reads more than
    a list may hold; JitError when it is no regular file, too large or not text."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise JitError("malformed", f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise JitError("malformed", "not a regular file")
        data = fh.read(MAX_LIST + 1)
    if len(data) > MAX_LIST:
        raise JitError("malformed", f"larger than {MAX_LIST // 1024} KiB")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise JitError("malformed", "not a compact JWS (non-ASCII bytes)") from None
