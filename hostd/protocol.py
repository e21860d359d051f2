"""The socket protocol (DESIGN.md §5, wire format in docs/PROTOCOL.md): one JSON object
per line, `v: 1`, bounded.

`OPS` is the one table of operations: each declares its request fields with their
bounds, who may call it (checked once, centrally, by the server), whether it works while
the policy is broken, and its kind (`call`, `wait` or `stream`). The server looks up its
handler by name (`grant.activate` -> `op_grant_activate`); a unit test keeps the table,
the handlers and docs/PROTOCOL.md in step.

Requests are checked here before anything acts on them: unknown operations and fields
are refused, every field has a type and a bound, and text must be valid Unicode without
lone surrogates (SQLite and journald cannot store them). The caller's identity is never
a field; the server takes it from SO_PEERCRED. Standard library only: the recorder and
the expiry timer's service import this (the PAM module, pam/pam_jit.py, imports only
built-in modules and writes its few requests itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hostd.errors import JitError
from hostd.wire import MAX_LINE, VERSION, encode, request  # noqa: F401 (re-exported)

MAX_INT = 2**31 - 1  # every integer field is a count or a duration in seconds

ANYONE = "anyone"
ROOT = "root"
CALL, WAIT, STREAM = "call", "wait", "stream"


@dataclass(frozen=True)
class Field:
    """One request field: `str` (max characters), `int` (range), `bool`, or `strlist`
    (at most `items` strings of at most `length` characters each)."""

    kind: str
    required: bool = False
    length: int = 0
    items: int = 0
    low: int = 0
    high: int = MAX_INT


@dataclass(frozen=True)
class Op:
    name: str
    fields: dict[str, Field] = field(default_factory=dict)
    access: str = ANYONE
    without_policy: bool = False  # answered while the configuration is broken
    kind: str = CALL
    summary: str = ""

    @property
    def handler(self) -> str:
        """The server's method for this op: grant.activate -> op_grant_activate."""
        return "op_" + self.name.replace(".", "_")


def _op(name: str, summary: str, fields: dict[str, Field] | None = None, **kw: object) -> Op:
    return Op(name, fields or {}, summary=summary, **kw)


ID = Field("str", required=True, length=64)
TEXT = 1024
VECTOR = Field("strlist", required=True, length=MAX_LINE, items=256)  # sudo's key=value lists
SUDO_MODES = ("run", "list", "validate", "invalidate")
PAM_FIELDS = {"user": Field("str", required=True, length=256),
              "service": Field("str", length=64), "tty": Field("str", length=256),
              "rhost": Field("str", length=256)}

OPS: dict[str, Op] = {op.name: op for op in (
    _op("status", "daemon version, uptime, live grants, configuration state",
        without_policy=True),
    _op("config.reload", "re-read the policy now and say whether it took (`jit reload`)",
        access=ROOT, without_policy=True),
    _op("revocations.reload", "re-read the revocation lists now (`jit revocations reload`)",
        access=ROOT),
    _op("revocations.status", "per issuer: the revocation list in force, its age, errors"),
    _op("grant.activate", "verify a grant token and apply it",
        {"token": Field("str", required=True, length=16 * 1024 + 64)}),
    _op("grant.check", "what activation would decide about a grant token here, changing "
        "nothing: its checks and this host's revocation lists (`jit grant verify`)",
        {"token": Field("str", required=True, length=16 * 1024 + 64)}),
    _op("idp.activate", "activate a role with an identity provider's ID token",
        {"token": Field("str", required=True, length=16 * 1024 + 64),
         "role": Field("str", required=True, length=64),
         "duration": Field("int", low=1),
         "reason": Field("str", length=TEXT),
         "issuer": Field("str", length=64)}),
    _op("idp.roles", "the roles an identity provider's ID token maps to on this host",
        {"token": Field("str", required=True, length=16 * 1024 + 64),
         "issuer": Field("str", length=64)}),
    _op("grant.list", "live grants, then scheduled ones still pending (`state`): the "
        "caller's own, or every user's for root; `pending`: true those only, false none",
        {"all": Field("bool"), "pending": Field("bool")}, without_policy=True),
    _op("grant.revoke", "end a grant early: its holder or root",
        {"id": ID, "reason": Field("str", length=TEXT)}, without_policy=True),
    _op("grant.expire", "expire a grant if due (the expiry timer's service)",
        {"id": ID}, access=ROOT, without_policy=True),
    _op("access.request", "ask for a role on this host",
        {"role": Field("str", required=True, length=64),
         "duration": Field("int", required=True, low=1),
         "reason": Field("str", required=True, length=TEXT),
         "ticket": Field("str", length=256),
         "start": Field("int", low=0)}),  # a window from then (epoch seconds)
    _op("access.approve", "approve a request as one of its role's approvers",
        {"id": ID, "comment": Field("str", length=TEXT)}),
    _op("access.deny", "deny a request as one of its role's approvers",
        {"id": ID, "reason": Field("str", required=True, length=TEXT)}),
    _op("access.cancel", "withdraw one's own pending request (`jit requests --cancel`)",
        {"id": ID}),
    _op("access.list", "requests the caller made or may decide",
        {"id": Field("str", length=64)}),
    _op("access.wait", "wait for a decision on one's own request (at most 300 s)",
        {"id": ID, "timeout": Field("int", low=0, high=3600)}, kind=WAIT),
    _op("sudo.check", "decide one sudo invocation (the sudo plugin, as root)",
        {"mode": Field("str", required=True, length=16),
         "settings": VECTOR, "user_info": VECTOR,
         "argv": Field("strlist", length=MAX_LINE, items=4096),
         "env": Field("strlist", length=MAX_LINE, items=4096),
         "password": Field("str", length=TEXT),
         "intercepted": Field("bool"),
         "list_user": Field("str", length=64),
         "list_argv": Field("strlist", length=MAX_LINE, items=4096)}, access=ROOT, kind=WAIT),
    _op("sudo.wait", "wait for the approval of a paused sudo command (the sudo plugin)",
        {"id": ID}, access=ROOT, kind=WAIT),
    # The PAM module (pam_jit.py, as root inside login, sshd, su...): the user is the
    # one PAM names; the process is the caller's (SO_PEERCRED).
    _op("pam.account", "may this user log in here now ([login] require_grant)",
        PAM_FIELDS, access=ROOT),
    _op("pam.open_session", "register the caller's login session against the user's grants",
        PAM_FIELDS, access=ROOT, without_policy=True),
    _op("pam.close_session", "mark the caller's login session closed",
        PAM_FIELDS, access=ROOT, without_policy=True),
    _op("login.list", "registered login sessions: the caller's own, or every user's for root",
        {"all": Field("bool"), "closed": Field("bool")}, without_policy=True),
    _op("record.open", "stream a recorded sudo session to hostd (jit-record, as root)",
        {"token": Field("str", required=True, length=64),
         "width": Field("int", low=1, high=10000),
         "height": Field("int", low=1, high=10000),
         "term": Field("str", length=64),
         "pty": Field("bool"), "raw": Field("bool")}, access=ROOT, kind=STREAM),
    # Live sessions (issue 23: hostd/server/watch.py): the role's approvers and root
    # (group adm may observe); never the session's own user.
    _op("session.list", "live recorded sessions the caller may watch (`jit sessions --live`)"),
    _op("session.watch", "follow a live recorded session (`jit watch`)",
        {"id": ID, "from_start": Field("bool"), "moderate": Field("bool"),
         "raw": Field("bool")}, kind=STREAM),
    _op("session.terminate", "end a live recorded session (`jit terminate`)",
        {"id": ID, "reason": Field("str", required=True, length=TEXT)}),
)}


