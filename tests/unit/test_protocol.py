"""protocol.decode: one bounded JSON line, `v: 1`, a known op and only its fields (§5)."""

from __future__ import annotations

import json

import pytest

from hostd import protocol
from hostd.errors import JitError


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


GOOD = [
    ("status", {"v": 1, "op": "status"}, ("status", {})),
    ("activate", {"v": 1, "op": "grant.activate", "token": "a.b.c"},
     ("grant.activate", {"token": "a.b.c"})),
    ("list-default", {"v": 1, "op": "grant.list"}, ("grant.list", {})),
    ("list-all", {"v": 1, "op": "grant.list", "all": True}, ("grant.list", {"all": True})),
    ("revoke", {"v": 1, "op": "grant.revoke", "id": "g1", "reason": "done"},
     ("grant.revoke", {"id": "g1", "reason": "done"})),
    ("revoke-id-at-limit", {"v": 1, "op": "grant.revoke", "id": "i" * 64},
     ("grant.revoke", {"id": "i" * 64})),
    ("expire", {"v": 1, "op": "grant.expire", "id": "g1"}, ("grant.expire", {"id": "g1"})),
]


@pytest.mark.parametrize("msg,expected", [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_decode_accepts(msg, expected):
    assert protocol.decode(line(msg)) == expected


def test_encode_round_trip():
    req = protocol.request("grant.revoke", id="g1", reason="r\nx")
    wire = protocol.encode(req)
    assert wire.endswith(b"\n") and wire.count(b"\n") == 1
    assert protocol.decode(wire) == ("grant.revoke", {"id": "g1", "reason": "r\nx"})


BAD = [
    ("unknown-op", {"v": 1, "op": "grant.steal"}, "unknown_op", "unknown operation"),
    ("pam-op-without-user", {"v": 1, "op": "pam.account"}, "bad_request",
     "missing field 'user'"),
    ("unknown-field", {"v": 1, "op": "status", "user": "root"}, "bad_request", "unknown field"),
    ("identity-field-refused", {"v": 1, "op": "grant.activate", "token": "t", "uid": 0},
     "bad_request", "unknown field 'uid'"),
    ("bool-where-str", {"v": 1, "op": "grant.revoke", "id": True}, "bad_request", "must be str"),
    ("int-where-str", {"v": 1, "op": "grant.revoke", "id": 5}, "bad_request", "must be str"),
    ("null-where-str", {"v": 1, "op": "grant.activate", "token": None}, "bad_request",
     "must be str"),
    ("list-where-str", {"v": 1, "op": "grant.activate", "token": ["t"]}, "bad_request",
     "must be str"),
    ("str-where-bool", {"v": 1, "op": "grant.list", "all": "yes"}, "bad_request",
     "must be bool"),
    ("int-where-bool", {"v": 1, "op": "grant.list", "all": 1}, "bad_request", "must be bool"),
    ("over-long-id", {"v": 1, "op": "grant.revoke", "id": "i" * 65}, "bad_request",
     "longer than 64"),
    ("over-long-reason", {"v": 1, "op": "grant.revoke", "id": "g", "reason": "r" * 1025},
     "bad_request", "longer than 1024"),
    ("over-long-token", {"v": 1, "op": "grant.activate", "token": "t" * (16 * 1024 + 65)},
     "bad_request", "longer than"),
    ("missing-required", {"v": 1, "op": "grant.revoke"}, "bad_request", "missing field 'id'"),
    ("missing-op", {"v": 1}, "bad_request", "missing op"),
    ("op-not-string", {"v": 1, "op": 3}, "bad_request", "missing op"),
    ("wrong-version", {"v": 2, "op": "status"}, "bad_request", "version"),
    ("version-zero", {"v": 0, "op": "status"}, "bad_request", "version"),
    ("version-string", {"v": "1", "op": "status"}, "bad_request", "version"),
    ("version-true", {"v": True, "op": "status"}, "bad_request", "version"),
    ("missing-v", {"op": "status"}, "bad_request", "version"),
    ("array", [1, 2], "bad_request", "not a JSON object"),
    ("string", "status", "bad_request", "not a JSON object"),
    ("null", None, "bad_request", "not a JSON object"),
]


@pytest.mark.parametrize("msg,code,problem", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_decode_refuses(msg, code, problem):
    with pytest.raises(JitError) as info:
        protocol.decode(line(msg))
    assert info.value.code == code
    assert problem in info.value.message


RAW = [
    ("bad-json", b'{"v": 1, "op": "status"', "bad_request"),
    ("two-objects", b'{"v":1,"op":"status"}{"v":1,"op":"status"}', "bad_request"),
    ("not-utf8", b'{"v": 1, "op": "\xff"}', "bad_request"),
    ("empty", b"", "bad_request"),
    ("blank-line", b"\n", "bad_request"),
    ("too-large", b'{"v":1,"op":"status","x":"' + b"x" * protocol.MAX_LINE + b'"}',
     "too_large"),
]


@pytest.mark.parametrize("raw,code", [r[1:] for r in RAW], ids=[r[0] for r in RAW])
def test_decode_refuses_raw(raw, code):
    with pytest.raises(JitError) as info:
        protocol.decode(raw)
    assert info.value.code == code


def test_too_large_is_refused_before_parsing(monkeypatch):
    def must_not_parse(*args, **kwargs):
        raise AssertionError("an oversized line reached the JSON parser")

    monkeypatch.setattr(protocol.json, "loads", must_not_parse)
    with pytest.raises(JitError) as info:
        protocol.decode(b" " * (protocol.MAX_LINE + 1))
    assert info.value.code == "too_large"


def test_line_at_the_limit_is_accepted():
    head = b'{"v":1,"op":"grant.activate","token":"'
    tail = b'"}'
    # a token at its own field limit, padded with JSON whitespace to exactly MAX_LINE
    body = head + b"t" * (16 * 1024 + 64) + tail
    raw = body + b" " * (protocol.MAX_LINE - len(body))
    assert len(raw) == protocol.MAX_LINE
    op, args = protocol.decode(raw)
    assert op == "grant.activate" and len(args["token"]) == 16 * 1024 + 64
