"""hostd/core/sudo.py: identity, timestamps, password tries, approvals around the pure
decision, with fake accounts and a fake PAM."""

from __future__ import annotations

import pytest
from test_approvals import World as RequestsWorld

from hostd.core.sudo import MAX_TRIES, TIMESTAMP_SECONDS, Sudo
from hostd.errors import JitError
from hostd.policy.config import Config, Guardrail, Role, SudoRule


def args(argv, user="alice", uid=1000, **settings):
    return {"settings": [f"{k}={v}" for k, v in settings.items()],
            "user_info": [f"user={user}", f"uid={uid}", f"gid={uid}", "cwd=/", "tty=/dev/pts/3",
                          "pid=77", "ppid=76"],
            "argv": argv, "env": ["TERM=xterm"]}


@pytest.fixture
def w(tmp_path):
    import re

    world = RequestsWorld(tmp_path)
    docker = world.core.config.roles["docker"]
    world.core.config = Config(
        roles={"docker": Role(**{**docker.__dict__, "sudo": (
            SudoRule("root", ("/usr/bin/id -u", "/usr/bin/touch /tmp/ok")),),
            "authenticate": True})},
        issuers=world.core.config.issuers, request_ttl=600, sudo_approval_timeout=300,
        guardrails=(Guardrail("approve", re.compile("^/usr/bin/touch "), ""),))
    world.passwords = []

    def pam(user, password):
        world.passwords.append((user, password))
        return password == "right"

    world.sudo = Sudo(world.core, world.requests, pam, which=lambda p: p)
    world.accounts.account = lambda spec: _root() if spec in ("root", "#0") else None
    yield world
    world.store.close()


def _root():
    from hostd.state.accounts import Account

    return Account("root", 0, 0, "/root", "/bin/bash", (0,), "root")


def grant(w):
    r = w.requests.create(1000, "docker", 600, "work")
    w.requests.approve(1001, r["id"])


def test_user_info_must_name_the_uids_account(w):
    with pytest.raises(JitError) as info:
        w.sudo.ask(args(["/usr/bin/id", "-u"], user="bob", uid=1000))
    assert info.value.code == "bad_request"


def test_allowed_with_a_grant_and_a_password_is_needed(w):
    assert w.sudo.ask(args(["/usr/bin/id", "-u"])).decision.code == "no_grant"
    grant(w)
    asked = w.sudo.ask(args(["/usr/bin/id", "-u"]))
    assert asked.decision.allowed and asked.decision.needs_password
    assert asked.request.pid == "77"


def test_timestamp_five_minutes_per_tty_and_sudo_k(w):
    key = (1000, "/dev/pts/3")
    assert not w.sudo.fresh(key)
    assert w.sudo.check_password(1000, key, "77", "alice", "right").ok
    assert w.sudo.fresh(key) and not w.sudo.fresh((1000, "/dev/pts/4"))
    w.clock.t += TIMESTAMP_SECONDS + 1
    assert not w.sudo.fresh(key)
    w.sudo.check_password(1000, key, "78", "alice", "right")
    w.sudo.forget(key)
    assert not w.sudo.fresh(key)


def test_three_wrong_passwords_per_invocation(w):
    key = (1000, "/dev/pts/3")
    for n in range(MAX_TRIES):
        assert not w.sudo.check_password(1000, key, "77", "alice", "wrong").ok
        assert w.sudo.tries_left(1000, "77") == MAX_TRIES - n - 1
    assert w.sudo.tries_left(1000, "78") == MAX_TRIES, "another sudo starts afresh"
    assert not w.sudo.fresh(key)


def test_approval_is_bound_used_once_and_cancellable(w):
    grant(w)
    asked = w.sudo.ask(args(["/usr/bin/touch", "/tmp/ok"]))
    assert asked.decision.result == "pending"
    req = w.sudo.request_approval(asked)
    assert req["kind"] == "command" and w.sudo.approvals.waiting_for(req["id"]) is asked
    w.requests.approve(1001, req["id"])
    d = w.sudo.approved(req["id"])
    assert d.allowed and "command=/usr/bin/touch" in d.command_info
    with pytest.raises(JitError):
        w.sudo.approved(req["id"])  # once
    second = w.sudo.request_approval(w.sudo.ask(args(["/usr/bin/touch", "/tmp/ok"])))
    w.sudo.cancel(second["id"])
    assert w.store.get_request(second["id"])["outcome"] == "cancelled"
    with pytest.raises(JitError):
        w.requests.approve(1001, second["id"])


