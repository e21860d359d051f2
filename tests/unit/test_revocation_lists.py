"""Revocation lists (hostd/policy/revocations.py) against hostile input: the wrong typ, a
grant presented as a list and a list as a grant, huge entry counts, seq out of range,
entries for other hosts, until past, bad signatures, unknown issuers; and the issuer
side's `next_list` (seq + 1, entries kept, expired ones dropped)."""

from __future__ import annotations

import json

import jwt
import pytest

from hostd.errors import JitError
from hostd.policy import grants
from hostd.policy import revocations as rev
from hostd.policy.keys import thumbprint

NOW = 1_800_000_000


def claims(**overrides: object) -> dict:
    out: dict = {"iss": "corp", "seq": 5, "iat": NOW, "next_update": NOW + 3600,
                 "entries": [{"jti": "j-1", "reason": "laptop stolen"}]}
    out.update(overrides)
    return out


def sign(key, body: dict, typ: object = rev.TYP, extra: dict | None = None) -> str:
    headers = {"kid": thumbprint(key.public_key())}
    if typ is not None:
        headers["typ"] = typ
    headers.update(extra or {})
    return jwt.encode(body, key, algorithm="EdDSA", headers=headers)


def refused(token, config, now=NOW) -> JitError:
    with pytest.raises(JitError) as info:
        rev.verify(token, config, now)
    return info.value


def test_a_valid_list_verifies(pki, config):
    lst = rev.verify(sign(pki.corp, claims()), config, NOW)
    assert (lst.issuer, lst.seq, lst.iat, lst.next_update) == ("corp", 5, NOW, NOW + 3600)
    assert lst.entries == (rev.Entry("jti", "j-1", (), None, "laptop stolen"),)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "jit-revocations", 7])
def test_a_list_needs_its_own_typ(pki, config, typ):
    err = refused(sign(pki.corp, claims(), typ=typ), config)
    assert err.code == "malformed"


def test_typ_is_compared_case_insensitively(pki, config):
    """RFC 7515 §4.1.9: typ values are case-insensitive."""
    assert rev.verify(sign(pki.corp, claims(), typ="JIT-Revocations+JWT"), config, NOW).seq == 5


def test_a_grant_is_not_a_list(pki, config, mint):
    err = refused(mint.token(), config)
    assert err.code == "malformed" and "not a revocation list" in err.message


def test_a_list_is_not_a_grant(pki, config, host):
    """Even a list whose claims would shape up as a grant is refused for its typ."""
    body = claims(sub="alice", aud="jitaccess", jti="x", role="docker", hosts=["web-*"],
                  exp=NOW + 600)
    with pytest.raises(JitError) as info:
        grants.verify(sign(pki.corp, body), config, host, NOW)
    assert info.value.code == "malformed" and "not a grant" in info.value.message


@pytest.mark.parametrize("typ", [None, "JWT", "application/jwt"])
def test_grants_keep_accepting_jwt_typ(pki, config, host, mint, typ):
    body = mint.claims()
    token = sign(pki.corp, body, typ=typ)
    assert grants.verify(token, config, host, mint.now).user == "alice"


def test_bad_signature_and_unknown_issuer(pki, config):
    assert refused(sign(pki.stranger, claims()), config).code == "bad_signature"
    assert refused(sign(pki.corp, claims(iss="nobody")), config).code == "unknown_issuer"
    # a list signed by another configured issuer's key, claiming to be corp's
    assert refused(sign(pki.other, claims()), config).code == "bad_signature"


def test_the_host_issuer_cannot_publish_lists(pki, config):
    assert refused(sign(pki.corp, claims(iss="host")), config).code == "unknown_issuer"


@pytest.mark.parametrize("seq", [-1, 2**53, 2**64, 1.0, 5.5, True, False, "5", None])
def test_seq_must_be_a_safe_integer(pki, config, seq):
    assert refused(sign(pki.corp, claims(seq=seq)), config).code == "malformed"


