"""idptoken.verify and the claims_to_roles mapping (issue 21 items 1 and 3): tokens
shaped like Keycloak's, Okta's and Entra ID's, signed here with RSA, EC P-256 and
Ed25519 keys, and every refusal each from a token with one thing wrong."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import tomllib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from idp_kit import (
    ENTRA_SRE,
    ISSUER_URL,
    Signer,
    entra_claims,
    issuer_toml,
    jwks,
    keycloak_claims,
    okta_claims,
)

from hostd.errors import JitError
from hostd.policy import idp, idptoken
from hostd.policy.config import Config, Role, parse_issuer

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return {"rsa": Signer("rsa", "rsa-1"), "ec": Signer("ec", "ec-1"),
            "ed": Signer("ed", "ed-1"), "rsa2": Signer("rsa", "rsa-2")}


def oidc(**over) -> idp.OidcIssuer:
    issuer = parse_issuer(Path("/etc/jit/issuers.d/corp-idp.toml"),
                          tomllib.loads(issuer_toml(**over)))
    assert isinstance(issuer, idp.OidcIssuer)
    return issuer


def verify(token, issuer, keys, now=NOW, name=None):
    keyset = idptoken.keyset(keys, issuer.algorithms)
    return idptoken.verify(token, {issuer.name: issuer}, lambda _i: keyset, now, name)


def refused(token, issuer, keys, now=NOW, name=None) -> str:
    with pytest.raises(JitError) as info:
        verify(token, issuer, keys, now, name)
    return info.value.code


# --- accepted shapes -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rsa", "ec", "ed"])
def test_keycloak_token_with_each_key_type_verifies_and_maps_groups(kind, signers):
    issuer = oidc()
    s = signers[kind]
    claims = keycloak_claims(NOW, "alice")
    tok = verify(s.sign(claims), issuer, jwks(*signers.values()))
    assert (tok.issuer, tok.user, tok.subject, tok.token_id) == (
        "corp-idp", "alice", claims["sub"], claims["jti"])
    assert idp.roles_for(issuer, tok.claims) == {"docker": ("groups=/sre",)}


def test_keycloak_group_paths_match_exactly_not_by_prefix(signers):
    issuer = oidc()
    claims = keycloak_claims(NOW, groups=["/sre/oncall", "/sre-contractors"])
    tok = verify(signers["rsa"].sign(claims), issuer, jwks(signers["rsa"]))
    assert idp.roles_for(issuer, tok.claims) == {}


def test_json_pointer_claims_and_globs(signers):
    rules = [{"claim": "/realm_access/roles", "value": "db-*", "match": "glob",
              "roles": ["db-admin"]}]
    issuer = oidc(claims_to_roles=rules, username_claim="/ext/login", username_suffix=None)
    claims = keycloak_claims(NOW, ext={"login": "bob"})
    tok = verify(signers["ec"].sign(claims), issuer, jwks(signers["ec"]))
    assert tok.user == "bob"
    assert idp.roles_for(issuer, tok.claims) == {
        "db-admin": ("/realm_access/roles=db-operators",)}


def test_okta_token_suffix_stripped_and_no_jti_uses_the_hash(signers):
    rules = [{"value": "sre-admins", "roles": ["docker", "db-admin"]}]
    issuer = oidc(claims_to_roles=rules)
    token = signers["rsa"].sign(okta_claims(NOW, "alice"))
    tok = verify(token, issuer, jwks(signers["rsa"]))
    assert tok.user == "alice"
    assert tok.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    assert idp.roles_for(issuer, tok.claims) == {"docker": ("groups=sre-admins",),
                                                 "db-admin": ("groups=sre-admins",)}


def test_entra_token_groups_are_object_ids(signers):
    issuer = oidc(username_claim="upn", claims_to_roles=[{"value": ENTRA_SRE,
                                                           "roles": ["docker"]}])
    tok = verify(signers["ed"].sign(entra_claims(NOW)), issuer, jwks(signers["ed"]))
    assert tok.user == "alice"
    assert idp.roles_for(issuer, tok.claims) == {"docker": (f"groups={ENTRA_SRE}",)}


def test_a_token_without_kid_is_tried_with_every_key_of_its_alg(signers):
    issuer = oidc()
    token = signers["rsa"].sign(keycloak_claims(NOW), kid=None)
    tok = verify(token, issuer, jwks(signers["rsa2"], signers["ec"], signers["rsa"]))
    assert tok.user == "alice"


def test_the_issuer_named_must_be_the_tokens(signers):
    issuer = oidc()
    tok = verify(signers["rsa"].sign(keycloak_claims(NOW)), issuer, jwks(signers["rsa"]),
                 name="corp-idp")
    assert tok.issuer == "corp-idp"
    assert refused(signers["rsa"].sign(keycloak_claims(NOW)), issuer, jwks(signers["rsa"]),
                   name="other") == "unknown_issuer"


# --- refusals, one thing wrong each ----------------------------------------------------------

def _hs256_with_public_key(signer: Signer, claims: dict) -> str:
    """The classic key/alg confusion: HMAC keyed with the RSA public key's PEM."""
    pem = signer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(claims: dict) -> str:
    head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{_b64(json.dumps(claims).encode())}."


