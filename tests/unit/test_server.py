"""The server: central checks from the op table, the ordered worker, effects carried out,
in-memory wake-ups, connection limits per kind, streams, peer credentials."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from dataclasses import replace

import pytest
from fakes import FakeTimers
from test_approvals import World as RequestsWorld
from test_core import HOUR, World

from hostd import protocol
from hostd.client import Client
from hostd.protocol import Field, Op
from hostd.server import connections as server
from hostd.server import daemon
from hostd.server.connections import Limits, Server
from hostd.server.ops import Caller, register


def line(op: str, **fields: object) -> bytes:
    return protocol.encode(protocol.request(op, **fields))


def ask(srv: Server, uid: int, op: str, **fields: object) -> dict:
    """One request; then the timer calls it asked for are waited for (they run in the
    background: the answer never waits for systemd)."""
    async def go() -> dict:
        answer = (await srv.dispatch(line(op, **fields), Caller(uid, 1, uid)))[1]
        await srv.effects.settled()
        return answer
    return asyncio.run(go())


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    world.timers = FakeTimers()
    world.server = Server(world.core, world.timers)
    yield world
    world.server.close()
    world.store.close()


# --- central checks from the table ---------------------------------------------------------

def test_root_only_op_is_refused_centrally(w):
    answer = ask(w.server, 1000, "grant.expire", id="0" * 12)
    assert (answer["code"], answer["message"]) == ("permission_denied",
                                                   "only root may ask for grant.expire")
    assert ask(w.server, 0, "grant.expire", id="0" * 12)["ok"]


def test_revoke_works_while_the_policy_is_broken(w):
    """Hardening finding 9: grant.revoke needs no policy, for the holder and for root."""
    g1, g2 = w.activate(), w.activate()
    w.server.config_error = "jit.toml: roles.docker: unknown key"
    assert ask(w.server, 1000, "grant.activate", token=w.token())["code"] == "config_error"
    assert ask(w.server, 1000, "grant.revoke", id=g1["id"])["ok"]
    assert ask(w.server, 0, "grant.revoke", id=g2["id"], reason="cleanup")["ok"]
    assert not w.accounts.listed("alice", "docker")


@pytest.mark.parametrize("raw", [
    b'{"v":1,"op":"grant.revoke","id":"abc","reason":"caf\\udce9"}\n',  # Latin-1 byte in argv
    b'{"v":1,"op":"grant.revoke","id":"\\ud800"}\n',
    b'{"v":1,"op":"status","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
    b'{"v":1,"op":"access.request","role":"r","reason":"x","duration":' + b"9" * 5000 + b"}\n",
    b'{"v":1,"op":"access.request","role":"r","reason":"x","duration":' + b"9" * 30 + b"}\n",
    b'{"v":1,"op":"access.wait","id":"x","timeout":NaN}\n',
], ids=["latin1-surrogate", "lone-high-surrogate", "deep-nesting", "huge-int", "int-over-range",
        "nan"])
def test_hostile_frames_are_bad_requests_not_internal(w, raw):
    """Hardening findings 5 and 6 at the wire: surrogates, nesting, huge numbers."""
    answer = asyncio.run(w.server.dispatch(raw, Caller(1000, 1, 1000)))[1]
    assert answer["code"] in ("bad_request", "too_large"), answer


def test_a_lone_surrogate_reason_never_blocks_the_revoke(w):
    g = w.activate()
    bad = b'{"v":1,"op":"grant.revoke","id":"%s","reason":"\\udce9"}\n' % g["id"].encode()
    assert asyncio.run(w.server.dispatch(bad, Caller(1000, 1, 1000)))[1]["code"] == "bad_request"
    assert ask(w.server, 1000, "grant.revoke", id=g["id"], reason="caf\u00e9")["ok"]


# --- effects -----------------------------------------------------------------------------

def test_effects_are_carried_out_after_the_change(w):
    g = ask(w.server, 1000, "grant.activate", token=w.token())["grant"]
    assert w.timers.log == [("arm", g["id"])]
    ask(w.server, 1000, "grant.revoke", id=g["id"])
    assert w.timers.log[-1] == ("cancel", g["id"])


class StuckTimers(FakeTimers):
    """systemd that does not answer until told to (then fails, when `fail`)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()
        self.fail = False

    async def arm(self, grant_id: str, exp: int) -> None:
        await self.go.wait()
        if self.fail:
            raise RuntimeError("org.freedesktop.DBus.Error.Timeout: no answer in 5 s")
        await super().arm(grant_id, exp)


