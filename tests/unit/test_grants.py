"""grants.verify: every refusal code of DESIGN.md §12 it can produce, each from a token
with exactly one thing wrong, and the accepted shapes (EdDSA, ES256, RS256; PEM, JWKS).

Convention in the tables: an `int` given for `iat`, `nbf` or `exp` is an offset in
seconds from the minter's `now`; any other type is put in the token as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from hostd.errors import JitError
from hostd.policy import grants
from hostd.policy.config import Config, Issuer, parse_issuer
from hostd.policy.hostmatch import HostFacts

LEEWAY = 30
TIME_CLAIMS = ("iat", "nbf", "exp")


def timed(mint, overrides: dict) -> dict:
    out = {}
    for name, value in overrides.items():
        if name in TIME_CLAIMS and type(value) is int:
            value = mint.now + value
        out[name] = value
    return out


def refused(token, config, host, now) -> JitError:
    with pytest.raises(JitError) as info:
        grants.verify(token, config, host, now)
    return info.value


def test_valid_token_is_accepted(mint, config, host):
    """The baseline every refusal below changes one thing of."""
    g = grants.verify(mint.token(), config, host, mint.now)
    assert (g.issuer, g.user, g.role, g.groups) == ("corp", "alice", "docker", ("docker",))
    assert (g.not_before, g.exp, g.iat) == (mint.now, mint.now + 3600, mint.now)
    assert (g.reason, g.ticket, g.approved_by) == ("deploy", "OPS-1", ("bob",))
    assert g.hosts == ("web-*",)


# --- malformed: one claim missing or of the wrong shape -------------------------------------

MISSING = ["iss", "sub", "aud", "jti", "iat", "exp", "role", "hosts"]


@pytest.mark.parametrize("claim", MISSING, ids=[f"missing-{c}" for c in MISSING])
def test_missing_required_claim_is_malformed(claim, mint, config, host):
    err = refused(mint.token(drop=(claim,)), config, host, mint.now)
    assert err.code == "malformed"
    assert claim in err.message


WRONG_TYPES = [
    ("exp-string", {"exp": str(1_800_003_600)}, "exp"),
    ("exp-bool", {"exp": True}, "exp"),
    ("exp-float", {"exp": 1_800_003_600.5}, "exp"),
    ("iat-string", {"iat": "now"}, "iat"),
    ("nbf-negative", {"nbf": -1_800_000_001}, "nbf"),
    ("iss-int", {"iss": 7}, "iss"),
    ("hosts-string", {"hosts": "web-*"}, "hosts"),
    ("hosts-empty", {"hosts": []}, "hosts"),
    ("hosts-too-many", {"hosts": ["web-*"] * 65}, "hosts"),
    ("hosts-int-item", {"hosts": ["web-*", 5]}, "hosts"),
    ("hosts-bad-selector", {"hosts": ["web 01"]}, "hosts"),
    ("jti-too-long", {"jti": "j" * 129}, "jti"),
    ("jti-empty", {"jti": ""}, "jti"),
    ("jti-space", {"jti": "a b"}, "jti"),
    ("sub-not-user-name", {"sub": "Alice Smith"}, "sub"),
    ("sub-path", {"sub": "../root"}, "sub"),
    ("sub-int", {"sub": 1000}, "sub"),
    ("aud-int", {"aud": 5}, "aud"),
    ("aud-list-of-int", {"aud": [5]}, "aud"),
    ("role-empty", {"role": ""}, "role"),
    ("role-list", {"role": ["docker"]}, "role"),
    ("approved_by-int", {"approved_by": 7}, "approved_by"),
    ("approved_by-list-of-int", {"approved_by": [7]}, "approved_by"),
    ("reason-too-long", {"reason": "r" * 1025}, "reason"),
    ("ticket-int", {"ticket": 12}, "ticket"),
    ("exp-before-iat", {"exp": -1}, "exp"),
    ("exp-equals-nbf", {"nbf": 60, "exp": 60}, "exp"),
]


@pytest.mark.parametrize("overrides,claim", [c[1:] for c in WRONG_TYPES],
                         ids=[c[0] for c in WRONG_TYPES])
def test_wrong_claim_shape_is_malformed(overrides, claim, mint, config, host):
    err = refused(mint.token(**timed(mint, overrides)), config, host, mint.now)
    assert err.code == "malformed"
    assert claim in err.message


def _valid_parts(mint) -> list[str]:
    return mint.token().split(".")


MALFORMED_SHAPES = [
    ("garbage", lambda m: "this is not a token"),
    ("empty", lambda m: ""),
    ("two-parts", lambda m: ".".join(_valid_parts(m)[:2])),
    ("four-parts", lambda m: ".".join([*_valid_parts(m), "x"])),
    ("payload-not-json", lambda m: ".".join([_valid_parts(m)[0], m.b64url("not json"),
                                            _valid_parts(m)[2]])),
    ("payload-json-array", lambda m: m.raw({"alg": "EdDSA"}, "[1, 2]", "c2ln")),
    ("header-not-json", lambda m: ".".join([m.b64url("{oops"), *_valid_parts(m)[1:]])),
    ("header-not-base64", lambda m: ".".join(["!!!", *_valid_parts(m)[1:]])),
    ("kid-not-string", lambda m: m.raw({"alg": "EdDSA", "kid": 5}, m.claims(),
                                       _valid_parts(m)[2])),
    ("not-a-string", lambda m: b"a.b.c"),
    ("none-object", lambda m: None),
]


@pytest.mark.parametrize("build", [c[1] for c in MALFORMED_SHAPES],
                         ids=[c[0] for c in MALFORMED_SHAPES])
def test_unparsable_token_is_malformed(build, mint, config, host):
    assert refused(build(mint), config, host, mint.now).code == "malformed"


def test_token_over_16_kib_is_refused_unparsed(mint, config, host, monkeypatch):
    """Valid in every other way; refused on size alone, before any parsing."""
    big = mint.token(padding="x" * (grants.MAX_TOKEN))
    assert len(big) > grants.MAX_TOKEN
    small = mint.token(padding="x" * 1000)
    assert grants.verify(small, config, host, mint.now).user == "alice"

    def must_not_parse(*args, **kwargs):
        raise AssertionError("an oversized token reached the JWT parser")

    monkeypatch.setattr(grants.jwt, "get_unverified_header", must_not_parse)
    monkeypatch.setattr(grants.jwt, "decode", must_not_parse)
    err = refused(big, config, host, mint.now)
    assert err.code == "malformed"
    assert "16 KiB" in err.message


def test_token_size_limit_boundary(mint, config, host):
    """Exactly MAX_TOKEN characters passes (trailing whitespace is stripped), one more not."""
    token = mint.token()
    at_limit = token + " " * (grants.MAX_TOKEN - len(token))
    assert grants.verify(at_limit, config, host, mint.now).user == "alice"
    assert refused(at_limit + " ", config, host, mint.now).code == "malformed"


# --- algorithm_not_allowed -------------------------------------------------------------------


def _hs256_with_public_pem(mint) -> str:
    """The classic key-confusion forgery: HMAC keyed with the issuer's public key PEM."""
    pem = mint.pki.corp.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = (mint.b64url(json.dumps({"alg": "HS256", "typ": "JWT"})) + "."
                     + mint.b64url(json.dumps(mint.claims())))
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{mint.b64url(mac)}"