def test_denied_approval_is_never_used(w):
    grant(w)
    req = w.sudo.request_approval(w.sudo.ask(args(["/usr/bin/touch", "/tmp/ok"])))
    w.requests.deny(1001, req["id"], "no")
    with pytest.raises(JitError) as info:
        w.sudo.approved(req["id"])
    assert info.value.code == "denied"



def test_remembered_passwords_and_tries_stay_bounded(w, monkeypatch):
    import hostd.core.sudo as sudo_mod

    monkeypatch.setattr(sudo_mod, "MAX_REMEMBERED", 10)
    for n in range(30):
        w.sudo.check_password(1000, (1000, f"/dev/pts/{n}"), str(n), "alice", "wrong")
    w.clock.t += TIMESTAMP_SECONDS + 1
    w.sudo.check_password(1000, (1000, "/dev/pts/99"), "99", "alice", "right")
    assert len(w.sudo._tries) == 0 and len(w.sudo._stamps) == 1
    assert w.sudo.fresh((1000, "/dev/pts/99"))


def test_an_approved_recorded_commands_exec_is_expected_once(w):
    """Approvals holds what the recorder's exec of an approved command may run: only
    an intercepted check of the same user and sudo process, once, within EXEC_TTL."""
    from dataclasses import replace

    from hostd.core.sudo import EXEC_TTL

    req = w.sudo.parse(args(["/usr/bin/touch", "/tmp/ok"]))
    w.sudo.approvals.expect_exec(req, "/usr/bin/touch /tmp/ok")
    assert w.sudo.approvals.take_exec(req) is None, "sudo's own check is not the exec"
    intercepted = replace(req, intercepted=True)
    assert w.sudo.approvals.take_exec(intercepted) == "/usr/bin/touch /tmp/ok"
    assert w.sudo.approvals.take_exec(intercepted) is None, "once"
    w.sudo.approvals.expect_exec(req, "/usr/bin/touch /tmp/ok")
    assert w.sudo.approvals.take_exec(replace(intercepted, pid="78")) is None
    w.sudo.approvals.expect_exec(req, "/usr/bin/touch /tmp/ok")
    w.clock.t += EXEC_TTL
    assert w.sudo.approvals.take_exec(intercepted) is None, "too late"


def test_the_exec_ttl_is_the_recording_tokens():
    from hostd.core.sudo import EXEC_TTL, MAX_EXECS
    from hostd.record.recordings import MAX_TOKENS, TOKEN_TTL

    assert (EXEC_TTL, MAX_EXECS) == (TOKEN_TTL, MAX_TOKENS)


def test_the_recorders_exec_of_an_approved_command_is_decided_once(w, monkeypatch):
    """Parsed once, looked up once, decided once (it used to be all twice); a later
    intercepted check of the same command meets the approve guardrail again."""
    import asyncio

    from test_server import FakeTimers, line

    from hostd.core import sudo as core_sudo
    from hostd.server.connections import Server
    from hostd.server.ops import Caller

    grant(w)
    srv = Server(w.core, FakeTimers(), requests=w.requests)
    decided, real = [], core_sudo.decide
    monkeypatch.setattr(core_sudo, "decide",
                        lambda *a, **kw: decided.append(kw["approved"]) or real(*a, **kw))
    argv = ["/usr/bin/touch", "/tmp/ok"]
    srv.sudo.approvals.expect_exec(srv.sudo.parse(args(argv)), "/usr/bin/touch /tmp/ok")

    async def check() -> dict:
        return (await srv.dispatch(line("sudo.check", mode="run", intercepted=True,
                                        **args(argv)), Caller(0, 1, 0)))[1]

    first = asyncio.run(check())
    assert first["decision"] == "allow" and decided == [True], first
    again = asyncio.run(check())
    assert again["decision"] == "pending" and decided == [True, False], again
    srv.close()