REFUSALS = [
    ("wrong_iss", lambda s, c: s.sign({**c, "iss": ISSUER_URL + "x"}), "unknown_issuer"),
    ("wrong_aud", lambda s, c: s.sign({**c, "aud": "other-client"}), "wrong_audience"),
    ("wrong_azp", lambda s, c: s.sign({**c, "azp": "other-client"}), "wrong_azp"),
    ("alg_none", lambda s, c: _alg_none(c), "algorithm_not_allowed"),
    ("hs256_public_key", _hs256_with_public_key, "algorithm_not_allowed"),
    ("expired", lambda s, c: s.sign({**c, "exp": NOW - 61}), "expired"),
    ("old_iat", lambda s, c: s.sign({**c, "iat": NOW - 661, "exp": NOW + 600}),
     "token_too_old"),
    ("nbf_future", lambda s, c: s.sign({**c, "nbf": NOW + 61}), "not_yet_valid"),
    ("iat_future", lambda s, c: s.sign({**c, "iat": NOW + 61}), "not_yet_valid"),
    ("unknown_kid", lambda s, c: s.sign(c, kid="rotated-2"), "unknown_key"),
    ("bad_signature", lambda s, c: s.sign(c)[:-8] + "AAAAAAAA", "bad_signature"),
    ("other_key_same_kid", lambda s, c: Signer("rsa", s.kid).sign(c), "bad_signature"),
    ("no_sub", lambda s, c: s.sign({k: v for k, v in c.items() if k != "sub"}), "bad_token"),
    ("bad_user", lambda s, c: s.sign({**c, "preferred_username": "root;x"}), "bad_token"),
    ("suffix_of_another_domain", lambda s, c: s.sign(
        {**c, "preferred_username": "alice@evil.example"}), "bad_token"),
    ("no_exp", lambda s, c: s.sign({k: v for k, v in c.items() if k != "exp"}), "bad_token"),
    ("garbage", lambda s, c: "not.a.token", "malformed"),
    ("keycloak_access_token", lambda s, c: s.sign({**c, "typ": "Bearer"}), "bad_token"),
    ("rfc9068_access_token", lambda s, c: s.sign(c, header={"typ": "at+jwt"}), "bad_token"),
]


@pytest.mark.parametrize("make,code", [(m, c) for _n, m, c in REFUSALS],
                         ids=[n for n, _m, _c in REFUSALS])
def test_each_refusal(make, code, signers):
    issuer = oidc()
    token = make(signers["rsa"], keycloak_claims(NOW))
    assert refused(token, issuer, jwks(signers["rsa"], signers["ec"])) == code


def test_within_leeway_is_accepted(signers):
    issuer = oidc()
    c = keycloak_claims(NOW, exp=NOW - 59, nbf=NOW + 59, iat=NOW - 600 - 59)
    assert verify(signers["rsa"].sign(c), issuer, jwks(signers["rsa"])).user == "alice"


def test_a_key_is_never_tried_for_an_algorithm_of_another_type(signers):
    """An ES256 token whose kid names the RSA key: no key of that kid fits ES256."""
    issuer = oidc()
    token = signers["ec"].sign(keycloak_claims(NOW), kid="rsa-1")
    assert refused(token, issuer, jwks(signers["rsa"], signers["ec"])) == "unknown_key"


def test_an_algorithm_outside_the_issuers_list(signers):
    issuer = oidc(algorithms=["ES256"])
    assert refused(signers["rsa"].sign(keycloak_claims(NOW)), issuer,
                   jwks(signers["rsa"])) == "algorithm_not_allowed"


@pytest.mark.parametrize("overage", ["claim_names", "hasgroups"])
def test_entra_overage_is_refused_not_read_as_no_groups(overage, signers):
    issuer = oidc(username_claim="upn")
    token = signers["rsa"].sign(entra_claims(NOW, overage=overage))
    assert refused(token, issuer, jwks(signers["rsa"])) == "groups_overage"


