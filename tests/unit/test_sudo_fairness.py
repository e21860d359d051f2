"""Issue 17 items 4 and 5, the pieces that need no booted host: password checks are
fair per user (server/passwords.py) and a password timestamp belongs to one terminal
session (core/sudo.stamp_key). The e2e tier shows both through real sudo and PAM."""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hostd.core.sudo import stamp_key, start_time
from hostd.errors import JitError
from hostd.policy.sudorequest import SudoRequest
from hostd.server import passwords
from hostd.server.passwords import Gone, PasswordChecks
from hostd.state.pamauth import Verdict

# -- fairness -------------------------------------------------------------------------------


class Pam:
    """A PAM whose checks block until released, counting what runs at once per user."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.running: dict[int, int] = {}
        self.most: dict[int, int] = {}
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def run(self, uid: int, ok: bool, block: bool, delay: float = 0.0):
        def check() -> Verdict:
            with self.lock:
                self.calls.append(uid)
                self.running[uid] = self.running.get(uid, 0) + 1
                self.most[uid] = max(self.most.get(uid, 0), self.running[uid])
            if block:
                self.release.wait(30)
            with self.lock:
                self.running[uid] -= 1
            return Verdict(ok, delay)
        return check


async def _until(predicate) -> None:
    """Yield to the loop until `predicate` holds (a condition, not a clock)."""
    for _ in range(100_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_one_users_wrong_passwords_stop_nobody_elses_sudo():
    """alice's checks hold at most one thread; bob's runs while hers are queued."""
    async def scenario() -> None:
        pool = ThreadPoolExecutor(max_workers=4)
        checks, pam = PasswordChecks(pool), Pam()
        alice = [asyncio.ensure_future(checks.check(1001, pam.run(1001, False, True)))
                 for _ in range(6)]
        await _until(lambda: checks.waiting(1001) == 6 and pam.calls == [1001])
        bob = await asyncio.wait_for(checks.check(1002, pam.run(1002, True, False)), 30)
        assert bob.ok and pam.calls.count(1001) == 1, "bob answered while alice waited"
        pam.release.set()
        assert all(not v.ok for v in await asyncio.gather(*alice))
        assert pam.most[1001] == 1 and checks.waiting(1001) == 0
        pool.shutdown()
    asyncio.run(scenario())


def test_a_check_whose_sudo_has_gone_is_dropped_before_it_runs():
    async def scenario() -> None:
        pool = ThreadPoolExecutor(max_workers=2)
        checks, pam = PasswordChecks(pool), Pam()
        first = asyncio.ensure_future(checks.check(1001, pam.run(1001, False, True)))
        await _until(lambda: pam.calls == [1001])
        gone = asyncio.get_running_loop().create_future()
        queued = asyncio.ensure_future(checks.check(1001, pam.run(1001, False, False), gone))
        await _until(lambda: checks.waiting(1001) == 2)
        gone.set_result(b"")
        with pytest.raises(Gone):
            await queued
        pam.release.set()
        await first
        assert pam.calls == [1001], "the dropped check never reached PAM"
        pool.shutdown()
    asyncio.run(scenario())


def test_a_user_whose_own_checks_are_queued_is_told_so(monkeypatch):
    monkeypatch.setattr(passwords, "QUEUE_DEPTH", 2)

    async def scenario() -> None:
        pool = ThreadPoolExecutor(max_workers=2)
        checks, pam = PasswordChecks(pool), Pam()
        held = [asyncio.ensure_future(checks.check(1001, pam.run(1001, False, True)))
                for _ in range(2)]
        await _until(lambda: checks.waiting(1001) == 2)
        with pytest.raises(JitError) as info:
            await checks.check(1001, pam.run(1001, False, False))
        assert info.value.code == "busy" and "password checks of yours" in info.value.message
        pam.release.set()
        await asyncio.gather(*held)
        pool.shutdown()
    asyncio.run(scenario())


def test_the_fail_delay_holds_the_users_turn_not_a_thread():
    """A wrong password's delay is slept on the loop, inside the user's turn: the next
    check of that user starts only after it, while the pool's one thread is free."""
    async def scenario() -> None:
        pool = ThreadPoolExecutor(max_workers=1)
        checks, pam = PasswordChecks(pool), Pam()
        slow = asyncio.ensure_future(checks.check(1001, pam.run(1001, False, False, 0.2)))
        await _until(lambda: pam.calls == [1001])
        bob = await asyncio.wait_for(checks.check(1002, pam.run(1002, True, False)), 30)
        assert bob.ok and not slow.done(), "bob used the one thread during alice's delay"
        again = asyncio.ensure_future(checks.check(1001, pam.run(1001, True, False)))
        await slow
        assert (await again).ok and pam.calls == [1001, 1002, 1001]
        pool.shutdown()
    asyncio.run(scenario())


# -- timestamps per terminal session --------------------------------------------------------

def _proc(tmp_path: Path, pid: int, start: int) -> None:
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    rest = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10  # field 22 is the start time
    (d / "stat").write_text(f"{pid} (ba sh) ) {' '.join(rest)}\n")


def _req(sid: int, tty: str = "/dev/pts/4") -> SudoRequest:
    return SudoRequest.from_wire([], ["user=alice", "uid=1000", "gid=1000", "cwd=/",
                                      f"tty={tty}", f"sid={sid}", "pid=9", "ppid=8"], [], [])


def test_a_password_timestamp_is_not_reused_by_another_terminal_session(tmp_path):
    """Same /dev/pts/4, a new session (another sid, or the same sid reused by a new
    leader): a new key, so the password is asked again."""
    _proc(tmp_path, 500, 111)
    _proc(tmp_path, 600, 222)
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    first = stamp_key(_req(500), proc, dev)
    assert first is not None and stamp_key(_req(500), proc, dev) == first
    assert stamp_key(_req(600), proc, dev) != first
    _proc(tmp_path, 500, 333)  # pid 500 reused by a later session leader
    assert stamp_key(_req(500), proc, dev) != first


def test_the_terminal_is_keyed_by_its_device_number(tmp_path):
    _proc(tmp_path, 500, 111)
    key = stamp_key(_req(500, "/dev/null"), tmp_path / "proc", Path("/dev"))
    assert key is not None and key[2] == os.stat("/dev/null").st_rdev


def test_an_unknown_session_keeps_no_timestamp(tmp_path):
    assert stamp_key(_req(777), tmp_path / "proc", tmp_path / "dev") is None
    assert start_time(Path("/proc"), str(os.getpid())) is not None