ALG_CASES = [
    ("alg-none-unsigned", lambda m: m.raw({"alg": "none", "typ": "JWT"}, m.claims(), "")),
    ("alg-None-capitalised", lambda m: m.raw({"alg": "None", "typ": "JWT"}, m.claims(), "")),
    ("alg-missing", lambda m: m.raw({"typ": "JWT"}, m.claims(), "c2ln")),
    ("hs256-public-key-as-secret", _hs256_with_public_pem),
    ("es256-to-eddsa-only-issuer", lambda m: m.token(key=m.pki.ec)),
    ("rs256-to-eddsa-only-issuer", lambda m: m.token(key=m.pki.rsa)),
]


@pytest.mark.parametrize("build", [c[1] for c in ALG_CASES], ids=[c[0] for c in ALG_CASES])
def test_algorithm_not_allowed(build, mint, config, host):
    assert refused(build(mint), config, host, mint.now).code == "algorithm_not_allowed"


def test_hs256_forgery_refused_even_where_the_issuer_allows_several_algorithms(
        mint, make_config, host):
    cfg = make_config()
    corp = cfg.issuers["corp"]
    cfg.issuers["corp"] = Issuer("corp", corp.keys, ("EdDSA", "ES256", "RS256"))
    token = _hs256_with_public_pem(mint)
    assert refused(token, cfg, host, mint.now).code == "algorithm_not_allowed"


