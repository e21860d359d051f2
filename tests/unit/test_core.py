"""core: activation, overlap, standing membership, revocation, expiry and reconcile, over a
real Store in a tmp directory, an in-memory stand-in for the group database and a clock
the tests move by hand."""

from __future__ import annotations

import pytest
from fakes import Clock, FakeAccounts

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.state.journal import Events, read_mirror
from hostd.state.store import Store

HOUR = 3600


class World:
    """One host: core plus the pieces tests look at."""

    def __init__(self, tmp_path, config, host, mint) -> None:
        self.mint = mint
        self.clock = Clock(mint.now)
        self.accounts = FakeAccounts()
        self.store = Store(tmp_path / "state.db")
        self.mirror = tmp_path / "events.jsonl"
        self.core = Core(config, self.store, self.accounts, Events(self.mirror, journal=False),
                         host, clock=self.clock)

    def token(self, **claims) -> str:
        return self.mint.token(**claims)

    def activate(self, caller: int = 1000, **claims) -> dict:
        return self.core.activate(self.token(**claims), caller)

    def events(self, name: str | None = None) -> list[dict]:
        return [e for e in read_mirror(self.mirror) if name is None or e["JIT_EVENT"] == name]

    def membership_states(self, gid: str) -> dict[str, tuple[int, str]]:
        return {m["grp"]: (m["standing"], m["state"]) for m in self.store.memberships(gid)}


@pytest.fixture
def w(tmp_path, config, host, mint):
    world = World(tmp_path, config, host, mint)
    yield world
    world.store.close()


def refusal(fn, *args) -> JitError:
    with pytest.raises(JitError) as info:
        fn(*args)
    return info.value


# --- activation ------------------------------------------------------------------------------


def test_activation_adds_the_roles_groups(w):
    g = w.activate(role="ops", exp=w.mint.now + HOUR)
    assert (g["user"], g["role"], g["groups"], g["exp"]) == (
        "alice", "ops", ["docker", "adm"], w.mint.now + HOUR)
    assert w.accounts.listed("alice", "docker") and w.accounts.listed("alice", "adm")
    assert w.membership_states(g["id"]) == {"docker": (0, "applied"), "adm": (0, "applied")}
    assert [e["JIT_GROUPS"] for e in w.events("membership_added")] == ["docker", "adm"]
    (activated,) = w.events("grant_activated")
    assert (activated["JIT_GRANT_ID"], activated["JIT_USER"], activated["JIT_UID"]) == (
        g["id"], "alice", "1000")
    assert [x["id"] for x in w.core.list_grants(1000)] == [g["id"]]


def test_root_may_activate_for_the_user(w):
    g = w.activate(caller=0)
    assert g["user"] == "alice" and w.accounts.listed("alice", "docker")


WRONG_USER = [
    ("another-user", 1001, {}),
    ("unknown-caller", 4242, {}),
    ("grant-for-no-local-user", 1000, {"sub": "zed"}),
]


@pytest.mark.parametrize("caller,claims", [c[1:] for c in WRONG_USER],
                         ids=[c[0] for c in WRONG_USER])
def test_wrong_user_changes_nothing_and_does_not_use_up_the_token(caller, claims, w):
    token = w.token(**claims)
    assert refusal(w.core.activate, token, caller).code == "wrong_user"
    assert w.store.grants(state=None) == []
    assert not w.accounts.listed("alice", "docker")
    (refused,) = w.events("grant_refused")
    assert (refused["JIT_CODE"], refused["JIT_DECISION"]) == ("wrong_user", "refused")
    if not claims:  # the rightful user can still use it
        assert w.core.activate(token, 1000)["user"] == "alice"


def test_refusal_from_verify_is_logged(w):
    assert refusal(w.core.activate, w.token(role="nope"), 1000).code == "unknown_role"
    (refused,) = w.events("grant_refused")
    assert refused["JIT_CODE"] == "unknown_role"


def test_missing_group_on_this_host_is_a_config_error(w):
    del w.accounts.members["adm"]
    token = w.token(role="ops")
    assert refusal(w.core.activate, token, 1000).code == "config_error"
    assert w.store.grants(state=None) == [] and not w.accounts.listed("alice", "docker")