@pytest.mark.parametrize("fail", [False, True])
def test_activation_answers_before_its_timer_is_armed(w, fail):
    """Arming runs in the background; a failure still becomes `timer_failed`."""
    srv = Server(w.core, StuckTimers())

    async def go() -> tuple[dict, list]:
        answer = (await srv.dispatch(line("grant.activate", token=w.token()),
                                     Caller(1000, 1, 1000)))[1]
        armed_before = list(srv.effects.timers.log)
        srv.effects.timers.fail = fail
        srv.effects.timers.go.set()
        await srv.effects.settled()
        return answer, armed_before
    answer, armed_before = asyncio.run(go())
    srv.close()
    assert answer["ok"] and armed_before == []
    if fail:
        (ev,) = w.events("timer_failed")
        assert ev["JIT_GRANT_ID"] == answer["grant"]["id"]
    else:
        assert srv.effects.timers.log == [("arm", answer["grant"]["id"])]
        assert w.events("timer_failed") == []


def test_timer_calls_of_one_grant_keep_their_order(w):
    """An arm still waiting on systemd and then a cancel: the cancel comes after."""
    timers = StuckTimers()
    srv = Server(w.core, timers)

    async def go() -> None:
        g = (await srv.dispatch(line("grant.activate", token=w.token()),
                                Caller(1000, 1, 1000)))[1]["grant"]
        await srv.dispatch(line("grant.revoke", id=g["id"]), Caller(1000, 1, 1000))
        await asyncio.sleep(0)
        assert timers.log == []  # the cancel waits behind the arm
        timers.go.set()
        await srv.effects.settled()
    asyncio.run(go())
    srv.close()
    assert [what for what, _ in timers.log] == ["arm", "cancel"]


