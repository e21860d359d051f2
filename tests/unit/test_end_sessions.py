"""Ending what a grant opened: the core says what (EndSessions), the server carries it
out (server_sessions): a privilege_residue event over a fake /proc with keep-sessions,
logind sessions ended through a stand-in for logind, warnings scheduled and cancelled."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from fakes import FakeTimers
from test_core import HOUR, World
from test_residue import put, status

from hostd.core.effects import EndSessions
from hostd.paths import Paths
from hostd.server.connections import Server

DOCKER, ADM = 2006, 2000  # FakeAccounts.gid_of: 2000 + place in name order


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    world.timers = FakeTimers()
    world.paths = Paths.for_root(tmp_path)
    world.server = Server(world.core, world.timers, paths=world.paths)
    yield world
    world.server.close()
    world.store.close()


def ends(w) -> list[EndSessions]:
    return [e for e in w.core.take_effects() if isinstance(e, EndSessions)]


def test_expiry_says_which_groups_to_take_from_running_processes(w):
    g = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.core.take_effects()
    w.clock.t += HOUR
    assert w.core.expire(g["id"])
    assert ends(w) == [EndSessions(g["id"], 1000, "alice", "ops",
                                   (("adm", w.accounts.gid_of("adm")),
                                    ("docker", w.accounts.gid_of("docker"))),
                                   "terminate-sessions", "expired", "hostd")]


def test_a_group_still_held_is_not_taken(w):
    """Kept for another live grant, or the user's own before any grant: not named."""
    w.accounts.members["adm"].add("alice")  # standing
    a = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.activate(role="docker", exp=w.mint.now + 2 * HOUR)
    w.core.take_effects()
    w.core.revoke(a["id"], 1000)
    (e,) = ends(w)
    assert e.gids == () and e.reason == "revoked" and e.by == "alice"


def test_keep_sessions_and_removed_roles(w, make_config):
    cfg = make_config()
    cfg.roles["docker"] = replace(cfg.roles["docker"], on_expiry="keep-sessions")
    w.core.config = cfg
    g = w.activate(role="docker", exp=w.mint.now + HOUR)
    ops = w.activate(role="ops", exp=w.mint.now + HOUR)
    w.core.take_effects()
    w.clock.t += HOUR
    w.core.expire(g["id"])
    assert [e.mode for e in ends(w)] == ["keep-sessions"]
    cfg2 = make_config()
    cfg2.roles.pop("ops")
    w.core.config = cfg2
    w.core.end_unsupported()
    (e,) = ends(w)
    assert (e.grant_id, e.mode, e.reason) == (ops["id"], "terminate-sessions",
                                              "policy changed")