# --- bad_signature ---------------------------------------------------------------------------


def _swapped_payload(m) -> str:
    header, _, sig = m.token().split(".")
    forged = m.b64url(json.dumps(m.claims(role="ops", exp=m.now + 3 * 3600)))
    return f"{header}.{forged}.{sig}"


def _flipped_signature(m) -> str:
    header, payload, sig = m.token().split(".")
    raw = bytearray(jwt.utils.base64url_decode(sig))
    raw[0] ^= 1
    return f"{header}.{payload}.{m.b64url(bytes(raw))}"


BAD_SIG = [
    ("payload-swapped-under-valid-signature", _swapped_payload),
    ("signature-bit-flipped", _flipped_signature),
    ("signature-empty", lambda m: m.token().rsplit(".", 1)[0] + "."),
    ("strangers-key-no-kid", lambda m: m.token(key=m.pki.stranger)),
    ("strangers-key-own-kid", lambda m: grants.issue(
        m.pki.stranger, "corp", "alice", "docker", m.now, m.now + 3600, ["web-*"], m.now)),
    ("other-issuers-key", lambda m: m.token(key=m.pki.other)),
    ("kid-matches-no-key", lambda m: m.token(headers={"kid": "no-such-key"})),
    ("kid-of-another-issuer", lambda m: m.token(
        headers={"kid": m.public_key(m.pki.other).kid})),
]


@pytest.mark.parametrize("build", [c[1] for c in BAD_SIG], ids=[c[0] for c in BAD_SIG])
def test_bad_signature(build, mint, config, host):
    assert refused(build(mint), config, host, mint.now).code == "bad_signature"


def test_right_kid_right_key_is_accepted(mint, config, host):
    kid = mint.public_key(mint.pki.corp).kid
    assert grants.verify(mint.token(headers={"kid": kid}), config, host, mint.now).user == "alice"


# --- issuer, audience, role, time, ttl, host ---------------------------------------------------

ONE_THING_WRONG = [
    ("unknown-issuer", {"iss": "nobody"}, None, "unknown_issuer"),
    ("issuer-empty", {"iss": ""}, None, "unknown_issuer"),
    ("issuer-not-allowed-for-role", {"iss": "other"}, "other", "issuer_not_allowed"),
    ("wrong-audience", {"aud": "someone-else"}, None, "wrong_audience"),
    ("wrong-audience-list", {"aud": ["a", "b"]}, None, "wrong_audience"),
    ("wrong-audience-case", {"aud": "JITACCESS"}, None, "wrong_audience"),
    ("expired", {"iat": -7200, "exp": -LEEWAY - 1}, None, "expired"),
    ("expired-long-ago", {"iat": -90000, "exp": -86400}, None, "expired"),
    # a start ahead is scheduled (pending) up to max_lead_time (default 7 days), then refused
    ("not-yet-valid-nbf", {"nbf": 604800 + LEEWAY + 1, "exp": 604800 + 3600}, None,
     "not_yet_valid"),
    ("not-yet-valid-iat", {"iat": LEEWAY + 1, "exp": 3600}, None, "not_yet_valid"),
    ("ttl-exceeds-role-max", {"exp": 4 * 3600 + 1}, None, "ttl_exceeds_role_max"),
    ("ttl-from-nbf-exceeds", {"nbf": 10, "exp": 10 + 4 * 3600 + 1}, None,
     "ttl_exceeds_role_max"),
    ("unknown-role", {"role": "nope"}, None, "unknown_role"),
    ("wrong-host-glob", {"hosts": ["db-*"]}, None, "wrong_host"),
    ("wrong-host-glob-partial", {"hosts": ["web-01"]}, None, "wrong_host"),
    ("wrong-host-machine-id", {"hosts": ["machine-id:" + "f" * 32]}, None, "wrong_host"),
    ("wrong-host-network", {"hosts": ["192.168.0.0/16"]}, None, "wrong_host"),
    ("wrong-host-address", {"hosts": ["10.1.2.4"]}, None, "wrong_host"),
    ("wrong-host-ipv6-network", {"hosts": ["2001:db9::/32"]}, None, "wrong_host"),
]


