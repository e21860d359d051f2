"""The lists on a host (hostd/core/revocations.py) with a real store and a fake clock, and
the `[revocation]` table (hostd/policy/revconfig.py): which list is taken from two
sources, rollback, the refusal hook (CONTRACTS §D), freshness, restart, bad files."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from fakes import Clock, FakeAccounts

from hostd.core.lifecycle import Core
from hostd.core.revocations import Revocations
from hostd.errors import ConfigError, JitError
from hostd.paths import Paths
from hostd.policy import revocations as rev
from hostd.policy.revconfig import RevocationConfig, parse_revocation
from hostd.policy.revocations import read_bounded
from hostd.state.journal import Events, read_mirror
from hostd.state.store import Store

HOUR = 3600


class World:
    def __init__(self, tmp_path: Path, config, host, mint, pki, **table: object) -> None:
        self.tmp, self.pki, self.mint, self.host = tmp_path, pki, mint, host
        self.clock = Clock(mint.now)
        self.paths = Paths(tmp_path)
        self.file = tmp_path / "pushed.jwt"
        cfg = RevocationConfig(file=self.file, url="https://x.example/corp.jwt", **table)
        corp = dataclasses.replace(config.issuers["corp"], revocation=cfg)
        self.config = dataclasses.replace(config, issuers={**config.issuers, "corp": corp})
        self.store = Store(tmp_path / "state.db")
        self.mirror = tmp_path / "events.jsonl"
        self.core = self.new_core()

    def new_core(self) -> Core:
        core = Core(self.config, self.store, FakeAccounts(),
                    Events(self.mirror, journal=False), self.host, clock=self.clock)
        core.revocations = Revocations(core, self.paths)
        return core

    @property
    def lists(self) -> Revocations:
        return self.core.revocations

    def write(self, seq: int, *entries: rev.Entry, where: Path | None = None,
              next_update: int = HOUR, key=None) -> Path:
        now = int(self.clock())
        lst = rev.RevocationList("corp", seq, now, now + next_update, tuple(entries))
        path = where or self.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rev.sign(key or self.pki.corp, lst))
        return path

    @property
    def fetched(self) -> Path:
        return self.paths.revocations_dir / "corp.jwt"

    def events(self, name: str) -> list[dict]:
        return [e for e in read_mirror(self.mirror) if e["JIT_EVENT"] == name]


@pytest.fixture
def w(tmp_path, config, host, mint, pki):
    world = World(tmp_path, config, host, mint, pki)
    yield world
    world.store.close()


def claims(**kw: object) -> dict:
    g = {"issuer": "corp", "jti": "j-1", "role": "docker", "kid": "k"}
    g.update(kw)
    return g


def test_nothing_configured_or_written_refuses_nothing(w):
    assert w.lists.reload()["corp"]["seq"] is None
    assert w.lists.refusal(claims(), "alice") is None


def test_the_higher_seq_of_the_two_sources_wins(w):
    w.write(3, rev.Entry("sub", "alice"))
    w.write(5, rev.Entry("sub", "bob"), where=w.fetched)
    assert w.lists.reload()["corp"]["seq"] == 5
    assert w.lists.refusal(claims(), "bob")[0] == "revoked"
    assert w.lists.refusal(claims(), "alice") is None


def test_a_rollback_is_refused_once_and_the_newer_list_kept(w):
    w.write(5, rev.Entry("sub", "bob"))
    w.lists.reload()
    w.write(4)
    assert w.lists.reload()["corp"]["seq"] == 5
    w.lists.reload()
    (refused,) = w.events("revocations_refused")
    assert refused["JIT_CODE"] == "rollback"
    assert w.lists.refusal(claims(), "bob") is not None


def test_the_same_seq_with_other_content_is_refused(w):
    w.write(5, rev.Entry("sub", "bob"))
    w.lists.reload()
    w.write(5)
    w.lists.reload()
    assert "seq reused" in w.events("revocations_refused")[0]["JIT_REASON"]
    assert w.lists.refusal(claims(), "bob") is not None


def test_a_list_of_another_issuer_in_corps_file_is_refused(w, pki):
    now = int(w.clock())
    other = rev.RevocationList("other", 9, now, now + HOUR, (rev.Entry("sub", "alice"),))
    w.file.write_text(rev.sign(pki.other, other))
    w.lists.reload()
    assert "not 'corp'" in w.events("revocations_refused")[0]["JIT_REASON"]
    assert w.lists.refusal(claims(), "alice") is None


def test_the_accepted_list_survives_a_restart(w):
    w.write(2, rev.Entry("jti", "j-1", reason="stolen"))
    w.lists.reload()
    w.file.unlink()
    w.core = w.new_core()
    code, why = w.lists.refusal(claims(), "alice")
    assert code == "revoked" and "stolen" in why and "seq 2" in why
    w.write(1)
    w.lists.reload()
    assert w.events("revocations_refused")[0]["JIT_CODE"] == "rollback"


def test_refusal_takes_a_grant_object_too(w, config, host, mint):
    from hostd.policy import grants

    g = grants.verify(mint.token(), config, host, mint.now)
    w.write(1, rev.Entry("kid", g.kid))
    w.lists.reload()
    assert w.lists.refusal(g, g.user)[0] == "revoked"


def test_strict_and_require_list(tmp_path, config, host, mint, pki):
    w = World(tmp_path, config, host, mint, pki, mode="strict", max_stale=60,
              require_list=True)
    code, why = w.lists.refusal(claims(), "alice")
    assert code == "revoked" and "require_list" in why
    assert w.lists.refusal(claims(issuer="other"), "alice") is None  # other issuers
    w.write(1, next_update=600)
    w.lists.reload()
    assert w.lists.refusal(claims(), "alice") is None
    w.clock.advance(661)
    code, why = w.lists.refusal(claims(), "alice")
    assert "stale" in why
    w.lists.sweep()
    (stale,) = w.events("revocations_stale")
    assert stale["JIT_MODE"] == "strict" and stale["JIT_REVOCATION_LIST"] == "corp#1"
    w.store.close()


def test_best_effort_stale_only_warns(w):
    w.write(1, next_update=60)
    w.lists.reload()
    w.clock.advance(HOUR + 61)
    assert w.lists.refusal(claims(), "alice") is None
    w.lists.sweep()
    assert w.events("revocations_stale")[0]["JIT_MODE"] == "best_effort"


def test_the_sweep_rereads_a_changed_file(w):
    w.lists.reload()
    w.write(1, rev.Entry("sub", "alice"))
    w.lists.sweep()
    assert w.lists.refusal(claims(), "alice") is not None


def test_a_fifo_or_huge_file_is_refused_without_blocking(w, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(JitError, match="regular file"):
        read_bounded(fifo)
    big = tmp_path / "big"
    big.write_bytes(b"a" * (rev.MAX_LIST + 1))
    with pytest.raises(JitError, match="larger"):
        read_bounded(big)
    assert read_bounded(tmp_path / "absent") is None


def test_requests_check_user(w):
    w.write(1, rev.Entry("sub", "alice", reason="left"))
    w.lists.reload()
    with pytest.raises(JitError) as info:
        w.lists.check_user("alice")
    assert info.value.code == "revoked" and "left" in info.value.message
    w.lists.check_user("bob")


# --- [revocation] --------------------------------------------------------------------------

P = Path("/etc/jit/issuers.d/corp.toml")


def test_the_table_and_its_defaults():
    cfg = parse_revocation(P, {"file": "/etc/jit/revocations/corp.jwt"})
    assert cfg == RevocationConfig(Path("/etc/jit/revocations/corp.jwt"))
    assert (cfg.refresh, cfg.mode, cfg.max_stale, cfg.require_list) == (
        60, "best_effort", 3600, False)
    assert parse_revocation(P, None) is None
    sandboxed = parse_revocation(P, {"file": "/etc/x.jwt"}, Path("/tmp/box"))
    assert sandboxed.file == Path("/tmp/box/etc/x.jwt")


@pytest.mark.parametrize("table,key", [
    ({}, "revocation"), ({"file": "relative.jwt"}, "revocation.file"),
    ({"url": "ftp://x"}, "revocation.url"), ({"file": "/x", "mode": "lax"}, "revocation.mode"),
    ({"file": "/x", "max_stale": "soon"}, "revocation.max_stale"),
    ({"file": "/x", "max_stale": 60}, "revocation.max_stale"),
    ({"file": "/x", "require_list": "yes"}, "revocation.require_list"),
    ({"file": "/x", "color": 1}, "revocation.color"), ("x", "revocation"),
])
def test_bad_tables_name_the_key(table, key):
    with pytest.raises(ConfigError) as info:
        parse_revocation(P, table)
    assert info.value.key == key


def test_the_last_error_is_what_the_last_reading_found(w):
    w.write(1, rev.Entry("sub", "alice"))
    w.lists.reload()
    good = w.file.read_text()
    w.file.write_text("garbage")
    assert w.lists.reload()["corp"]["error"]
    assert w.lists.status()[0]["last_error"]
    w.file.write_text(good)  # put back: the same list again, nothing wrong any more
    assert w.lists.reload()["corp"] == {"seq": 1, "error": "", "ended": []}
    assert w.lists.status()[0]["last_error"] is None


def test_check_config_warns_of_a_missing_or_refused_pushed_list(w, pki):
    from hostd.cli.config_checks import revocation_warnings

    now = w.clock()
    assert revocation_warnings(w.config, now) == []  # best_effort, no file yet: nothing to say
    strict = dataclasses.replace(w.config.issuers["corp"].revocation, mode="strict")
    cfg = dataclasses.replace(w.config, issuers={
        **w.config.issuers,
        "corp": dataclasses.replace(w.config.issuers["corp"], revocation=strict)})
    (missing,) = revocation_warnings(cfg, now)
    assert "does not exist" in missing
    w.write(1, key=pki.stranger)
    (refused,) = revocation_warnings(cfg, now)
    assert "would be refused" in refused and "signature" in refused
    w.write(1)
    assert revocation_warnings(cfg, now) == []


def test_a_list_being_accepted_never_changes_the_dict_the_loop_reads(w):
    """list_grants, sudo and pam read `lists` on the loop while the worker accepts."""
    seen = w.lists.lists
    w.write(1, rev.Entry("sub", "alice"))
    w.lists.reload()
    assert seen == {} and w.lists.lists is not seen


def test_list_grants_hides_a_grant_a_list_refuses_before_the_sweep_ends_it(w, mint):
    g = w.core.activate(mint.token(), 0)
    assert [x["id"] for x in w.core.list_grants(0, all_users=True)] == [g["id"]]
    w.lists.lists = {"corp": rev.RevocationList("corp", 1, mint.now, mint.now + HOUR,
                                                (rev.Entry("sub", "alice"),))}
    assert w.core.list_grants(0, all_users=True) == []
    assert w.store.get_grant(g["id"])["state"] == "active"  # ended by enforce, not here


def test_a_sub_entry_locks_the_person_whoever_issued_the_grant(w):
    w.write(1, rev.Entry("sub", "alice", reason="left"))
    w.lists.reload()
    for issuer in ("corp", "host", "corp-idp", "partner"):
        code, why = w.lists.refusal(claims(issuer=issuer), "alice")
        assert code == "revoked" and "sub=alice" in why
    assert w.lists.refusal(claims(issuer="partner"), "bob") is None


def test_check_is_activations_judgement_without_its_effects(w):
    """Core.check (op grant.check, `jit grant verify`): a token a list names is refused
    `revoked` as activation refuses it; nothing is applied, stored or logged."""
    token = w.mint.token()
    assert w.core.check(token).user == "alice"
    w.write(1, rev.Entry("jti", w.core.check(token).jti, reason="leaked"))
    w.lists.reload()
    with pytest.raises(JitError) as refused:
        w.core.check(token)
    assert refused.value.code == "revoked" and "leaked" in refused.value.message
    assert w.store.grants("active") == [] and w.core.take_effects() == []
    assert w.events("grant_refused") == []