REPLAYS = [
    ("twice", lambda w, g: None),
    ("after-revoke", lambda w, g: w.core.revoke(g["id"], 1000)),
    ("after-revoke-by-root", lambda w, g: w.core.revoke(g["id"], 0)),
]


@pytest.mark.parametrize("between", [r[1] for r in REPLAYS], ids=[r[0] for r in REPLAYS])
def test_replayed(between, w):
    token = w.token()
    g = w.core.activate(token, 1000)
    between(w, g)
    members_before = set(w.accounts.members["docker"])
    assert refusal(w.core.activate, token, 1000).code == "replayed"
    assert refusal(w.core.activate, token, 0).code == "replayed"
    assert w.accounts.members["docker"] == members_before
    assert len(w.store.grants("active")) == (1 if between is REPLAYS[0][1] else 0)


def test_activation_failing_midway_leaves_nothing_and_can_be_retried(w):
    token = w.token(role="ops")  # docker, then adm
    w.accounts.fail_add.add(("alice", "adm"))
    err = refusal(w.core.activate, token, 1000)
    assert err.code == "internal"
    assert w.store.grants("active") == []
    (failed,) = w.store.grants("failed")
    assert not w.accounts.listed("alice", "docker") and not w.accounts.listed("alice", "adm")
    assert w.membership_states(failed["id"]) == {"docker": (0, "removed"),
                                                "adm": (0, "removed")}
    assert w.core.list_grants(1000) == []
    w.accounts.fail_add.clear()
    g = w.core.activate(token, 1000)  # not "replayed": the failed attempt let go of the jti
    assert w.accounts.listed("alice", "docker") and w.accounts.listed("alice", "adm")
    assert [x["id"] for x in w.core.list_grants(1000)] == [g["id"]]


def test_activation_failing_midway_keeps_standing_membership(w):
    w.accounts.members["docker"].add("alice")
    w.accounts.fail_add.add(("alice", "adm"))
    refusal(w.core.activate, w.token(role="ops"), 1000)
    assert w.accounts.listed("alice", "docker")
    assert ("remove", "alice", "docker") not in w.accounts.log


# --- overlap and standing membership ------------------------------------------------------------

ENDINGS = {
    "expire": lambda w, g: (setattr(w.clock, "t", g["exp"]), w.core.expire(g["id"])),
    "revoke": lambda w, g: w.core.revoke(g["id"], 1000),
    "revoke-by-root": lambda w, g: w.core.revoke(g["id"], 0),
    "sweep": lambda w, g: (setattr(w.clock, "t", g["exp"] + 1), w.core.sweep()),
}


# (how the first grant ends, which of the two ends first); only revocation can end the
# grant with the later exp first
OVERLAPS = [(how, "earlier") for how in sorted(ENDINGS)] + [
    (how, "later") for how in ("revoke", "revoke-by-root")]


@pytest.mark.parametrize("how,first_ends", OVERLAPS, ids=[f"{h}-{f}" for h, f in OVERLAPS])
def test_overlapping_grants_first_to_end_leaves_the_group(how, first_ends, w):
    a = w.activate(exp=w.mint.now + HOUR)
    b = w.activate(exp=w.mint.now + 2 * HOUR)
    first, second = (a, b) if first_ends == "earlier" else (b, a)
    ENDINGS[how](w, first)
    assert w.accounts.listed("alice", "docker"), "the other live grant still needs docker"
    assert w.membership_states(first["id"]) == {"docker": (0, "kept")}
    ENDINGS["expire"](w, second)
    assert not w.accounts.listed("alice", "docker")
    assert w.membership_states(second["id"]) == {"docker": (0, "removed")}
    assert len(w.events("membership_removed")) == 1


@pytest.mark.parametrize("how", sorted(ENDINGS))
def test_standing_membership_is_never_removed(how, w):
    w.accounts.members["docker"].add("alice")
    g = w.activate()
    assert w.membership_states(g["id"]) == {"docker": (1, "applied")}
    ENDINGS[how](w, g)
    assert w.accounts.listed("alice", "docker")
    assert w.membership_states(g["id"]) == {"docker": (1, "kept")}
    assert [c for c in w.accounts.log if c[2] == "docker"] == []
    assert w.events("membership_added") == [] and w.events("membership_removed") == []