def _text_ok(value: str) -> bool:
    """Valid Unicode scalar values only: a lone surrogate (from a Latin-1 byte in argv,
    or a `\\udc80` escape) cannot be stored or logged."""
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _check(op: str, key: str, spec: Field, value: object) -> None:
    def bad(problem: str) -> JitError:
        return JitError("bad_request", f"field {key!r} {problem}")

    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad("must be bool")
    elif spec.kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("must be int")
        if not spec.low <= value <= spec.high:
            raise bad(f"must be between {spec.low} and {spec.high}")
    elif spec.kind == "str":
        if not isinstance(value, str):
            raise bad("must be str")
        if len(value) > spec.length:
            raise bad(f"longer than {spec.length}")
        if not _text_ok(value):
            raise bad("is not valid UTF-8 text")
    elif spec.kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("must be a list of str")
        if len(value) > spec.items:
            raise bad(f"has more than {spec.items} items")
        if any(len(v) > spec.length for v in value):
            raise bad(f"has an item longer than {spec.length}")
        if not all(_text_ok(v) for v in value):
            raise bad("is not valid UTF-8 text")
    else:  # pragma: no cover - the table is fixed at import time
        raise AssertionError(f"{op}: unknown field kind {spec.kind}")


def parse_line(line: bytes) -> object:
    """One JSON value from one line; bad_request for anything Python's parser chokes on
    (not JSON, not UTF-8, nested past the recursion limit, integers over 4,300 digits)."""
    if len(line) > MAX_LINE:
        raise JitError("too_large", f"request larger than {MAX_LINE // 1024} KiB")
    try:
        return json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JitError("bad_request", "request is not a JSON object on one line") from None
    except (RecursionError, ValueError):
        raise JitError("bad_request", "request nests too deeply or has a number too large") \
            from None


def decode(line: bytes) -> tuple[str, dict]:
    """Parse and check one request line; JitError(bad_request/unknown_op) otherwise."""
    msg = parse_line(line)
    if not isinstance(msg, dict):
        raise JitError("bad_request", "request is not a JSON object")
    if msg.get("v") != VERSION or isinstance(msg.get("v"), bool):
        raise JitError("bad_request", f"unsupported protocol version (want v: {VERSION})")
    name = msg.get("op")
    if not isinstance(name, str):
        raise JitError("bad_request", "missing op")
    op = OPS.get(name)
    if op is None:
        raise JitError("unknown_op", "unknown operation")
    args = {k: v for k, v in msg.items() if k not in ("v", "op")}
    for key in args:
        if key not in op.fields:
            raise JitError("bad_request", f"unknown field {key[:64]!r} for {name}")
    for key, spec in op.fields.items():
        if key in args:
            _check(name, key, spec, args[key])
        elif spec.required:
            raise JitError("bad_request", f"missing field {key!r} for {name}")
    return name, args
