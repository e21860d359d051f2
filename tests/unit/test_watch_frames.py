"""`jit watch`'s reader of a raw watch stream (hostd/cli/live.py _recv): JSON lines and
raw output frames (hostd/server/watch.py _raw) in any mix and split anywhere."""

from __future__ import annotations

import socket

import pytest

from hostd.cli.live import _recv
from hostd.client import Client, Stream
from hostd.errors import JitError
from hostd.server.watch import _raw
from hostd.wire import encode


def stream_over(sock: socket.socket, already: bytes = b"") -> Stream:
    client = Client("/nonexistent")
    client._sock = sock
    client._buf += already  # what the first answer's read took past its line
    return Stream(client, {"ok": True})


def test_lines_and_raw_frames_split_anywhere() -> None:
    ours, theirs = socket.socketpair()
    wire = b"".join([*_raw("o", 0.5, b"\x1b[1mhi\x1b[0m\r\n"),
                     encode({"paused": "the moderator left"}),
                     *_raw("r", 0.6, (100, 30)),
                     *_raw("o", 0.7, b"x" * 70000),
                     encode({"ok": True, "code": "ok", "end": "exit 0"})])
    stream = stream_over(ours, wire[:7])  # part of the first header is already read
    for i in range(7, len(wire), 4093):
        theirs.sendall(wire[i:i + 4093])
    theirs.close()
    got = [_recv(stream, 5) for _ in range(5)]
    assert got == [b"\x1b[1mhi\x1b[0m\r\n", {"paused": "the moderator left"},
                   {"t": 0.6, "r": [100, 30]}, b"x" * 70000,
                   {"ok": True, "code": "ok", "end": "exit 0"}]
    assert _recv(stream, 5) is None  # hostd closed the stream


def test_a_quiet_stream_times_out_and_garbage_is_named() -> None:
    ours, theirs = socket.socketpair()
    stream = stream_over(ours)
    with pytest.raises(JitError) as quiet:
        _recv(stream, 0.05)
    assert quiet.value.code == "timeout"
    theirs.sendall(b"not json\n")
    with pytest.raises(JitError) as garbage:
        _recv(stream, 5)
    assert garbage.value.code == "unreachable"


def test_watch_json_is_refused_as_a_usage_error_before_connecting(capsys, monkeypatch) -> None:
    import json

    from hostd.cli import live
    from hostd.cli.main import build_parser
    from hostd.errors import EXIT_USAGE

    def no_hostd(*_a, **_k):
        raise AssertionError("jit watch --json must not connect")

    monkeypatch.setattr(live, "Client", no_hostd)
    args = build_parser().parse_args(["watch", "0123456789abcdef", "--json"])
    assert args.func(args) == EXIT_USAGE
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and answer["code"] == "usage"
    assert "jit replay ID --json" in answer["message"]


def test_a_json_watcher_gets_lines_that_fit_however_large_the_recorders_frame() -> None:
    """The recorder's raw frames carry up to MAX_RAW (256 KiB); a watcher that did not
    ask for raw frames reads JSON lines of at most 64 KiB, so they are split."""
    import base64
    import json

    from hostd.server.watch import _line
    from hostd.wire import MAX_LINE, MAX_RAW

    data = bytes(range(256)) * (MAX_RAW // 256)
    lines = _line("o", 1.5, data).splitlines(keepends=True)
    assert len(lines) > 1 and all(len(line) <= MAX_LINE for line in lines)
    frames = [json.loads(line) for line in lines]
    assert {f["t"] for f in frames} == {1.5}
    assert b"".join(base64.b64decode(f["o"]) for f in frames) == data