def test_seq_bounds_accepted(pki, config):
    assert rev.verify(sign(pki.corp, claims(seq=0)), config, NOW).seq == 0
    assert rev.verify(sign(pki.corp, claims(seq=2**53 - 1)), config, NOW).seq == 2**53 - 1


def test_iat_in_the_future_is_refused(pki, config):
    err = refused(sign(pki.corp, claims(iat=NOW + 3600, next_update=NOW + 7200)), config)
    assert "future" in err.message
    ok = sign(pki.corp, claims(iat=NOW + rev.IAT_LEEWAY))
    assert rev.verify(ok, config, NOW).iat == NOW + rev.IAT_LEEWAY


def test_next_update_before_iat_is_refused(pki, config):
    assert refused(sign(pki.corp, claims(next_update=NOW - 1)), config).code == "malformed"


def test_too_many_entries_is_refused_before_they_are_read(pki, config):
    body = claims(entries=[{"jti": f"j{i}"} for i in range(rev.MAX_ENTRIES + 1)])
    err = refused(sign(pki.corp, body), config)
    assert err.code == "malformed"


def test_a_list_larger_than_the_bound_is_refused(pki, config):
    body = claims(entries=[{"jti": "j", "reason": "x" * 1000}] * 1100)
    token = sign(pki.corp, body)
    assert len(token) > rev.MAX_LIST
    assert "larger" in refused(token, config).message


@pytest.mark.parametrize("entry", [
    {}, {"jti": "a", "sub": "b"}, {"jti": ""}, {"jti": "a b"}, {"jti": 5}, {"jti": "x" * 257},
    {"user": "alice"}, {"jti": "a", "color": "red"}, {"jti": "a", "until": -1},
    {"jti": "a", "until": 1.5}, {"jti": "a", "until": True}, {"jti": "a", "hosts": "web-*"},
    {"jti": "a", "hosts": ["bad host"]}, {"jti": "a", "hosts": ["h"] * 65},
    {"jti": "a", "reason": "r" * 1025}, {"jti": "a", "reason": 3}, "jti", ["jti", "a"],
])
def test_hostile_entries_refuse_the_whole_list(pki, config, entry):
    assert refused(sign(pki.corp, claims(entries=[entry])), config).code == "malformed"


def test_entries_must_be_a_list(pki, config):
    assert refused(sign(pki.corp, claims(entries={"jti": "a"})), config).code == "malformed"


def test_lone_surrogates_and_deep_nesting_are_malformed(pki, config):
    body = json.dumps(claims()).replace('"j-1"', '"\\udc80"')
    token = jwt.api_jws.encode(body.encode(), pki.corp, algorithm="EdDSA",
                               headers={"typ": rev.TYP})
    assert refused(token, config).code == "malformed"
    deep = claims(entries=[{"jti": "a", "reason": "r"}], extra=[[[[]]]] * 2)
    assert rev.verify(sign(pki.corp, deep), config, NOW).seq == 5  # unknown claims: ignored


def entry_list(*entries: rev.Entry, issuer: str = "corp") -> rev.RevocationList:
    return rev.RevocationList(issuer, 1, NOW, NOW + 60, entries)


def grant(**kw: object) -> dict:
    g = {"issuer": "corp", "jti": "j-1", "user": "alice", "role": "docker", "kid": "k1"}
    g.update(kw)
    return g


@pytest.mark.parametrize("entry,hit", [
    (rev.Entry("jti", "j-1"), True), (rev.Entry("jti", "j-2"), False),
    (rev.Entry("sub", "alice"), True), (rev.Entry("sub", "bob"), False),
    (rev.Entry("role", "docker"), True), (rev.Entry("role", "ops"), False),
    (rev.Entry("kid", "k1"), True), (rev.Entry("kid", "k2"), False),
])
def test_each_entry_kind_matches_its_claim(host, entry, hit):
    assert (rev.match(entry_list(entry), grant(), NOW, host) is entry) is hit


