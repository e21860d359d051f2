"""The listener's quick path (hostd/server/quick.py) on a real socket: calls answered
without asyncio streams, everything else handed to Server.handle with what was read,
the same answers, bounds and limits as the streams path."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from fakes import FakeTimers
from test_core import World
from test_server import EchoOps

from hostd import protocol
from hostd.client import Client
from hostd.protocol import CALL, MAX_LINE, Field, Op
from hostd.server import quick
from hostd.server.connections import Server
from hostd.server.ops import register


class BigOps:
    """A call whose answer is larger than a socket buffer takes at once."""

    async def op_test_big(self, args: dict, caller) -> dict:
        return {"ok": True, "code": "ok", "message": "", "data": "x" * (3 << 20)}


@pytest.fixture
def served(tmp_path, config, host, mint, monkeypatch):
    """(socket path, server) with a Listener on a loop in a thread of its own."""
    world = World(tmp_path, config, host, mint)
    monkeypatch.setitem(protocol.OPS, "test.echo", Op(
        "test.echo", {"label": Field("str", length=8)}, kind=protocol.STREAM, summary="t"))
    monkeypatch.setitem(protocol.OPS, "test.big", Op("test.big", {}, kind=CALL, summary="t"))
    srv = Server(world.core, FakeTimers(), idle_timeout=0.5)
    register(srv.ops, EchoOps())
    register(srv.ops, BigOps())
    path = tmp_path / "s.sock"
    ready, done = threading.Event(), threading.Event()

    async def serve() -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.listen(128)
        listener = quick.Listener(srv, sock)
        ready.set()
        try:
            await asyncio.get_running_loop().run_in_executor(None, done.wait, 30)
        finally:
            listener.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    yield path, srv
    done.set()
    thread.join(20)
    srv.close()
    world.store.close()


def connect(path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(path))
    return s


def answers(s: socket.socket, n: int) -> list[dict]:
    """The next n answer lines."""
    buf = b""
    while buf.count(b"\n") < n:
        chunk = s.recv(1 << 20)
        assert chunk, f"closed early: {buf[:200]!r}"
        buf += chunk
    return [json.loads(x) for x in buf.split(b"\n")[:n]]


def settled(srv: Server) -> None:
    """Wait until every connection gave its seat back (the loop runs in its thread)."""
    deadline = time.monotonic() + 5
    while (srv.limits.quick or srv.limits.long) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.limits.quick == {} and srv.limits.long == {}, "every seat given back"


def req(op: str, **fields: object) -> bytes:
    return protocol.encode(protocol.request(op, **fields))


def test_calls_then_a_stream_on_one_connection(served):
    path, srv = served
    with Client(path) as client:
        assert client.ask("status")["ok"]
        assert client.ask("status")["ok"]  # the quick path waits for the next request
        stream = client.stream("test.echo", label="x")  # handed over to streams
        assert stream.opened["stream"] is True
        stream.send({"data": "d0"})
        assert stream.recv(5) == {"echo": "d0", "uid": 0}
        stream.send({"data": "end"})
        assert stream.recv(5)["frames"] == 1
        assert stream.recv(5) is None
    settled(srv)


def test_pipelined_requests_are_answered_in_order(served):
    path, _ = served
    with connect(path) as s:
        s.sendall(req("status") + b"not json\n" + req("status"))
        first, bad, last = answers(s, 3)
    assert first["ok"] and last["ok"]
    assert bad["code"] == "bad_request", "a bad line is answered, the connection goes on"


def test_a_request_in_pieces_is_answered_once_whole(served):
    path, _ = served
    with connect(path) as s:
        whole = req("status")
        s.sendall(whole[:5])
        time.sleep(0.1)
        s.sendall(whole[5:-1])
        time.sleep(0.1)
        s.sendall(b"\n")
        assert answers(s, 1)[0]["ok"]


def test_a_line_past_the_quick_bound_goes_to_streams(served):
    path, _ = served
    with connect(path) as s:  # over MAX_LINE: the streams path's named refusal
        s.sendall(b"x" * (MAX_LINE + 10) + b"\n")
        assert answers(s, 1)[0]["code"] == "too_large"
    with connect(path) as s:  # over PEEK_MAX, under MAX_LINE: answered by streams
        pad = " " * (quick.PEEK_MAX + 100)
        s.sendall(req("status")[:-1] + pad.encode() + b"\n" + req("status"))
        assert [a["ok"] for a in answers(s, 2)] == [True, True]


def test_an_answer_larger_than_the_socket_takes_arrives_whole(served):
    path, _ = served
    with connect(path) as s:
        s.sendall(req("test.big") + req("status"))
        time.sleep(0.2)  # the socket fills before the client reads: the rest is queued
        big, status = answers(s, 2)
    assert len(big["data"]) == 3 << 20 and status["ok"]


def test_an_idle_connection_is_closed(served):
    path, srv = served
    with connect(path) as s:
        assert s.recv(10) == b"", "closed after the idle timeout (0.5 s here)"
    with connect(path) as s:
        s.sendall(b'{"v": 1, "op": "sta')  # half a request, then nothing
        assert s.recv(10) == b""
    settled(srv)


def test_the_client_leaving_before_its_answer_costs_nothing(served):
    path, srv = served
    for _ in range(20):
        with connect(path) as s:
            s.sendall(req("status"))
    with connect(path) as s:
        s.sendall(req("status"))
        assert answers(s, 1)[0]["ok"]
    settled(srv)


def test_a_half_line_at_the_end_is_refused_as_the_streams_path_does(served):
    path, _ = served
    with connect(path) as s:
        s.sendall(b'{"v": 1, "op": "status"}')  # no newline, then the write side closes
        s.shutdown(socket.SHUT_WR)
        assert answers(s, 1)[0]["message"] == "request not ended by a newline"
        assert s.recv(10) == b""