@pytest.mark.parametrize("overrides,signer,code", [c[1:] for c in ONE_THING_WRONG],
                         ids=[c[0] for c in ONE_THING_WRONG])
def test_refusal(overrides, signer, code, mint, config, host):
    key = getattr(mint.pki, signer) if signer else None
    claims = timed(mint, overrides)
    if signer == "other":
        claims.setdefault("role", "docker")
    err = refused(mint.token(key=key, **claims), config, host, mint.now)
    assert err.code == code, err.message


def test_other_issuer_accepted_for_its_own_role(mint, config, host):
    """The control for issuer_not_allowed: the same key is good for the role it may grant."""
    g = grants.verify(mint.token(key=mint.pki.other, iss="other", role="other-role"),
                      config, host, mint.now)
    assert (g.issuer, g.role, g.groups) == ("other", "other-role", ("staff",))


# --- leeway edges ----------------------------------------------------------------------------

LEEWAY_EDGES = [
    ("exp-at-now-minus-leeway", 10, {"iat": -3600, "exp": -10}, None),
    ("exp-one-past-leeway", 10, {"iat": -3600, "exp": -11}, "expired"),
    ("nbf-at-now-plus-leeway", 10, {"nbf": 10, "exp": 3600}, None),
    ("nbf-one-past-leeway", 10, {"nbf": 11, "exp": 3600}, None),  # scheduled, not refused
    ("nbf-at-lead-plus-leeway", 10, {"nbf": 604800 + 10, "exp": 604800 + 3600}, None),
    ("nbf-one-past-lead", 10, {"nbf": 604800 + 11, "exp": 604800 + 3600}, "not_yet_valid"),
    ("max-leeway-exp-ok", 60, {"iat": -3600, "exp": -60}, None),
    ("max-leeway-exp-late", 60, {"iat": -3600, "exp": -61}, "expired"),
    ("max-leeway-nbf-ok", 60, {"nbf": 60, "exp": 3600}, None),
    ("max-leeway-nbf-early", 60, {"nbf": 604800 + 61, "exp": 604800 + 3600}, "not_yet_valid"),
    ("ttl-exactly-role-max", 10, {"exp": 4 * 3600}, None),
]


@pytest.mark.parametrize("leeway,overrides,code", [c[1:] for c in LEEWAY_EDGES],
                         ids=[c[0] for c in LEEWAY_EDGES])
def test_leeway_edges(leeway, overrides, code, mint, make_config, host):
    cfg = make_config(leeway=leeway)
    token = mint.token(**timed(mint, overrides))
    if code is None:
        assert grants.verify(token, cfg, host, mint.now).user == "alice"
    else:
        assert refused(token, cfg, host, mint.now).code == code


# --- host selectors that do match ------------------------------------------------------------

