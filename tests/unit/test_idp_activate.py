"""core/idp.py and state/idpcache.py: activation with an ID token over a real Store, a key
cache written as the fetcher writes it, and a clock the tests move by hand."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

import pytest
from fakes import Clock, FakeAccounts
from idp_kit import Signer, issuer_toml, jwks, keycloak_claims, write_cache

from hostd.core.idp import IdpActivations
from hostd.core.lifecycle import Core
from hostd.core.requests import Requests
from hostd.errors import JitError
from hostd.policy.config import Config, Role, parse_issuer
from hostd.policy.hostmatch import HostFacts
from hostd.state import idp_tokens
from hostd.state.idpcache import REFRESH_INTERVAL, IdpCache, IdpRefresh
from hostd.state.journal import Events, read_mirror
from hostd.state.store import Store

NOW = 1_800_000_000
ROLES = {
    "docker": Role("docker", ("docker",), max_ttl=3600, issuers=("corp-idp",)),
    "db-admin": Role("db-admin", ("adm",), max_ttl=3600, issuers=("corp-idp", "host"),
                     approvers=("bob",), approvals=1),
}


class IdpWorld:
    def __init__(self, tmp_path: Path) -> None:
        self.signer = Signer("rsa", "k1")
        rules = [{"value": "/sre", "roles": ["docker", "db-admin"]}]
        self.issuer = parse_issuer(tmp_path / "corp-idp.toml",
                                   tomllib.loads(issuer_toml(claims_to_roles=rules)))
        self.clock = Clock(NOW)
        self.state = tmp_path / "state"
        write_cache(self.state, "corp-idp", jwks(Signer("ec", "e1"), self.signer), NOW - 60)
        self.store = Store(tmp_path / "state.db")
        self.mirror = tmp_path / "events.jsonl"
        config = Config(roles=ROLES, oidc={"corp-idp": self.issuer})
        self.core = Core(config, self.store, FakeAccounts(), Events(self.mirror, journal=False),
                         HostFacts("web-1"), clock=self.clock)
        self.cache = IdpCache(self.state / "idp", self.clock, trusted_from=tmp_path)
        self.idp = IdpActivations(self.core, Requests(self.core, None), self.cache)

    def token(self, **claims) -> str:
        return self.signer.sign(keycloak_claims(NOW, **claims))

    def activate(self, token: str, role: str = "docker", caller: int = 1000, **args) -> dict:
        return self.idp.activate({"token": token, "role": role, **args}, caller)

    def refused(self, token: str, role: str = "docker", caller: int = 1000, **args) -> str:
        with pytest.raises(JitError) as info:
            self.activate(token, role, caller, **args)
        return info.value.code

    def events(self, name: str) -> list[dict]:
        return [e for e in read_mirror(self.mirror) if e["JIT_EVENT"] == name]


@pytest.fixture
def w(tmp_path):
    world = IdpWorld(tmp_path)
    yield world
    world.store.close()


def test_a_token_activates_the_role_through_core_with_the_idp_fields(w):
    out = w.activate(w.token(), reason="deploy")
    g = out["grant"]
    assert (g["user"], g["role"], g["issuer"], g["exp"]) == ("alice", "docker", "corp-idp",
                                                              NOW + 3600)
    assert (out["issuer"], out["matched"]) == ("corp-idp", ["groups=/sre"])
    assert w.core.accounts.listed("alice", "docker")
    (ev,) = w.events("grant_activated")
    assert (ev["JIT_ISSUER"], ev["JIT_MATCHED"], ev["JIT_IDP_SUBJECT"]) == (
        "corp-idp", "groups=/sre", out["subject"])
    assert ev["JIT_REASON"] == "deploy"


def test_a_token_is_used_once(w):
    token = w.token()
    w.activate(token, duration=60)
    assert w.refused(token) == "replayed"
    assert w.refused(token, caller=0) == "replayed"


def test_a_token_whose_activation_failed_can_be_used_again(w):
    token = w.token()
    assert w.refused(token, duration=7200) == "ttl_exceeds_role_max"
    w.core.accounts.fail_add.add(("alice", "docker"))
    with pytest.raises(JitError):
        w.activate(token)
    w.core.accounts.fail_add.clear()
    assert w.activate(token)["grant"]["user"] == "alice"


def test_a_grants_token_id_is_recorded_with_the_grant_in_one_commit(w):
    token = w.token()
    g = w.activate(token, duration=60)["grant"]
    assert w.store.grant_of_token("corp-idp", "idp:" + w.idp.verify(token, None)[0].token_id
                                  ) == g["id"]
    assert w.store.db.execute("SELECT count(*) FROM idp_tokens").fetchone()[0] == 0


def test_a_token_that_outlives_the_grants_record_is_kept_until_it_cannot_verify(w):
    long_lived = parse_issuer(Path("corp-idp.toml"), tomllib.loads(issuer_toml(
        max_token_age="3h", claims_to_roles=[{"value": "/sre", "roles": ["docker"]}])))
    w.core.config = Config(roles=ROLES, oidc={"corp-idp": long_lived})
    token = w.token()
    w.activate(token, duration=60)
    w.store.prune_seen(NOW + 10**6)  # what reconcile does after the grant's end + 1 h
    assert w.refused(token) == "replayed"
    assert idp_tokens.prune(w.store, NOW + 3 * 3600 + 60) == 0
    assert idp_tokens.prune(w.store, NOW + 3 * 3600 + 61) == 1


def test_the_token_must_be_the_callers_but_root_acts_for_anyone(w):
    assert w.refused(w.token(), caller=1001) == "wrong_user"
    assert w.refused(w.token(user="nobody-here"), caller=0) == "wrong_user"
    assert w.activate(w.token(), caller=0)["grant"]["user"] == "alice"


def test_no_rule_or_an_unknown_role_is_refused_and_logged(w):
    assert w.refused(w.token(groups=["/staff"])) == "not_allowed"
    assert w.refused(w.token(), role="nope") == "unknown_role"
    codes = [e["JIT_CODE"] for e in w.events("grant_refused")]
    assert codes == ["not_allowed", "unknown_role"]


def test_a_role_with_approvers_turns_it_into_a_request(w, tmp_path):
    from hostd.core.requests import HostSigner
    from hostd.policy.keys import generate_ed25519, load_private

    generate_ed25519(tmp_path / "host.key")
    w.idp.requests = Requests(w.core, HostSigner(load_private(tmp_path / "host.key"),
                                                 "web-1"))
    assert w.refused(w.token(), role="db-admin") == "reason_required"
    out = w.activate(w.token(), role="db-admin", reason="fix replication")
    assert out["request"]["state"] == "pending" and out["request"]["user"] == "alice"
    (ev,) = w.events("request_created")
    assert (ev["JIT_ISSUER"], ev["JIT_MATCHED"]) == ("corp-idp", "groups=/sre")
    assert not w.core.accounts.listed("alice", "adm")


def test_roles_lists_what_the_token_maps_to_without_using_it(w):
    token = w.token()
    out = w.idp.roles(token, None, 1000)
    assert (out["roles"], out["user"], out["matched"]) == (
        ["db-admin", "docker"], "alice", ["groups=/sre"])
    assert w.activate(token)["grant"]["role"] == "docker"


# --- the key cache ---------------------------------------------------------------------------

def test_stale_or_missing_cache_is_stale_keys(w):
    w.clock.t = NOW + w.issuer.max_stale  # fetched 60 s before NOW: now past max_stale
    assert w.refused(w.token(iat=w.clock.t, exp=w.clock.t + 300)) == "stale_keys"
    for name in ("jwks.json", "state.json"):
        (w.state / "idp" / "corp-idp" / name).unlink()
    w.clock.t = NOW
    with pytest.raises(JitError) as info:
        w.cache.keys(w.issuer)
    assert info.value.code == "stale_keys" and "jit idp refresh corp-idp" in info.value.message


def test_the_jwks_is_parsed_once_per_change_of_its_file(w):
    first = w.cache.keys(w.issuer)
    assert w.cache.keys(w.issuer) is first
    rotated = Signer("ed", "k2")
    write_cache(w.state, "corp-idp", jwks(rotated), NOW)
    assert [k.kid for k in w.cache.keys(w.issuer)] == ["k2"]


def test_a_cache_file_not_roots_alone_is_not_read(w):
    os.chmod(w.state / "idp" / "corp-idp" / "jwks.json", 0o666)
    with pytest.raises(JitError) as info:
        w.cache.keys(w.issuer)
    assert info.value.code == "stale_keys" and "writable" in info.value.message


def test_an_unknown_kid_then_the_refreshed_cache(w):
    rotated = Signer("rsa", "k2")
    token = rotated.sign(keycloak_claims(NOW))
    assert w.refused(token) == "unknown_key"
    write_cache(w.state, "corp-idp", jwks(w.signer, rotated), NOW)  # the fetcher ran
    assert w.activate(token)["grant"]["user"] == "alice"


def test_refresh_is_asked_at_most_once_a_minute_per_issuer():
    started: list[str] = []
    clock = Clock(100.0)

    async def start(unit: str) -> None:
        started.append(unit)

    refresh = IdpRefresh(start, clock)
    run = asyncio.run
    assert run(refresh.request("corp-idp")) is True
    assert run(refresh.request("corp-idp")) is False
    assert run(refresh.request("other")) is True
    clock.advance(REFRESH_INTERVAL)
    assert run(refresh.request("corp-idp")) is True
    assert started == ["jit-idp-refresh@corp-idp.service", "jit-idp-refresh@other.service",
                       "jit-idp-refresh@corp-idp.service"]


def test_cache_state_without_fetched_at_is_unusable(w):
    (w.state / "idp" / "corp-idp" / "state.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(JitError) as info:
        w.cache.keys(w.issuer)
    assert info.value.code == "stale_keys"


def test_a_version_5_database_gains_the_idp_tokens_table(tmp_path):
    import sqlite3

    from hostd.state.store import MIGRATIONS

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:5]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 5")
    db.close()
    store = Store(path)
    try:
        assert store.schema_version >= 6
        assert idp_tokens.use(store, "corp-idp", "t1", NOW, "request:x")
        assert not idp_tokens.use(store, "corp-idp", "t1", NOW, "request:y")
        assert idp_tokens.used_for(store, "corp-idp", "t1") == "request:x"
    finally:
        store.close()