def test_standing_membership_through_the_primary_group(w):
    w.accounts.primary["alice"] = "docker"
    g = w.activate()
    ENDINGS["expire"](w, g)
    assert w.accounts.log == []
    assert w.membership_states(g["id"]) == {"docker": (1, "kept")}


def test_standing_membership_survives_overlapping_grants(w):
    w.accounts.members["docker"].add("alice")
    a = w.activate(exp=w.mint.now + HOUR)
    b = w.activate(exp=w.mint.now + 2 * HOUR)
    assert w.membership_states(b["id"]) == {"docker": (1, "applied")}
    ENDINGS["expire"](w, a)
    ENDINGS["expire"](w, b)
    assert w.accounts.listed("alice", "docker")
    assert w.accounts.log == []


def test_revoke_all_removes_everything_granted(w):
    w.activate(role="ops")
    w.activate(exp=w.mint.now + 2 * HOUR)
    assert len(w.core.revoke_all("emergency")) == 2
    assert not w.accounts.listed("alice", "docker") and not w.accounts.listed("alice", "adm")
    assert w.store.grants("active") == []


# --- expiry and revocation ---------------------------------------------------------------------


def test_expire_before_exp_does_nothing(w):
    g = w.activate(exp=w.mint.now + HOUR)
    for t in (w.mint.now, g["exp"] - 1):
        w.clock.t = t
        assert w.core.expire(g["id"]) is False
        assert w.core.sweep() == []
    assert w.store.get_grant(g["id"])["state"] == "active"
    assert w.accounts.listed("alice", "docker")
    w.clock.t = g["exp"]
    assert w.core.expire(g["id"]) is True
    assert w.core.expire(g["id"]) is False  # a second firing changes nothing
    assert not w.accounts.listed("alice", "docker")
    assert w.store.get_grant(g["id"])["state"] == "expired"
    assert len(w.events("grant_expired")) == 1


def test_expire_unknown_grant(w):
    assert w.core.expire("nope") is False