def test_entries_reach_only_the_list_issuers_grants_but_sub_reaches_every_grant(host):
    lst = entry_list(rev.Entry("jti", "j-1"), rev.Entry("role", "docker"))
    assert rev.match(lst, grant(issuer="other"), NOW, host) is None
    assert rev.match(lst, grant(issuer="host", jti="j-1"), NOW, host) is None
    lst = entry_list(rev.Entry("jti", "j-1"), rev.Entry("sub", "alice"))
    for issuer in ("host", "other", "corp-idp"):
        hit = rev.match(lst, grant(issuer=issuer, jti="j-1"), NOW, host)
        assert hit is not None and hit.kind == "sub"
    assert rev.match(lst, grant(issuer="other", user="bob"), NOW, host) is None


def test_entries_for_other_hosts_are_ignored(host):
    for hosts in (("db-*",), ("machine-id:" + "f" * 32,), ("192.0.2.0/24",)):
        assert rev.match(entry_list(rev.Entry("jti", "j-1", hosts)), grant(), NOW, host) is None
    for hosts in (("web-*",), ("10.0.0.0/8",), ("db-*", "web-01.example.com")):
        assert rev.match(entry_list(rev.Entry("jti", "j-1", hosts)), grant(), NOW, host)


def test_until_past_is_not_in_force(host):
    lst = entry_list(rev.Entry("sub", "alice", until=NOW))
    assert rev.match(lst, grant(), NOW, host) is None
    assert rev.match(lst, grant(), NOW - 1, host) is not None
    assert rev.locks_user(lst, "alice", NOW - 1, host) is not None
    assert rev.locks_user(lst, "alice", NOW, host) is None
    assert rev.in_force_count(lst, NOW - 1, host) == 1


def test_next_list_keeps_entries_drops_expired_and_bumps_seq(pki):
    first = rev.next_list(None, "corp", [rev.Entry("jti", "a"),
                                         rev.Entry("sub", "bob", until=NOW + 10)], NOW, 3600)
    assert (first.seq, first.iat, first.next_update) == (1, NOW, NOW + 3600)
    token = rev.sign(pki.corp, first)
    again = rev.decode_unverified(token)
    assert again.entries == first.entries
    second = rev.next_list(again, "corp", [rev.Entry("role", "ops", reason="incident")],
                           NOW + 20, 600)
    assert second.seq == 2
    assert [e.label() for e in second.entries] == ["jti=a", "role=ops"]
    with pytest.raises(JitError):
        rev.next_list(again, "other", [], NOW, 60)


def test_a_built_list_verifies_on_a_host(pki, config):
    lst = rev.next_list(None, "corp", [rev.Entry("kid", "abc", ("web-*",), NOW + 60, "k")],
                        NOW, 3600)
    got = rev.verify(rev.sign(pki.corp, lst), config, NOW)
    assert got.entries == lst.entries and got.seq == 1


def test_jit_revocations_build(tmp_path, capsys, pki):
    """The issuer's tool: seq counts up from --previous, entries carry over, bad input
    is a usage error (exit 2), never a list hosts would refuse."""
    from cryptography.hazmat.primitives import serialization

    from hostd.cli.main import main

    key = tmp_path / "corp.key"
    key.write_bytes(pki.corp.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    first, second = tmp_path / "1.jwt", tmp_path / "2.jwt"
    base = ["revocations", "build", "--key", str(key), "--issuer", "corp"]
    assert main([*base, "--user", "alice", "--reason", "left", "--out", str(first)]) == 0
    assert main([*base, "--previous", str(first), "--jti", "j-9", "--role", "ops",
                 "--hosts", "web-*", "--until", "+1h", "--out", str(second)]) == 0
    lst = rev.decode_unverified(second.read_text().strip())
    assert lst.seq == 2 and [e.label() for e in lst.entries] == ["sub=alice", "jti=j-9",
                                                                  "role=ops"]
    assert lst.entries[1].hosts == ("web-*",) and lst.entries[1].until is not None
    capsys.readouterr()
    assert main([*base, "--user", "bad user"]) == 2
    assert main([*base, "--next-update", "soon"]) == 2
    assert main(["revocations", "build", "--key", str(key), "--issuer", "other",
                 "--previous", str(first)]) == 2
    assert "usage" in capsys.readouterr().err