def test_an_early_firing_is_rearmed_by_the_core(w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.core.take_effects()
    answer = ask(w.server, 0, "grant.expire", id=g["id"])
    assert answer["expired"] is False and w.timers.log == [("arm", g["id"])]


def test_policy_change_ends_grants_of_removed_roles_and_issuers(w, make_config):
    """Hardening finding 16: a reload that removes a role or an issuer ends its grants."""
    kept = w.activate(role="docker")
    gone_role = w.activate(role="ops")
    w.core.take_effects()
    cfg = make_config()
    cfg.roles.pop("ops")
    w.core.config = cfg
    assert w.core.end_unsupported() == [gone_role["id"]]
    (ev,) = w.events("grant_revoked")
    assert (ev["JIT_GRANT_ID"], ev["JIT_REASON"]) == (gone_role["id"], "policy changed")
    cfg2 = make_config()
    cfg2.issuers.pop("corp")
    w.core.config = cfg2
    assert w.core.end_unsupported() == [kept["id"]]
    assert not w.accounts.listed("alice", "docker") and not w.accounts.listed("alice", "adm")
    assert [type(e).__name__ for e in w.core.take_effects()] == ["CancelTimer",
                                                                 "EndSessions"] * 2


# --- nothing slow on the loop -------------------------------------------------------------

def test_status_and_listing_answer_while_a_change_is_stuck(w):
    """A gpasswd that hangs holds up the worker, never the loop."""
    entered, release = threading.Event(), threading.Event()
    real_add = w.accounts.add

    def slow_add(user: str, group: str) -> None:
        entered.set()
        release.wait(10)
        real_add(user, group)

    w.accounts.add = slow_add

    async def go() -> tuple[dict, dict, bool]:
        change = asyncio.create_task(w.server.dispatch(
            line("grant.activate", token=w.token()), Caller(1000, 1, 1000)))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        status = (await w.server.dispatch(line("status"), Caller(1000, 1, 1000)))[1]
        listing = (await w.server.dispatch(line("grant.list"), Caller(1000, 1, 1000)))[1]
        still_stuck = not change.done()
        release.set()
        await change
        return status, listing, still_stuck

    status, listing, still_stuck = asyncio.run(go())
    assert still_stuck and status["ok"] and listing["ok"]


def test_wait_is_woken_by_the_decision_without_polling(tmp_path):
    world = RequestsWorld(tmp_path)
    srv = Server(world.core, FakeTimers(), requests=world.requests)
    r = world.requests.create(1000, "docker", 600, "deploy")
    reads = []
    real_own = world.requests.own
    world.requests.own = lambda uid, rid: reads.append(rid) or real_own(uid, rid)

    async def go() -> dict:
        waiter = asyncio.create_task(srv.dispatch(line("access.wait", id=r["id"],
                                                       timeout=60), Caller(1000, 1, 1000)))
        await asyncio.sleep(0.5)  # a poller at 0.25 s would have read twice by now
        assert len(reads) == 1 and srv.limits.long[1000] == 1
        await srv.dispatch(line("access.approve", id=r["id"]), Caller(1001, 2, 1001))
        return (await asyncio.wait_for(waiter, 5))[1]

    answer = asyncio.run(go())
    assert answer["request"]["state"] == "approved" and len(reads) == 2
    assert srv.limits.long == {}
    srv.close()
    world.store.close()


# --- connection limits per kind -------------------------------------------------------------

def test_root_is_never_capped_per_uid_and_keeps_its_share():
    """Hardening finding 2: 40 expiries at once must not get `busy`."""
    limits = Limits()
    for uid in range(1000, 1000 + server.MAX_QUICK // server.MAX_QUICK_PER_UID):
        for _ in range(server.MAX_QUICK_PER_UID):
            assert limits.admit(uid)
    assert not limits.admit(5000), "non-root share used up"
    assert all(limits.admit(0) for _ in range(100)), "root still gets in"


def test_a_uid_is_capped_per_kind():
    limits = Limits()
    assert all(limits.admit(1000) for _ in range(server.MAX_QUICK_PER_UID))
    assert not limits.admit(1000)
    # waiting connections leave the quick count: the same user can still run `jit`
    for _ in range(4):
        assert limits.to_long(1000)
    assert all(limits.admit(1000) for _ in range(4))
    assert not limits.admit(1000)


def test_long_lived_connections_are_capped_apart():
    limits = Limits()
    for _ in range(server.MAX_LONG_PER_UID):
        assert limits.admit(1000) and limits.to_long(1000)
    assert limits.admit(1000) and not limits.to_long(1000)
    assert limits.admit(0) and limits.to_long(0)


def test_everything_together_is_bounded():
    limits = Limits()
    assert all(limits.admit(0) for _ in range(server.MAX_CONNECTIONS))
    assert not limits.admit(0)


def test_peer_credentials_are_unsigned():
    """Hardening finding 14: uid 3,000,000,000 is a user, not a negative number."""
    class FakeSock:
        def getsockopt(self, level, opt, size):
            return struct.pack("iII", 4242, 3_000_000_000, 3_000_000_001)

    assert server.peer_credentials(FakeSock()) == (4242, 3_000_000_000, 3_000_000_001)


# --- streams over a real socket ------------------------------------------------------------

class EchoOps:
    async def op_test_echo(self, args: dict, caller: Caller, channel) -> dict:
        await channel.send({"ok": True, "code": "ok", "message": "open", "stream": True})
        count = 0
        while (frame := await channel.recv()) is not None and frame.get("data") != "end":
            count += 1
            await channel.send({"echo": frame["data"], "uid": caller.uid})
        return {"ok": True, "code": "ok", "message": "closed", "frames": count}


def test_stream_frames_both_ways_on_a_real_socket(w, tmp_path, monkeypatch):
    op = Op("test.echo", {"label": Field("str", length=8)}, kind=protocol.STREAM,
            summary="test")
    monkeypatch.setitem(protocol.OPS, "test.echo", op)
    srv = Server(w.core, w.timers)
    register(srv.ops, EchoOps())  # a test-only op beside the real ones
    path = tmp_path / "s.sock"
    ready, done = threading.Event(), threading.Event()
    seen: dict = {}

    async def serve() -> None:
        unix = await asyncio.start_unix_server(srv.handle, path=str(path))
        ready.set()
        async with unix:
            await asyncio.get_running_loop().run_in_executor(None, done.wait, 20)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        ready.wait(10)
        with Client(path) as client:
            assert client.ask("status")["ok"]  # several calls in turn, one connection
            stream = client.stream("test.echo", label="x")
            assert stream.opened["stream"] is True
            seen["long"] = dict(srv.limits.long)
            for i in range(3):
                stream.send({"data": f"d{i}"})
                assert stream.recv(5) == {"echo": f"d{i}", "uid": 0}
            stream.send({"data": "end"})
            assert stream.recv(5)["frames"] == 3
            assert stream.recv(5) is None, "hostd closes after the final frame"
    finally:
        done.set()
        thread.join(20)
    assert seen["long"] == {0: 1} and srv.limits.long == {} and srv.limits.quick == {}
    srv.close()


# --- the expiry timer's retry -----------------------------------------------------------------

def test_expire_retries_busy_with_backoff(monkeypatch, tmp_path):
    """Hardening finding 2: `jit-hostd --expire` does not give up on `busy`."""
    answers = [{"ok": False, "code": "busy", "message": "busy"}] * 3 + [
        {"ok": True, "code": "ok", "message": "expired", "expired": True}]
    calls, sleeps = [], []

    class FakeClient:
        def __init__(self, path, timeout):
            pass

        def call(self, req):
            calls.append(req)
            return answers[len(calls) - 1]

    import hostd.client

    monkeypatch.setattr(hostd.client, "Client", FakeClient)
    monkeypatch.setattr(daemon.time, "sleep", sleeps.append)
    from hostd.paths import Paths

    assert daemon._ask_expire(Paths.for_root(tmp_path), "0" * 12) == 0
    assert len(calls) == 4 and sleeps == [0.1, 0.2, 0.4]


def test_socket_peer_check_refuses_a_non_root_server(tmp_path):
    """trusted clients (PAM, sudo, the recorder) talk only to a root-owned socket."""
    path = tmp_path / "user.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen(1)
        import os

        os.chown(path, 1000, 1000)
        with pytest.raises(Exception) as info:
            Client(path, trusted=True).call(protocol.request("status"))
        assert info.value.code == "unreachable" and "owned by root" in info.value.message


def test_replace_keeps_ops_frozen():
    op = protocol.OPS["status"]
    assert replace(op, summary="x") is not op and json.dumps(op.name)