def test_a_private_jwk_is_never_used(signers):
    issuer = oidc()
    jwk = json.loads(jwt.get_algorithm_by_name("RS256").to_jwk(signers["rsa"].key))
    jwk.update(kid="rsa-1")
    token = signers["rsa"].sign(keycloak_claims(NOW))
    assert refused(token, issuer, {"keys": [jwk]}) == "unknown_key"
    assert idptoken.keyset({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]},
                           ("RS256",)) == ()


# --- authorize: the role, the issuer, the rules ----------------------------------------------

def _config(**role) -> Config:
    return Config(roles={"docker": Role("docker", ("docker",), issuers=("corp-idp",),
                                        **role)})


def test_authorize_gives_the_matched_values_or_names_why_not(signers):
    issuer = oidc()
    tok = verify(signers["rsa"].sign(keycloak_claims(NOW)), issuer, jwks(signers["rsa"]))
    assert idptoken.authorize(tok, issuer, _config(), "docker") == ("groups=/sre",)
    with pytest.raises(JitError) as info:
        idptoken.authorize(tok, issuer, _config(), "db-admin")
    assert info.value.code == "unknown_role"
    other = Config(roles={"docker": Role("docker", issuers=("corp",))})
    with pytest.raises(JitError) as info:
        idptoken.authorize(tok, issuer, other, "docker")
    assert info.value.code == "issuer_not_allowed"
    staff = verify(signers["rsa"].sign(keycloak_claims(NOW, groups=["/staff"])), issuer,
                   jwks(signers["rsa"]))
    with pytest.raises(JitError) as info:
        idptoken.authorize(staff, issuer, _config(), "docker")
    assert info.value.code == "not_allowed"


# --- the issuer file -------------------------------------------------------------------------

BAD_FILES = [
    ({"issuer": "http://idp.example.com/realms/corp"}, "issuer", "loopback"),
    ({"issuer": "ftp://127.0.0.1/x"}, "issuer", "https"),
    ({"algorithms": ["HS256"]}, "algorithms", "asymmetric"),
    ({"algorithms": ["none"]}, "algorithms", "asymmetric"),
    ({"algorithms": []}, "algorithms", "allow-list"),
    ({"client_id": None}, "client_id", "required"),
    ({"max_token_age": "soon"}, "max_token_age", ""),
    ({"claims_to_roles": [{"value": "/sre", "roles": []}]}, "claims_to_roles[0].roles", ""),
    ({"claims_to_roles": [{"value": "/sre", "roles": ["x"], "match": "regex"}]},
     "claims_to_roles[0].match", "exact, glob"),
    ({"claims_to_roles": [{"value": "/sre", "roles": ["x"], "typo": 1}]},
     "claims_to_roles[0].typo", "unknown key"),
    ({"public_keys": ["k.pem"]}, "public_keys", "unknown key"),
]


@pytest.mark.parametrize("over,key,words", BAD_FILES, ids=[b[1] + str(i)
                                                           for i, b in enumerate(BAD_FILES)])
def test_bad_oidc_issuer_files_name_the_key(over, key, words):
    with pytest.raises(JitError) as info:
        oidc(**over)
    assert info.value.code == "config_error"
    assert f": {key}: " in info.value.message and words in info.value.message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/r", "http://[::1]/r",
                                 "http://localhost:9/r", "https://idp.example.com/r"])
def test_issuer_urls_allowed(url):
    assert oidc(issuer=url).issuer == url


def test_lookup_follows_json_pointers_with_escapes():
    claims = {"a/b": {"c~d": ["x", "y"]}, "plain": "p"}
    assert idp.lookup(claims, "/a~1b/c~0d/1") == "y"
    assert idp.lookup(claims, "plain") == "p"
    assert idp.lookup(claims, "/missing/x") is None


@pytest.mark.parametrize("groups", [{"a": 1}, 7, [0] * 4097],
                         ids=["object", "number", "too-many"])
def test_a_groups_claim_of_a_shape_no_rule_can_read_is_bad_token(groups, signers):
    issuer = oidc()
    tok = verify(signers["rsa"].sign(keycloak_claims(NOW, groups=groups)), issuer,
                 jwks(signers["rsa"]))
    with pytest.raises(JitError) as info:
        idptoken.authorize(tok, issuer, _config(), "docker")
    assert info.value.code == "bad_token"


def test_non_string_group_values_are_ignored_not_matched(signers):
    issuer = oidc()
    tok = verify(signers["rsa"].sign(keycloak_claims(NOW, groups=[["/sre"], None, 1])),
                 issuer, jwks(signers["rsa"]))
    assert idp.roles_for(issuer, tok.claims) == {}