def test_an_early_timer_ends_nothing(w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.core.take_effects()
    assert not w.core.expire(g["id"])
    assert ends(w) == []


# --- carried out by the server ------------------------------------------------------------

def effect(mode: str = "keep-sessions", gids=(("docker", DOCKER),), reason="expired"):
    return EndSessions("0123456789ab", 1000, "alice", "docker", gids, mode, reason, "hostd")


def carry(w, e: EndSessions) -> None:
    async def go() -> None:
        await w.server.ending.end_sessions(e)
    asyncio.run(go())


def test_keep_sessions_logs_one_residue_event_naming_the_processes(w, tmp_path):
    proc = tmp_path / "proc"
    put(proc, 300, status(1000, (1000, DOCKER)), b"sleep\x00300\x00")
    put(proc, 301, status(1000, (1000, DOCKER)), b"evil\x00\x1b]0;x\x07\x00")
    put(proc, 302, status(1000, (1000,)), b"bash\x00")  # started after: holds nothing
    put(proc, 303, status(0, (DOCKER,)), b"dockerd\x00")
    carry(w, effect())
    (ev,) = w.events("privilege_residue")
    assert ev["JIT_PIDS"] == "300,301" and ev["JIT_COUNT"] == "2"
    assert ev["JIT_GROUPS"] == "docker" and ev["JIT_DECISION"] == "kept"
    assert ev["JIT_PROCESSES"] == ("300 [1000,docker] sleep 300; "
                                   "301 [1000,docker] evil \\x1b]0;x\\x07")
    assert w.events("session_terminated") == []


def test_keep_sessions_without_residue_logs_nothing(w, tmp_path):
    put(tmp_path / "proc", 302, status(1000, (1000,)), b"bash\x00")
    carry(w, effect())
    assert w.events("privilege_residue") == []


def test_a_group_given_back_since_is_not_reported(w, tmp_path):
    """alice activated docker again before the effect ran: her shells hold it rightly."""
    w.activate(role="docker", exp=w.mint.now + HOUR)
    put(tmp_path / "proc", 300, status(1000, (DOCKER,)), b"sleep\x00")
    carry(w, effect())
    assert w.events("privilege_residue") == []


class FakeLogind:
    """logind's answers for the sessions a test names; records what it was asked."""

    def __init__(self, sessions: dict[str, dict], stubborn: set[str] = frozenset()) -> None:
        self.sessions = sessions
        self.stubborn = stubborn  # sessions that ignore TerminateSession
        self.calls: list[tuple] = []

    async def session(self, sid: str) -> dict | None:
        return self.sessions.get(sid)

    async def user_sessions(self, uid: int) -> list[dict]:
        return [s for s in self.sessions.values() if s["uid"] == uid]

    async def terminate(self, sid: str) -> None:
        self.calls.append(("terminate", sid))
        if sid not in self.stubborn:
            self.sessions.pop(sid, None)

    async def kill(self, sid: str, who: str = "all", signo: int = 9) -> None:
        self.calls.append(("kill", sid, who, int(signo)))
        self.sessions.pop(sid, None)

    async def wait_gone(self, sid: str, timeout: float) -> bool:
        return sid not in self.sessions


def session(sid: str, uid: int = 1000, leader: int = 500, tty: str = "pts/3") -> dict:
    return {"id": sid, "uid": uid, "user": "alice", "tty": tty, "state": "active",
            "leader": leader, "remote": False}


def register(w, sid: str | None, grant_ids: list[str], pid: int = 500,
             uid: int = 1000, closed: bool = False) -> None:
    """What pam.open_session records (and pam.close_session marks)."""
    user = w.accounts.user_by_uid(uid)
    w.store.open_login_session({"sid": sid, "uid": uid, "user": user, "pid": pid,
                                "tty": "pts/3", "opened": int(w.clock.t)}, grant_ids)
    if closed:
        w.store.close_login_session(user, pid, int(w.clock.t))


def with_logind(w, logind) -> None:
    """The server as service.py builds it when logind is on the bus."""
    w.server.close()
    w.server = Server(w.core, w.timers, paths=w.paths, logind=logind)


def expire_and_carry(w, grant_id: str) -> None:
    async def go() -> None:
        assert await w.server.worker.run(w.core.expire, grant_id)
        await asyncio.gather(*w.server.ending._ending_tasks)
    w.clock.t += HOUR
    asyncio.run(go())


def test_terminate_ends_registered_sessions_then_kills_the_stubborn(w):
    g = w.activate(exp=w.mint.now + HOUR)
    register(w, "3", [g["id"]])
    register(w, "4", [g["id"]], pid=600)
    register(w, "5", [g["id"]], pid=701)  # logind's "5" has another leader now: left alone
    register(w, "6", [g["id"]], pid=900, uid=1001)  # another user's: left alone
    register(w, "7", [g["id"]], pid=800, closed=True)  # closed already
    register(w, None, [g["id"]], pid=801)  # no logind session: the /proc pass covers it
    register(w, "9", [], pid=802)  # opened without the grant
    logind = FakeLogind({"3": session("3"), "4": session("4", leader=600),
                         "5": session("5", leader=700), "6": session("6", uid=1001),
                         "7": session("7", leader=800), "9": session("9", leader=802)},
                        stubborn={"4"})
    with_logind(w, logind)
    expire_and_carry(w, g["id"])
    assert sorted(logind.calls) == [("kill", "4", "all", 9), ("terminate", "3"),
                                    ("terminate", "4")]
    got = {e["JIT_SESSION_ID"]: e["JIT_DECISION"] for e in w.events("session_terminated")}
    assert got == {"3": "terminated", "4": "killed"}
    assert {e["JIT_REASON"] for e in w.events("session_terminated")} == {"expired"}


def test_a_session_another_live_grant_covers_stays_when_nothing_was_taken(w):
    first = w.activate(exp=w.mint.now + HOUR)
    other = w.activate(exp=w.mint.now + 2 * HOUR)  # docker again: nothing is taken
    register(w, "3", [first["id"], other["id"]])
    register(w, "8", [first["id"]], pid=800)
    logind = FakeLogind({"3": session("3"), "8": session("8", leader=800)})
    with_logind(w, logind)
    expire_and_carry(w, first["id"])
    assert logind.calls == [("terminate", "8")]


def test_warnings_are_scheduled_and_cancelled_with_the_grant(w):
    async def go() -> tuple:
        g = w.activate(exp=w.mint.now + HOUR)
        await w.server.carry_out(w.core.take_effects())
        scheduled = len(w.server.ending._warn_handles[g["id"]])
        await w.server.worker.run(w.core.revoke, g["id"], 1000)
        await asyncio.gather(*w.server.ending._ending_tasks)
        return scheduled, w.server.ending._warn_handles.get(g["id"])
    assert asyncio.run(go()) == (2, None)


def test_a_warning_due_at_start_is_given_once(w):
    async def go() -> list[int]:
        g = w.activate(exp=w.mint.now + 200)
        w.core.take_effects()
        await w.server.effects.arm_missing([(g["id"], g["exp"])])
        await asyncio.sleep(0.01)
        w.server.ending.schedule_warnings(g["id"], g["exp"])  # re-armed: not given twice
        return sorted(w.server.ending._warned[g["id"]]), len(w.server.ending._warn_handles[g["id"]])
    assert asyncio.run(go()) == ([300], 1)
