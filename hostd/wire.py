"""The wire format's constants and encoding: what a client needs and nothing more.

Kept apart from protocol.py (the op table, which needs dataclasses) so that the stdlib
client, and with it `jit-record` on every recorded sudo, imports only json."""

from __future__ import annotations

import json
import struct

VERSION = 1
MAX_LINE = 64 * 1024

# A raw data frame on the record.open stream (when both sides said `raw`): RS (a JSON
# line starts with "{"), the kind (b"o" output, b"i" input), t as a big-endian double,
# the length as a 32-bit unsigned, then the bytes as they are: no base64 either way.
RAW = 0x1E
RECORD_FRAME = struct.Struct(">BcdI")
MAX_RAW = 256 * 1024  # bytes of data in one raw frame


def encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def request(op: str, **fields: object) -> dict:
    return {"v": VERSION, "op": op, **fields}