MATCHING_HOSTS = [
    ("glob", ["web-*"]),
    ("glob-upper-case", ["WEB-0?.EXAMPLE.COM"]),
    ("exact-name", ["web-01.example.com"]),
    ("machine-id", ["machine-id:{mid}"]),
    ("machine-id-upper-case", ["machine-id:{MID}"]),
    ("network-v4", ["10.0.0.0/8"]),
    ("address-v4", ["10.1.2.3"]),
    ("network-v6", ["2001:db8::/32"]),
    ("second-selector", ["db-*", "10.1.0.0/16"]),
]


@pytest.mark.parametrize("hosts", [c[1] for c in MATCHING_HOSTS],
                         ids=[c[0] for c in MATCHING_HOSTS])
def test_host_selectors_accepted(hosts, mint, config, host):
    hosts = [h.format(mid=host.machine_id, MID=host.machine_id.upper()) for h in hosts]
    assert grants.verify(mint.token(hosts=hosts), config, host, mint.now).hosts == tuple(hosts)


def test_machine_id_selector_does_not_match_a_host_without_one(mint, config):
    bare = HostFacts(hostname="db-01")
    err = refused(mint.token(hosts=["machine-id:" + "0" * 32]), config, bare, mint.now)
    assert err.code == "wrong_host"


# --- accepted algorithms and key sources -----------------------------------------------------


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _jwk(private_key) -> dict:
    pub = private_key.public_key()
    alg = {"EdDSA": jwt.algorithms.OKPAlgorithm, "ES256": jwt.algorithms.ECAlgorithm,
           "RS256": jwt.algorithms.RSAAlgorithm}[grants.algorithm_for(pub)]
    return json.loads(alg.to_jwk(pub))


KEY_KINDS = ["corp", "ec", "rsa"]


def _issuer_config(config: Config, issuer: Issuer) -> Config:
    return Config(roles=config.roles, issuers={"corp": issuer}, leeway=config.leeway)


@pytest.mark.parametrize("kind", KEY_KINDS, ids=["EdDSA-pem", "ES256-pem", "RS256-pem"])
def test_success_from_pem(kind, mint, pki, config, host, tmp_path):
    private = getattr(pki, kind)
    alg = grants.algorithm_for(private)
    (tmp_path / "corp.pub").write_bytes(_pem(private))
    issuer = parse_issuer(tmp_path / "corp.toml",
                          {"name": "corp", "public_keys": ["corp.pub"], "algorithms": [alg]})
    assert [k.algorithm for k in issuer.keys] == [alg]
    g = grants.verify(mint.token(key=private), _issuer_config(config, issuer), host, mint.now)
    assert (g.issuer, g.user, g.role) == ("corp", "alice", "docker")


@pytest.mark.parametrize("kind", KEY_KINDS, ids=["EdDSA-jwks", "ES256-jwks", "RS256-jwks"])
def test_success_from_jwks_with_kid(kind, mint, pki, config, host, tmp_path):
    private = getattr(pki, kind)
    alg = grants.algorithm_for(private)
    decoy = dict(_jwk(pki.stranger), kid="decoy")
    (tmp_path / "corp.jwks").write_text(json.dumps(
        {"keys": [decoy, dict(_jwk(private), kid="key-2024", use="sig")]}))
    issuer = parse_issuer(tmp_path / "corp.toml",
                          {"name": "corp", "jwks": "corp.jwks", "algorithms": [alg, "EdDSA"]})
    cfg = _issuer_config(config, issuer)
    g = grants.verify(mint.token(key=private, headers={"kid": "key-2024"}), cfg, host, mint.now)
    assert (g.issuer, g.user) == ("corp", "alice")
    # the same token with the decoy's kid selects the wrong key
    err = refused(mint.token(key=private, headers={"kid": "decoy"}), cfg, host, mint.now)
    assert err.code == "bad_signature"


