"""`jit` refuses arguments that are not valid UTF-8 before it sends anything.

Python turns undecodable argv bytes into lone surrogates (PEP 383); sent on, such a
string reached hostd's SQLite binding as text it cannot encode.
"""

from __future__ import annotations

import io
import json
import os

import pytest

from hostd.cli import main as cli

LATIN1 = os.fsdecode(b"caf\xe9")  # what Python makes of a Latin-1 byte in argv


@pytest.fixture
def no_daemon(monkeypatch):
    """Any attempt to reach hostd fails the test."""

    def must_not_call(*args, **kwargs):
        raise AssertionError("the CLI reached for the daemon")

    monkeypatch.setattr(cli.Client, "call", must_not_call)


ARGV = [
    ("revoke-reason", ["revoke", "abc123", "--reason", LATIN1], "--reason"),
    ("revoke-reason-equals", ["revoke", "abc123", f"--reason={LATIN1}"], "--reason"),
    ("request-reason", ["request", "docker", "--for", "1h", "--reason", LATIN1], "--reason"),
    ("request-ticket", ["request", "docker", "--for", "1h", "--reason", "r",
                        "--ticket", LATIN1], "--ticket"),
    ("request-role", ["request", LATIN1, "--for", "1h", "--reason", "r"], "ROLE"),
    ("revoke-id", ["revoke", LATIN1], "GRANT_ID"),
    ("approve-comment", ["approve", "abcd2345", "--comment", LATIN1], "--comment"),
    ("deny-reason", ["deny", "abcd2345", "--reason", LATIN1], "--reason"),
    ("activate-token", ["activate", LATIN1], "TOKEN|-"),
    ("grant-verify-token", ["grant", "verify", LATIN1], "TOKEN|-"),
    ("issue-for", ["issue", "--key", "k", "--issuer", "corp", "--user", "alice",
                   "--role", "docker", "--for", LATIN1], "--for"),
]


@pytest.mark.parametrize("argv,label", [c[1:] for c in ARGV], ids=[c[0] for c in ARGV])
def test_latin1_byte_in_argument_is_a_usage_error(argv, label, no_daemon, capsys):
    """Finding: `jit revoke ID --reason $'\\xe9'` crashed hostd's SQLite binding."""
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == f"jit: usage: {label} is not valid UTF-8\n"


def test_latin1_byte_refused_in_json_mode(no_daemon, capsys):
    assert cli.main(["revoke", "abc123", "--reason", LATIN1, "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out == {"ok": False, "code": "usage", "message": "--reason is not valid UTF-8"}


def test_token_on_stdin_that_is_not_utf8_is_a_usage_error(no_daemon, monkeypatch, capsys):
    raw = io.TextIOWrapper(io.BytesIO(b"eyJ\xff.a.b"), encoding="utf-8", errors="strict")
    monkeypatch.setattr(cli.sys, "stdin", raw)
    assert cli.main(["activate", "-"]) == 2
    assert capsys.readouterr().err == "jit: usage: standard input is not valid UTF-8\n"


def test_token_on_stdin_with_surrogates_is_a_usage_error(no_daemon, monkeypatch, capsys):
    """Under the C locale Python reads stdin with surrogateescape."""
    raw = io.TextIOWrapper(io.BytesIO(b"eyJ\xff.a.b"), encoding="utf-8",
                           errors="surrogateescape")
    monkeypatch.setattr(cli.sys, "stdin", raw)
    assert cli.main(["activate", "-"]) == 2
    assert capsys.readouterr().err == "jit: usage: standard input is not valid UTF-8\n"


def test_valid_utf8_arguments_still_reach_the_daemon(monkeypatch, capsys):
    """The control: non-ASCII text that is valid UTF-8 is sent as it is."""
    sent = []

    def call(self, req):
        sent.append(req)
        return {"ok": True, "code": "ok", "message": "", "grant": {"id": "abc123"}}

    monkeypatch.setattr(cli.Client, "call", call)
    assert cli.main(["revoke", "abc123", "--reason", "café ☕"]) == 0
    assert sent[0]["reason"] == "café ☕"
