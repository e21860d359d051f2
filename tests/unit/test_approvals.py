"""approvals: the pure decisions (who may request or decide, how votes add up, what a
command approval is bound to) and the Requests service over a real Store, an in-memory
group database and a hand-moved clock."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from fakes import Clock, FakeAccounts

from hostd.core import requests
from hostd.core.effects import ArmTimer, CancelTimer, Notify
from hostd.core.lifecycle import Core
from hostd.core.requests import HostSigner, Requests
from hostd.errors import JitError
from hostd.policy import approvals
from hostd.policy.config import Config, Issuer, Role
from hostd.policy.keys import PublicKey, thumbprint
from hostd.server.notify import entities, logged_in_ttys, message_for, write_to_tty
from hostd.state.journal import Events, read_mirror
from hostd.state.store import Store

NOW = 1_800_000_000

# --- pure decisions -----------------------------------------------------------------------

MEMBERS = [
    ("named-user", ("alice",), "alice", set(), True),
    ("other-user", ("alice",), "bob", set(), False),
    ("via-group", ("%sre",), "bob", {"sre"}, True),
    ("group-name-is-not-user", ("sre",), "bob", {"sre"}, False),
    ("user-named-like-group", ("%bob",), "bob", set(), False),
    ("empty", (), "alice", {"sre"}, False),
]


@pytest.mark.parametrize("members,user,groups,expected", [m[1:] for m in MEMBERS],
                         ids=[m[0] for m in MEMBERS])
def test_in_members(members, user, groups, expected):
    assert approvals.in_members(members, user, groups) is expected


def d(approver: str, decision: str = "approve") -> dict:
    return {"approver": approver, "decision": decision}


TALLY = [
    ("none-yet", [], 1, "pending"),
    ("one-of-one", [d("bob")], 1, "approved"),
    ("one-of-two", [d("bob")], 2, "pending"),
    ("same-approver-twice-counts-once", [d("bob"), d("bob")], 2, "pending"),
    ("two-distinct", [d("bob"), d("carol")], 2, "approved"),
    ("one-denial-ends-it", [d("bob"), d("carol", "deny")], 2, "denied"),
    ("denial-beats-enough-approvals", [d("bob"), d("carol"), d("dave", "deny")], 2, "denied"),
]


@pytest.mark.parametrize("decisions,needed,expected", [t[1:] for t in TALLY],
                         ids=[t[0] for t in TALLY])
def test_tally(decisions, needed, expected):
    assert approvals.tally(decisions, needed) == expected


ROLE = Role("docker", groups=("docker",), max_ttl=3600, issuers=("host",),
            requesters=("%developers",), approvers=("%sre", "dave"), approvals=1)


def req(**kw) -> dict:
    return {"id": "abcdefgh", "user": "alice", "state": "pending", "expires": NOW + 60, **kw}


DECIDE = [
    ("self", req(user="carol"), "carol", {"sre"}, "self_approval"),
    ("not-approver", req(), "eve", {"developers"}, "not_approver"),
    ("expired-state", req(state="expired"), "bob", {"sre"}, "request_expired"),
    ("past-expiry-still-pending", req(expires=NOW), "bob", {"sre"}, "request_expired"),
    ("already-approved", req(state="approved"), "bob", {"sre"}, "already_decided"),
    ("already-denied", req(state="denied"), "dave", set(), "already_decided"),
]


@pytest.mark.parametrize("request_,approver,groups,code", [c[1:] for c in DECIDE],
                         ids=[c[0] for c in DECIDE])
def test_may_decide_refusals(request_, approver, groups, code):
    with pytest.raises(JitError) as info:
        approvals.may_decide(ROLE, request_, approver, groups, NOW)
    assert info.value.code == code


def test_may_decide_allows_named_and_group_approvers():
    approvals.may_decide(ROLE, req(), "dave", set(), NOW)
    approvals.may_decide(ROLE, req(), "bob", {"sre"}, NOW)


def test_may_request():
    approvals.may_request(ROLE, "alice", {"developers"})
    with pytest.raises(JitError) as info:
        approvals.may_request(ROLE, "bob", {"sre"})
    assert info.value.code == "not_requester"


@pytest.mark.parametrize("reason,code", [("", "reason_required"), ("   \n", "reason_required"),
                                         (None, "reason_required"), (5, "reason_required"),
                                         ("x" * 1025, "bad_request")])
def test_clean_reason_refusals(reason, code):
    with pytest.raises(JitError) as info:
        approvals.clean_reason(reason)
    assert info.value.code == code


def test_subject_binds_every_part():
    base = approvals.command_subject("alice", "root", ["/usr/bin/systemctl", "stop", "x"],
                                     "/", "web-1")
    digest = approvals.subject_digest(base)
    for change in ({"user": "bob"}, {"runas": "postgres"}, {"cwd": "/tmp"}, {"host": "web-2"}):
        assert approvals.subject_digest({**base, **change}) != digest
    other_argv = approvals.command_subject("alice", "root", ["/usr/bin/systemctl", "stop x"],
                                           "/", "web-1")
    assert approvals.subject_digest(other_argv) != digest, "argv boundaries matter"


def test_request_ids_are_short_and_unambiguous():
    ids = {requests.new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 8 and set(i) <= set(requests.ID_ALPHABET) for i in ids)
    assert not set("01ilo") & set(requests.ID_ALPHABET)


# --- the service --------------------------------------------------------------------------

class World:
    def __init__(self, tmp_path, approvals_needed: int = 1) -> None:
        self.clock = Clock(NOW)
        self.accounts = FakeAccounts()
        self.accounts.uids.update({"carol": 1002, "dave": 1003})
        self.accounts.members.update({"developers": {"alice", "carol"}, "sre": {"bob", "carol"},
                                      "carol": set(), "dave": set()})
        key = ed25519.Ed25519PrivateKey.generate()
        pub = key.public_key()
        role = Role("docker", groups=("docker",), max_ttl=3600, issuers=("host",),
                    requesters=("%developers",), approvers=("%sre",),
                    approvals=approvals_needed)
        config = Config(roles={"docker": role},
                        issuers={"host": Issuer("host", (PublicKey(thumbprint(pub), "EdDSA",
                                                                   pub),), ("EdDSA",))},
                        request_ttl=600, sudo_approval_timeout=300)
        from hostd.policy.hostmatch import HostFacts

        self.mirror = tmp_path / "events.jsonl"
        self.store = Store(tmp_path / "state.db")
        self.core = Core(config, self.store, self.accounts, Events(self.mirror, journal=False),
                         HostFacts("web-1", "f" * 32), clock=self.clock)
        self.requests = Requests(self.core, HostSigner(key, "machine-id:" + "f" * 32))

    @property
    def notices(self) -> list[tuple[str, str, list[str]]]:
        """Notify effects the calls so far stated (what the server would send)."""
        return [(e.kind, e.request["id"], list(e.recipients))
                for e in self.core.take_effects() if isinstance(e, Notify)]

    def events(self, name: str) -> list[dict]:
        return [e for e in read_mirror(self.mirror) if e["JIT_EVENT"] == name]


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    yield world
    world.store.close()


def test_request_approved_signs_and_activates_a_host_grant(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    assert r["state"] == "pending"
    assert w.notices == [("created", r["id"], ["bob", "carol"])]
    out = w.requests.approve(1001, r["id"], "ok")
    assert out["state"] == "approved" and out["grant_id"]
    g = w.store.get_grant(out["grant_id"])
    assert (g["issuer"], g["user"], g["approved_by"], g["exp"] - g["not_before"]) == (
        "host", "alice", ["bob"], 1800)
    assert g["hosts"] == ["machine-id:" + "f" * 32]
    assert w.accounts.listed("alice", "docker")
    assert w.events("request_approved")[0]["JIT_APPROVER"] == "bob"
    # the activation names the request it was issued for (the audit links them by it)
    (activated,) = w.events("grant_activated")
    assert (activated["JIT_GRANT_ID"], activated["JIT_REQUEST_ID"]) == (g["id"], r["id"])


def test_request_duration_capped(w):
    r = w.requests.create(1000, "docker", 99999, "deploy")
    assert r["duration"] == 3600 and r["capped"] is True


def test_requests_expire_unanswered(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    w.clock.t += 601
    assert w.requests.expire_due() == [r["id"]]
    with pytest.raises(JitError) as info:
        w.requests.approve(1001, r["id"])
    assert info.value.code == "request_expired"
    assert not w.accounts.listed("alice", "docker")


def test_visible_own_and_decidable_only(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    assert [x["id"] for x in w.requests.visible(1000)] == [r["id"]]  # requester
    assert [x["id"] for x in w.requests.visible(1001)] == [r["id"]]  # approver
    assert w.requests.visible(1003) == []  # dave: neither


def test_command_approval_is_single_use_and_bound(w):
    subject = approvals.command_subject("alice", "root", ["/usr/bin/systemctl", "stop", "db"],
                                        "/root", "web-1")
    r = w.requests.create_command(1000, "docker", subject, "maintenance")
    assert not w.requests.consume_command(r["id"], subject), "not approved yet"
    w.requests.approve(1001, r["id"])
    other = {**subject, "runas": "postgres"}
    assert not w.requests.consume_command(r["id"], other)
    assert w.requests.consume_command(r["id"], subject)
    assert not w.requests.consume_command(r["id"], subject), "single use"


def test_command_approval_time_limited(w):
    subject = approvals.command_subject("alice", "root", ["/bin/true"], "/", "web-1")
    r = w.requests.create_command(1000, "docker", subject, "x")
    w.requests.approve(1001, r["id"])
    w.clock.t += 301
    assert not w.requests.consume_command(r["id"], subject)


def test_breakglass_grants_at_once(tmp_path):
    world = World(tmp_path, approvals_needed=0)
    r = world.requests.create(1000, "docker", 600, "prod down")
    assert r["state"] == "approved" and world.accounts.listed("alice", "docker")
    (ev,) = world.events("breakglass")
    assert ev["PRIORITY"] == "2" and ev["JIT_REQUEST_ID"] == r["id"]
    assert ev["JIT_GRANT_ID"] == r["grant_id"]
    world.store.close()


def test_breakglass_is_logged_after_it_happens_not_before(tmp_path):
    """Hardening finding 15: a failed break-glass must not read as taken."""
    world = World(tmp_path, approvals_needed=0)
    world.accounts.members.pop("docker")  # the role's group is gone: activation fails
    with pytest.raises(JitError) as info:
        world.requests.create(1000, "docker", 600, "prod down")
    assert info.value.code == "config_error"
    assert world.events("breakglass") == []
    assert [r["state"] for r in world.store.requests()] == ["failed"]
    world.store.close()


def test_breakglass_event_follows_the_activation(tmp_path):
    world = World(tmp_path, approvals_needed=0)
    world.requests.create(1000, "docker", 600, "prod down")
    names = [e["JIT_EVENT"] for e in read_mirror(world.mirror)]
    assert names.index("grant_activated") < names.index("breakglass")
    world.store.close()


def test_decisions_state_their_effects(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    assert w.core.take_effects() == [Notify("created", w.requests.public(
        w.store.get_request(r["id"])), ("bob", "carol"))]
    out = w.requests.approve(1001, r["id"], "ok")
    effects = w.core.take_effects()
    g = w.store.get_grant(out["grant_id"])
    assert effects[0] == ArmTimer(g["id"], g["exp"])
    assert [(e.kind, e.recipients) for e in effects[1:]] == [("approved", ("alice",))]
    w.core.revoke(g["id"], 1000)
    assert w.core.take_effects()[0] == CancelTimer(g["id"])


def test_without_a_host_key_requests_are_refused_up_front(tmp_path):
    """Hardening finding 3: a broken host key disables requests with a clear error."""
    world = World(tmp_path)
    world.requests = Requests(world.core, None, "host issuer key unusable: empty file")
    with pytest.raises(JitError) as info:
        world.requests.create(1000, "docker", 600, "deploy")
    assert info.value.code == "config_error"
    assert "requests are disabled: host issuer key unusable" in info.value.message
    assert world.store.requests() == [] and world.notices == []
    world.store.close()


# --- notices ------------------------------------------------------------------------------

HOSTILE = {"id": "abcdefgh", "user": "alice", "role": "docker", "state": "pending",
           "reason": "a\nb\x1b[31m\u202e<!here> *bold*", "kind": "role", "duration": 60}


def test_message_is_one_inert_line():
    text = message_for("created", HOSTILE)
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text
    assert "a\\nb\\x1b[31m\\u202e" in text


def test_entities_neutralise_mentions():
    assert entities("<!here> & <@U1>") == "&lt;!here&gt; &amp; &lt;@U1&gt;"


def test_utmp_parsing_and_tty_guard(tmp_path):
    import struct

    rec = struct.pack("<hxxi32s4s32s256shhiii4i20s", 7, 1, b"pts/9", b"ts/9", b"bob", b"",
                      0, 0, 0, 0, 0, 0, 0, 0, 0, b"")
    dead = struct.pack("<hxxi32s4s32s256shhiii4i20s", 8, 1, b"pts/8", b"ts/8", b"eve", b"",
                       0, 0, 0, 0, 0, 0, 0, 0, 0, b"")
    (tmp_path / "utmp").write_bytes(rec + dead)
    assert logged_in_ttys(tmp_path / "utmp") == [("bob", "pts/9")]
    assert logged_in_ttys(tmp_path / "missing") == []
    target = tmp_path / "not-a-tty"
    target.write_text("")
    from pathlib import Path

    assert write_to_tty(target, "x", 0) is False, "only /dev paths"
    assert write_to_tty(Path("/dev/../etc/passwd"), "x", 0) is False
    assert target.read_text() == ""


def test_webhook_failure_is_retried_then_logged(tmp_path):
    """hostd queues the notice; the sender (jit-hostd --webhook-send) tries three times,
    backing off, then logs notify_failed and removes the notice."""
    import socket as socket_mod

    from hostd.server import notify, webhook
    from hostd.server.spool import Spool

    with socket_mod.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    mirror = tmp_path / "events.jsonl"
    events = Events(mirror, journal=False)
    spool = Spool(tmp_path / "webhook")
    n = notify.Notifier(events, tmp_path / "utmp", lambda u: None,
                        lambda: f"http://127.0.0.1:{port}/hook", "web-1", spool=spool)
    n("created", HOSTILE, [])
    assert len(spool.pending()) == 1 and not read_mirror(mirror), "queued, nothing failed yet"
    assert webhook.drain(spool, events, sleeps.append) == (0, 1)
    assert sleeps == [0.5, 1.0], "three tries, backing off between them"
    (ev,) = [e for e in read_mirror(mirror) if e["JIT_EVENT"] == "notify_failed"]
    assert ev["JIT_REQUEST_ID"] == "abcdefgh" and ev["JIT_USER"] == "alice"
    assert "after 3 tries" in ev["MESSAGE"]
    assert spool.pending() == [], "a notice whose tries are spent is not retried forever"


def test_pending_requests_per_user_are_bounded(w):
    # five roles, each asked once (asking again for one role joins its request)
    roles = [f"r{i}" for i in range(requests.MAX_PENDING_PER_USER + 1)]
    docker = w.core.config.roles["docker"]
    for name in roles:
        w.core.config.roles[name] = replace(docker, name=name)
    for name in roles[:-1]:
        w.requests.create(1000, name, 600, "again")
    with pytest.raises(JitError) as info:
        w.requests.create(1000, roles[-1], 600, "and again")
    assert info.value.code == "too_many_requests"
    assert len(w.notices) == requests.MAX_PENDING_PER_USER
    w.clock.t += 601  # they expire unanswered: room again
    assert w.requests.create(1000, "docker", 600, "later")["state"] == "pending"


def test_asking_again_for_a_pending_role_joins_the_first_request(w):
    first = w.requests.create(1000, "docker", 600, "deploy")
    again = w.requests.create(1000, "docker", 1200, "deploy, again")
    assert again["id"] == first["id"] and again["joined"] is True
    assert len(w.store.requests(("pending",))) == 1
    assert len(w.events("request_created")) == 1, "approvers are not asked twice"


def test_a_requester_withdraws_their_own_pending_request(w):
    r = w.requests.create(1000, "docker", 600, "deploy")
    with pytest.raises(JitError) as info:
        w.requests.withdraw(1001, r["id"])  # bob, an approver, is not its requester
    assert info.value.code == "not_found"
    out = w.requests.withdraw(1000, r["id"])
    assert out["state"] == "cancelled"
    [ev] = w.events("request_expired")
    assert ev["JIT_DECISION"] == "cancelled" and "withdrawn" in ev["MESSAGE"]
    with pytest.raises(JitError) as info:
        w.requests.approve(1001, r["id"])
    assert (info.value.code, info.value.message) == (
        "already_decided", f"request {r['id']} was cancelled by its requester")
    with pytest.raises(JitError) as info:
        w.requests.withdraw(1000, r["id"])
    assert info.value.code == "already_decided"
    assert w.requests.create(1000, "docker", 600, "again")["id"] != r["id"]


def test_a_sudo_approval_cancelled_by_ctrl_c_is_cancelled_everywhere(w):
    subject = approvals.command_subject("alice", "root", ["/usr/bin/systemctl", "stop", "x"],
                                       "/", "web-1")
    r = w.requests.create_command(1000, "docker", subject, "sudo systemctl stop x")
    assert w.requests.cancel_command(r["id"], "alice")
    [listed] = [x for x in w.requests.visible(1000) if x["id"] == r["id"]]
    assert listed["state"] == "cancelled"
    assert w.events("request_expired")[-1]["JIT_DECISION"] == "cancelled"


def test_a_request_grants_at_most_once(w):
    """A request's grant carries the request's token id: a second grant is `replayed`."""
    r = w.requests.create(1000, "docker", 1800, "deploy")
    out = w.requests.approve(1001, r["id"])
    req = w.store.get_request(r["id"])
    assert w.store.grant_of_token("host", requests.request_jti(r["id"])) == out["grant_id"]
    with pytest.raises(JitError) as info:
        w.requests._grant({**req, "state": "pending"}, ["bob"])
    assert info.value.code == "replayed"


def test_crash_after_the_deciding_vote_is_finished_at_start(w, monkeypatch):
    """Crash suite finding: killed between the vote and the request's new state, the
    request stayed pending (misleading --wait, and open to a second grant)."""
    r = w.requests.create(1000, "docker", 1800, "deploy")
    real = w.store.set_request_state
    monkeypatch.setattr(w.store, "set_request_state", lambda *a, **k: False)  # "killed"
    w.requests.approve(1001, r["id"])
    monkeypatch.setattr(w.store, "set_request_state", real)
    assert w.store.get_request(r["id"])["state"] == "pending"
    grant_id = w.store.grant_of_token("host", requests.request_jti(r["id"]))
    assert grant_id and w.accounts.listed("alice", "docker")
    w.core.take_effects()
    assert w.requests.finish_interrupted() == [r["id"]]
    done = w.store.get_request(r["id"])
    assert (done["state"], done["grant_id"]) == ("approved", grant_id)
    assert len(w.store.grants("active")) == 1
    assert [n[0] for n in w.notices] == ["approved"]


def test_vote_recorded_but_grant_never_made_is_granted_at_start(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    w.store.add_decision(r["id"], "bob", 1001, "approve", "", w.core.now())  # then killed
    assert w.requests.finish_interrupted() == [r["id"]]
    done = w.store.get_request(r["id"])
    assert done["state"] == "approved" and w.accounts.listed("alice", "docker")


def test_undecided_requests_are_left_alone_at_start(w):
    r = w.requests.create(1000, "docker", 1800, "deploy")
    assert w.requests.finish_interrupted() == []
    assert w.store.get_request(r["id"])["state"] == "pending"


def test_a_command_approval_keeps_the_command_line_masked(w):
    """Approvers see which command waits (`jit requests`, the notice), not its secrets."""
    subject = approvals.command_subject("alice", "root", ["/usr/bin/mysql", "-pS3cret"],
                                        "/root", "web-1")
    r = w.requests.create_command(1000, "docker", subject, "sudo /usr/bin/mysql -pS3cret")
    assert r["reason"] == "sudo /usr/bin/mysql -p******"
    assert all("S3cret" not in str(x) for x in w.requests.visible(1001))
    assert "S3cret" not in str(w.events("request_created"))