def test_issue_then_verify_round_trip(mint, config, host):
    now = mint.now
    token = grants.issue(mint.pki.corp, "corp", "alice", "docker", not_before=now,
                         exp=now + 1800, hosts=["web-*"], now=now - 5,
                         reason="r", ticket="T-1", approved_by=["bob", "carol"], jti="abc")
    assert jwt.get_unverified_header(token)["kid"] == mint.public_key(mint.pki.corp).kid
    g = grants.verify(token, config, host, now)
    assert (g.jti, g.not_before, g.exp, g.iat) == ("abc", now, now + 1800, now - 5)
    assert g.approved_by == ("bob", "carol")


def test_username_claim_maps_the_user(mint, make_config, host):
    cfg = make_config()
    corp = cfg.issuers["corp"]
    cfg.issuers["corp"] = Issuer("corp", corp.keys, corp.algorithms, "preferred_username")
    token = mint.token(sub="00u1abcd@idp", preferred_username="carol")
    assert grants.verify(token, cfg, host, mint.now).user == "carol"
    assert refused(mint.token(), cfg, host, mint.now).code == "malformed"


def test_approved_by_as_a_string(mint, config, host):
    assert grants.verify(mint.token(approved_by="dave"), config, host,
                         mint.now).approved_by == ("dave",)


def test_audience_list_containing_jitaccess(mint, config, host):
    token = mint.token(aud=["other-app", "jitaccess"])
    assert grants.verify(token, config, host, mint.now).user == "alice"


# --- hostile JSON and text: every parse failure is `malformed`, never a crash ----------------


def _signed_text(mint, payload: str, header: dict | None = None) -> str:
    """A token signed by the trusted corp key over payload text PyJWT would not write."""
    return jwt.api_jws.encode(payload.encode(), mint.pki.corp, algorithm="EdDSA",
                              headers=header)


def _with_extra(mint, extra: str) -> str:
    """The valid claims as JSON text with `, extra` spliced in before the closing brace."""
    return json.dumps(mint.claims())[:-1] + ", " + extra + "}"


DEEP = "[" * 3000 + "]" * 3000


@pytest.mark.parametrize("where", ["payload-unsigned", "payload-signed", "header"])
def test_deep_nesting_is_malformed_not_a_recursion_error(where, mint, config, host):
    """Finding: nesting a few thousand deep raised RecursionError out of verify."""
    if where == "payload-unsigned":
        token = mint.raw({"alg": "EdDSA"}, _with_extra(mint, f'"x": {DEEP}'), "c2ln")
    elif where == "payload-signed":
        token = _signed_text(mint, _with_extra(mint, f'"x": {DEEP}'))
    else:
        header = mint.b64url('{"alg": "EdDSA", "x": ' + DEEP + "}")
        token = header + "." + mint.token().split(".", 1)[1]
    assert len(token) <= grants.MAX_TOKEN
    err = refused(token, config, host, mint.now)
    assert err.code == "malformed"
    assert "not JSON" in err.message


@pytest.mark.parametrize("where", ["payload", "header"])
def test_huge_integer_is_malformed(where, mint, config, host):
    """Past Python's 4,300-digit int limit json raises ValueError: always `malformed`."""
    huge = "9" * 4400
    if where == "payload":
        token = _signed_text(mint, _with_extra(mint, f'"x": {huge}'))
    else:
        header = mint.b64url('{"alg": "EdDSA", "x": ' + huge + "}")
        token = header + "." + mint.token().split(".", 1)[1]
    assert refused(token, config, host, mint.now).code == "malformed"


NON_FINITE = [
    ("nan-extension-claim", '"x": NaN'),
    ("infinity-extension-claim", '"x": Infinity'),
    ("minus-infinity-in-list", '"x": [-Infinity]'),
    ("overflowing-float", '"x": 1e400'),
    ("nan-nbf", '"nbf": NaN'),
]


@pytest.mark.parametrize("extra", [c[1] for c in NON_FINITE], ids=[c[0] for c in NON_FINITE])
def test_nan_and_infinity_are_malformed(extra, mint, config, host):
    """Finding: NaN/Infinity (not JSON) were accepted anywhere but in time claims."""
    err = refused(_signed_text(mint, _with_extra(mint, extra)), config, host, mint.now)
    assert err.code == "malformed"