def test_expired_grant_is_not_listed_before_the_sweep(w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.clock.t = g["exp"]
    assert w.core.list_grants(1000) == []
    assert w.store.get_grant(g["id"])["state"] == "active"


def test_list_all_is_for_root(w):
    w.activate()
    assert refusal(w.core.list_grants, 1000, True).code == "permission_denied"
    assert [g["user"] for g in w.core.list_grants(0, True)] == ["alice"]


REVOKE_REFUSED = [
    ("stranger", lambda g: (g["id"], 1001)),
    ("unknown-uid", lambda g: (g["id"], 4242)),
    ("unknown-id", lambda g: ("0000deadbeef", 1000)),
    ("not-a-string", lambda g: (None, 0)),
]


@pytest.mark.parametrize("args", [r[1] for r in REVOKE_REFUSED],
                         ids=[r[0] for r in REVOKE_REFUSED])
def test_revoke_refused_as_not_found(args, w):
    g = w.activate()
    assert refusal(w.core.revoke, *args(g)).code == "not_found"
    assert w.store.get_grant(g["id"])["state"] == "active"
    assert w.accounts.listed("alice", "docker")


def test_revoke_twice_is_not_found(w):
    g = w.activate()
    w.core.revoke(g["id"], 1000, "done")
    assert refusal(w.core.revoke, g["id"], 1000).code == "not_found"
    row = w.store.get_grant(g["id"])
    assert (row["state"], row["end_reason"], row["ended_by"]) == ("revoked", "done", "alice")


# --- reconcile ---------------------------------------------------------------------------------


def crashed_grant(w, gid: str, exp: int, state: str = "active", membership: str = "pending",
                  jti: str | None = None) -> None:
    """The rows an activation leaves when hostd dies between the store and gpasswd."""
    w.store.insert_grant({
        "id": gid, "jti": jti or gid, "issuer": "corp", "user": "alice", "uid": 1000,
        "role": "docker", "groups": ["docker"], "not_before": w.mint.now - 2 * HOUR,
        "exp": exp, "reason": "", "ticket": "", "approved_by": [], "hosts": ["web-*"],
        "state": state, "activated_at": w.mint.now - 2 * HOUR,
    }, [("docker", False)])
    if membership != "pending":
        w.store.set_membership(gid, "docker", membership)


@pytest.mark.parametrize("added_before_crash", [True, False], ids=["added", "not-added"])
def test_reconcile_removes_a_pending_membership_of_a_grant_that_fell_due(added_before_crash, w):
    crashed_grant(w, "g1", exp=w.mint.now - 60)
    if added_before_crash:
        w.accounts.members["docker"].add("alice")
    assert w.core.reconcile() == []
    assert not w.accounts.listed("alice", "docker")
    assert w.store.get_grant("g1")["state"] == "expired"
    assert w.membership_states("g1") == {"docker": (0, "removed")}


def test_reconcile_finishes_an_interrupted_activation_of_a_live_grant(w):
    crashed_grant(w, "g1", exp=w.mint.now + HOUR)
    assert w.core.reconcile() == [("g1", w.mint.now + HOUR)]
    assert w.accounts.listed("alice", "docker")
    assert w.membership_states("g1") == {"docker": (0, "applied")}


def test_reconcile_finishes_an_interrupted_expiry(w):
    crashed_grant(w, "g1", exp=w.mint.now - 60, membership="applied")
    w.store.end_grant("g1", "expired", w.mint.now - 60, "expired", "hostd")
    w.accounts.members["docker"].add("alice")
    w.core.reconcile()
    assert not w.accounts.listed("alice", "docker")
    assert w.membership_states("g1") == {"docker": (0, "removed")}


def test_reconcile_puts_back_a_membership_removed_by_hand(w):
    g = w.activate(role="ops")
    w.accounts.members["docker"].discard("alice")  # an admin's gpasswd -d
    assert w.core.reconcile() == [(g["id"], g["exp"])]
    assert w.accounts.listed("alice", "docker") and w.accounts.listed("alice", "adm")
    assert w.accounts.log.count(("add", "alice", "docker")) == 2


def test_reconcile_leaves_a_consistent_host_alone(w):
    w.activate()
    before = list(w.accounts.log)
    w.core.reconcile()
    assert w.accounts.log == before


def test_failed_removal_is_retried_by_reconcile(w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.accounts.fail_remove.add(("alice", "docker"))
    ENDINGS["expire"](w, g)
    assert w.accounts.listed("alice", "docker")
    assert w.membership_states(g["id"]) == {"docker": (0, "applied")}
    assert len(w.events("config_error")) == 1
    w.accounts.fail_remove.clear()
    w.core.reconcile()
    assert not w.accounts.listed("alice", "docker")
    assert w.membership_states(g["id"]) == {"docker": (0, "removed")}


def test_leftover_of_a_failed_removal_is_not_taken_for_standing_membership(w):
    """A membership left behind by a failed gpasswd -d belongs to an ended grant: a later
    grant must not record it as the user's own, or it is never taken away."""
    a = w.activate(exp=w.mint.now + HOUR)
    w.accounts.fail_remove.add(("alice", "docker"))
    ENDINGS["expire"](w, a)  # removal fails: alice stays in docker, row left 'applied'
    w.accounts.fail_remove.clear()
    b = w.activate(exp=w.mint.now + 3 * HOUR)
    w.core.reconcile()
    ENDINGS["expire"](w, b)
    w.core.reconcile()
    assert not w.accounts.listed("alice", "docker"), (
        f"alice kept docker after every grant ended: {w.membership_states(b['id'])}")


def test_failed_removal_is_retried_by_the_periodic_sweep(w):
    """DESIGN.md §8: expiry happens on its own, swept periodically. A gpasswd -d that failed
    once (say /etc/group was locked) must not wait for the next hostd start."""
    g = w.activate(exp=w.mint.now + HOUR)
    w.accounts.fail_remove.add(("alice", "docker"))
    ENDINGS["expire"](w, g)
    w.accounts.fail_remove.clear()
    w.clock.t += 60
    w.core.sweep()
    assert not w.accounts.listed("alice", "docker"), "expired grant's group kept until restart"


def test_reconcile_survives_a_membership_it_cannot_restore(w):
    """Regression: one failing gpasswd -a in reconcile must not stop hostd starting."""
    g = w.activate(exp=w.mint.now + HOUR)
    w.accounts.members["docker"].discard("alice")  # removed by hand
    w.accounts.fail_add.add(("alice", "docker"))  # and cannot be put back
    live = w.core.reconcile()
    assert [gid for gid, _ in live] == [g["id"]]
    assert w.events("config_error"), "the failure is logged"


def test_deleted_account_ends_its_membership_quietly(w):
    """A user deleted while holding a grant: expiry must not retry gpasswd -d forever."""
    g = w.activate(exp=w.mint.now + HOUR)
    del w.accounts.uids["alice"]
    w.accounts.fail_remove.add(("alice", "docker"))  # gpasswd: no such user
    w.clock.t += HOUR
    w.core.sweep()
    assert w.membership_states(g["id"]) == {"docker": (0, "removed")}
    w.core.sweep()
    assert not w.events("config_error")


# --- group and gshadow disagree after a killed gpasswd ----------------------------------------
# gpasswd writes /etc/group, then /etc/gshadow: killed in between (systemd stops the whole
# cgroup), it leaves a user listed in one file only. Reconcile must check both.


@pytest.mark.parametrize("in_group", [True, False], ids=["group-only", "gshadow-only"])
def test_group_and_gshadow_disagree_after_a_killed_gpasswd_activation_is_completed(in_group, w):
    crashed_grant(w, "g1", exp=w.mint.now + HOUR)  # died inside gpasswd -a
    w.accounts.split("alice", "docker", in_group=in_group, in_gshadow=not in_group)
    assert w.core.reconcile() == [("g1", w.mint.now + HOUR)]
    assert w.accounts.listed("alice", "docker") and w.accounts.in_step("alice", "docker"), (
        f"alice in group {w.accounts.members['docker']}, "
        f"gshadow {w.accounts.gshadow_members()['docker']}")
    assert w.membership_states("g1") == {"docker": (0, "applied")}


@pytest.mark.parametrize("in_group", [True, False], ids=["group-only", "gshadow-only"])
def test_group_and_gshadow_disagree_for_a_live_grant_is_repaired_and_logged(in_group, w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.accounts.split("alice", "docker", in_group=in_group, in_gshadow=not in_group)
    w.core.reconcile()
    assert w.accounts.listed("alice", "docker") and w.accounts.in_step("alice", "docker")
    (repaired,) = [e for e in w.events("membership_added") if "repaired" in e["MESSAGE"]]
    assert (repaired["JIT_GRANT_ID"], repaired["JIT_GROUPS"]) == (g["id"], "docker")
    assert ("group" if in_group else "gshadow") + " only" in repaired["MESSAGE"]


@pytest.mark.parametrize("in_group", [True, False], ids=["group-only", "gshadow-only"])
def test_group_and_gshadow_disagree_for_an_ended_grant_is_taken_out_of_both(in_group, w):
    g = w.activate(exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 1000, "done")
    w.accounts.split("alice", "docker", in_group=in_group, in_gshadow=not in_group)
    w.core.reconcile()
    assert not w.accounts.listed("alice", "docker") and w.accounts.in_step("alice", "docker")
    (repaired,) = [e for e in w.events("membership_removed") if "repaired" in e["MESSAGE"]]
    assert repaired["JIT_GRANT_ID"] == g["id"]


def test_group_and_gshadow_disagree_never_touches_standing_or_foreign_memberships(w):
    w.accounts.members["docker"].add("bob")  # bob's own membership, before any grant
    g = w.activate(caller=1001, sub="bob", exp=w.mint.now + HOUR)
    w.core.revoke(g["id"], 0, "done")
    w.accounts.split("bob", "docker", in_group=True, in_gshadow=False)
    w.accounts.split("root", "adm", in_group=False, in_gshadow=True)  # never hostd's
    w.core.reconcile()
    assert w.accounts.listed("bob", "docker"), "a standing membership was removed"
    assert not w.accounts.in_step("root", "adm"), "hostd changed a membership it never made"
    assert [x for x in w.accounts.log if x[0] == "remove"] == []


def test_group_and_gshadow_disagree_while_another_live_grant_needs_it(w):
    a = w.activate(exp=w.mint.now + HOUR)
    w.activate(role="ops", exp=w.mint.now + 2 * HOUR)
    w.core.revoke(a["id"], 1000, "done")  # docker kept: the ops grant needs it
    w.accounts.split("alice", "docker", in_group=True, in_gshadow=False)
    w.core.reconcile()
    assert w.accounts.listed("alice", "docker") and w.accounts.in_step("alice", "docker")
