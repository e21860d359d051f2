"""The wire format's constants and encoding: what a client needs and nothing more.

Kept apart from protocol.py (the op table, which needs dataclasses) so that the stdlib
client, and with it `jit-record` on every recorded sudo, imports only json."""

from __future__ import annotations

import json

VERSION = 1
MAX_LINE = 64 * 1024


def encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def request(op: str, **fields: object) -> dict:
    return {"v": VERSION, "op": op, **fields}