def test_float_times_are_malformed(mint, config, host):
    for name in TIME_CLAIMS:
        token = mint.token(**{name: float(mint.now + (3600 if name == "exp" else 0))})
        err = refused(token, config, host, mint.now)
        assert (err.code, name in err.message) == ("malformed", True)


def test_duplicate_keys_are_accepted_as_json_does(mint, config, host):
    """The last value wins, in our parse and PyJWT's alike; it is signed text either way."""
    token = _signed_text(mint, _with_extra(mint, '"reason": "second"'))
    assert grants.verify(token, config, host, mint.now).reason == "second"


SURROGATE_CLAIMS = ["reason", "ticket", "sub", "role", "approved_by", "jti", "iss", "aud",
                    "hosts"]


@pytest.mark.parametrize("claim", SURROGATE_CLAIMS)
def test_lone_surrogate_in_text_claim_is_malformed(claim, mint, config, host):
    """Finding: `"reason": "\\udc80"` verified, then crashed SQLite's binding in hostd."""
    value: object = "x\udc80"
    if claim in ("approved_by", "hosts", "aud"):
        value = ["web-*" if claim == "hosts" else "jitaccess", "x\udc80"]
    token = mint.token(**{claim: value})
    assert "\\udc80" in jwt.utils.base64url_decode(token.split(".")[1]).decode()
    err = refused(token, config, host, mint.now)
    assert err.code == "malformed"
    assert "surrogate" in err.message


def test_lone_surrogate_in_claim_name_or_header_is_malformed(mint, config, host):
    assert refused(mint.token(**{"x\udc80": 1}), config, host, mint.now).code == "malformed"
    err = refused(mint.token(headers={"kid": "\udc80"}), config, host, mint.now)
    assert err.code == "malformed"


@pytest.mark.parametrize("where", ["end", "start", "signature"])
def test_lone_surrogate_in_token_string_is_malformed(where, mint, config, host):
    """Finding: a surrogate in the token text raised UnicodeEncodeError inside PyJWT."""
    token = mint.token()
    token = {"end": token + "\udc80", "start": "\udc80" + token,
             "signature": token[:-2] + "\udc80" + token[-1]}[where]
    assert refused(token, config, host, mint.now).code == "malformed"


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_trailing_newline_in_sub_or_jti_is_malformed(claim, mint, config, host):
    """Finding: `$`-anchored patterns accepted "alice\\n" as a user name and jti."""
    value = "alice\n" if claim == "sub" else "jti-1\n"
    err = refused(mint.token(**{claim: value}), config, host, mint.now)
    assert err.code == "malformed"
    assert claim in err.message


NOT_BASE64URL = [
    ("padded-header", lambda t: t.replace(".", "==.", 1)),
    ("padded-signature", lambda t: t + "=="),
    ("plus-and-slash", lambda t: t.replace("-", "+").replace("_", "/")
     if ("-" in t or "_" in t) else "+" + t),
    ("space-inside", lambda t: t[:10] + " " + t[10:]),
    ("non-ascii-letter", lambda t: t[:10] + "é" + t[10:]),
    ("nul-byte", lambda t: t + "\x00"),
    ("impossible-length", lambda t: "a" + t),
]


@pytest.mark.parametrize("mutate", [c[1] for c in NOT_BASE64URL],
                         ids=[c[0] for c in NOT_BASE64URL])
def test_characters_outside_base64url_are_malformed(mutate, mint, config, host):
    """Compact JWS is unpadded base64url (RFC 7515 §2); base64's lenient decoder would
    otherwise skip stray characters, so two different strings would be one token."""
    assert refused(mutate(mint.token()), config, host, mint.now).code == "malformed"


def test_crit_header_is_malformed(mint, config, host):
    """RFC 7515 §4.1.11: a critical extension we do not understand must be refused."""
    token = mint.token(headers={"crit": ["exp"], "exp": 1})
    assert refused(token, config, host, mint.now).code == "malformed"
