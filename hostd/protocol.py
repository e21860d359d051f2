"""The socket protocol (DESIGN.md §5): one JSON object per line, `v: 1`, bounded.

Requests are checked here against a schema before anything acts on them: unknown
operations and unknown fields are refused, every field has a type and a length bound.
The caller's identity is never a field; the server takes it from SO_PEERCRED.
"""

from __future__ import annotations

import json

from .errors import JitError

VERSION = 1
MAX_LINE = 64 * 1024

# op -> {field: (type, max length or None, required)}
SCHEMAS: dict[str, dict[str, tuple[type, int | None, bool]]] = {
    "status": {},
    "grant.activate": {"token": (str, 16 * 1024 + 64, True)},
    "grant.list": {"all": (bool, None, False)},
    "grant.revoke": {"id": (str, 64, True), "reason": (str, 1024, False)},
    "grant.expire": {"id": (str, 64, True)},
    "access.request": {"role": (str, 64, True), "duration": (int, None, True),
                       "reason": (str, 1024, True), "ticket": (str, 256, False)},
    "access.approve": {"id": (str, 64, True), "comment": (str, 1024, False)},
    "access.deny": {"id": (str, 64, True), "reason": (str, 1024, True)},
    "access.list": {"id": (str, 64, False)},
    "access.wait": {"id": (str, 64, True), "timeout": (int, None, False)},
}

# Named in DESIGN.md §5, built by later parts; refused by name until then.
PLANNED = ("sudo.check", "sudo.wait", "pam.account", "pam.open_session", "pam.close_session",
           "record.open")


def decode(line: bytes) -> tuple[str, dict]:
    """Parse and check one request line; JitError(bad_request/unknown_op) otherwise."""
    if len(line) > MAX_LINE:
        raise JitError("too_large", f"request larger than {MAX_LINE // 1024} KiB")
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise JitError("bad_request", "request is not a JSON object on one line") from None
    if not isinstance(msg, dict):
        raise JitError("bad_request", "request is not a JSON object")
    if msg.get("v") != VERSION or isinstance(msg.get("v"), bool):
        raise JitError("bad_request", f"unsupported protocol version (want v: {VERSION})")
    op = msg.get("op")
    if not isinstance(op, str):
        raise JitError("bad_request", "missing op")
    schema = SCHEMAS.get(op)
    if schema is None:
        if op in PLANNED:
            raise JitError("unknown_op", f"operation {op} is not available in this version")
        raise JitError("unknown_op", "unknown operation")
    args = {k: v for k, v in msg.items() if k not in ("v", "op")}
    for key in args:
        if key not in schema:
            raise JitError("bad_request", f"unknown field {key!r} for {op}")
    for key, (kind, limit, required) in schema.items():
        if key not in args:
            if required:
                raise JitError("bad_request", f"missing field {key!r} for {op}")
            continue
        value = args[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise JitError("bad_request", f"field {key!r} must be {kind.__name__}")
        if limit is not None and len(value) > limit:
            raise JitError("bad_request", f"field {key!r} longer than {limit}")
    return op, args


def encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def request(op: str, **fields: object) -> dict:
    return {"v": VERSION, "op": op, **fields}
