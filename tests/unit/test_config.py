"""config: the policy and issuer files. Every error names the file, the exact key path and
the problem; unknown keys are errors at every level; the DESIGN.md §4 example parses."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from hostd.errors import ConfigError
from hostd.paths import Paths
from hostd.policy import config as cfg
from hostd.policy.keys import generate_ed25519, thumbprint

POLICY = Path("/etc/jit/jit.toml")


def policy_error(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.parse_policy(POLICY, data)
    return info.value


def assert_names(err: ConfigError, path: Path, key: str, problem: str) -> None:
    assert err.code == "config_error"
    assert (err.path, err.key) == (str(path), key)
    assert err.message.startswith(f"{path}: {key}: " if key else f"{path}: ")
    assert problem in err.problem, err.message


def role(**body) -> dict:
    return {"roles": {"docker": {"groups": ["docker"], **body}}}


def db_sudo(**rule) -> dict:
    return {"roles": {"db": {"sudo": [{"runas": "postgres", "commands": ["/usr/bin/psql *"],
                                       **rule}]}}}


UNKNOWN_KEYS = [
    ("top", {"rolez": {}}, "rolez"),
    ("role", role(max_tll="4h"), "roles.docker.max_tll"),
    ("sudo-rule", db_sudo(runsa="root"), "roles.db.sudo[0].runsa"),
    ("guardrail", {"guardrails": [{"match": "x", "pattern": "y"}]}, "guardrails[0].pattern"),
    ("second-guardrail", {"guardrails": [{"match": "x"}, {"match": "y", "msg": "m"}]},
     "guardrails[1].msg"),
    ("standing", {"standing": [{"member": ["root"]}]}, "standing[0].member"),
    ("standing-sudo-rule", {"standing": [{"members": ["root"], "sudo": [
        {"commands": ["ALL"], "host": "x"}]}]}, "standing[0].sudo[0].host"),
    ("login", {"login": {"require": ["%contractors"]}}, "login.require"),
    ("requests", {"requests": {"timeout": "1h"}}, "requests.timeout"),
    ("sudo", {"sudo": {"timeout": "5m"}}, "sudo.timeout"),
    ("notify", {"notify": {"url": "https://x"}}, "notify.url"),
    ("masking", {"masking": {"rule": []}}, "masking.rule"),
    ("masking-rule", {"masking": {"rules": [{"name": "k", "regex": "x", "flags": "i"}]}},
     "masking.rules[0].flags"),
    ("daemon", {"daemon": {"leway": "30s"}}, "daemon.leway"),
]


@pytest.mark.parametrize("data,key", [u[1:] for u in UNKNOWN_KEYS],
                         ids=[u[0] for u in UNKNOWN_KEYS])
def test_unknown_key_is_an_error(data, key):
    assert_names(policy_error(data), POLICY, key, "unknown key")


POLICY_ERRORS = [
    ("max-ttl-bad-unit", role(max_ttl="4x"), "roles.docker.max_ttl", "bad duration"),
    ("max-ttl-zero", role(max_ttl="0s"), "roles.docker.max_ttl", "more than zero"),
    ("max-ttl-int", role(max_ttl=4), "roles.docker.max_ttl", "must be str"),
    ("max-ttl-over-a-year", role(max_ttl="400d"), "roles.docker.max_ttl", "more than a year"),
    ("max-lead-time-bad", role(max_lead_time="7 days"), "roles.docker.max_lead_time",
     "bad duration"),
    ("max-lead-time-zero", role(max_lead_time="0s"), "roles.docker.max_lead_time",
     "more than zero"),
    ("requests-ttl", {"requests": {"ttl": "1y"}}, "requests.ttl", "bad duration"),
    ("approval-timeout-empty", {"sudo": {"approval_timeout": ""}}, "sudo.approval_timeout",
     "required"),
    ("sweep-interval", {"daemon": {"sweep_interval": "fast"}}, "daemon.sweep_interval",
     "bad duration"),
    ("leeway-over-60s", {"daemon": {"leeway": "61s"}}, "daemon.leeway", "at most 60s"),
    ("leeway-minutes", {"daemon": {"leeway": "2m"}}, "daemon.leeway", "at most 60s"),
    ("leeway-bad", {"daemon": {"leeway": "soon"}}, "daemon.leeway", "bad duration"),
    ("leeway-int", {"daemon": {"leeway": 30}}, "daemon.leeway", "must be str"),
    ("guardrail-bad-regex", {"guardrails": [{"match": "("}]}, "guardrails[0].match",
     "bad regular expression"),
    ("guardrail-no-match", {"guardrails": [{"action": "deny"}]}, "guardrails[0].match",
     "is required"),
    ("guardrail-action", {"guardrails": [{"action": "allow", "match": "x"}]},
     "guardrails[0].action", "must be one of deny, approve"),
    ("guardrail-not-table", {"guardrails": ["x"]}, "guardrails[0]", "must be a table"),
    ("guardrails-not-list", {"guardrails": {"match": "x"}}, "guardrails", "must be list"),
    ("masking-bad-regex", {"masking": {"rules": [{"name": "k", "regex": "["}]}},
     "masking.rules[0].regex", "bad regular expression"),
    ("masking-no-name", {"masking": {"rules": [{"regex": "x"}]}}, "masking.rules[0].name",
     "is required"),
    ("roles-not-table", {"roles": ["docker"]}, "roles", "must be dict"),
    ("role-not-table", {"roles": {"docker": "yes"}}, "roles.docker", "must be a table"),
    ("role-name", {"roles": {"Docker": {}}}, "roles.Docker", "role names"),
    ("role-name-slash", {"roles": {"a/b": {}}}, "roles.a/b", "role names"),
    ("groups-string", role(groups="docker"), "roles.docker.groups", "must be list"),
    ("group-name", role(groups=["Bad Group"]), "roles.docker.groups", "not a valid group"),
    ("issuer-name", role(issuers=["Corp"]), "roles.docker.issuers", "not a valid issuer"),
    ("requester", role(requesters=["%Dev"], approvers=["%sre"]), "roles.docker.requesters",
     "not a valid user or %group"),
    ("approver", role(approvers=["bob smith"]), "roles.docker.approvers",
     "not a valid user or %group"),
    ("approvals-too-many", role(approvals=11), "roles.docker.approvals", "between 0 and 10"),
    ("approvals-negative", role(approvals=-1), "roles.docker.approvals", "between 0 and 10"),
    ("approvals-bool", role(approvals=True), "roles.docker.approvals", "integer"),
    ("approvals-string", role(approvals="1"), "roles.docker.approvals", "must be int"),
    ("approvals-without-approvers", role(requesters=["%dev"]), "roles.docker.approvers",
     "needs approvers"),
    ("on-expiry", role(on_expiry="ignore"), "roles.docker.on_expiry", "must be one of"),
    ("record", role(record="sometimes"), "roles.docker.record", "must be one of"),
    ("record-failure", role(record_failure="retry"), "roles.docker.record_failure",
     "must be one of"),
    ("login-string", role(login="yes"), "roles.docker.login", "must be bool"),
    ("authenticate-int", role(authenticate=1), "roles.docker.authenticate", "must be bool"),
    ("sudo-not-list", {"roles": {"db": {"sudo": {"runas": "root"}}}}, "roles.db.sudo",
     "must be list"),
    ("sudo-rule-not-table", {"roles": {"db": {"sudo": ["ALL"]}}}, "roles.db.sudo[0]",
     "must be a table"),
    ("sudo-relative-command", db_sudo(commands=["psql"]), "roles.db.sudo[0].commands",
     "must be an absolute path, sudoedit /FILE or ALL"),
    ("sudo-no-commands", db_sudo(commands=[]), "roles.db.sudo[0].commands",
     "at least one command"),
    ("sudo-runas", db_sudo(runas="Root!"), "roles.db.sudo[0].runas", "not a user name"),
    ("standing-member", {"standing": [{"members": ["root", "bad member"]}]},
     "standing[0].members", "not a valid user or %group"),
    ("login-require-grant", {"login": {"require_grant": ["%Contractors"]}},
     "login.require_grant", "not a valid"),
    ("login-when-unreachable", {"login": {"when_unreachable": "maybe"}},
     "login.when_unreachable", "must be one of allow, deny"),
    ("login-not-table", {"login": ["x"]}, "login", "must be dict"),
    ("notify-webhook", {"notify": {"webhook": "ftp://chat.example/x"}}, "notify.webhook",
     "http:// or https://"),
    ("notify-webhook-space", {"notify": {"webhook": "https://a b"}}, "notify.webhook",
     "http:// or https://"),
]


@pytest.mark.parametrize("data,key,problem", [p[1:] for p in POLICY_ERRORS],
                         ids=[p[0] for p in POLICY_ERRORS])
def test_policy_error_names_file_key_and_problem(data, key, problem):
    assert_names(policy_error(data), POLICY, key, problem)


@pytest.mark.parametrize("text,seconds", [("1s", 1), ("30s", 30), ("60s", 60), ("1m", 60)],
                         ids=["1s", "30s", "60s", "1m"])
def test_leeway_up_to_60s(text, seconds):
    assert cfg.parse_policy(POLICY, {"daemon": {"leeway": text}})["leeway"] == seconds


def test_empty_policy_gives_defaults():
    out = cfg.parse_policy(POLICY, {})
    c = cfg.Config(**out)
    assert c.roles == {} and c.guardrails == () and c.standing == ()
    assert (c.leeway, c.request_ttl, c.sudo_approval_timeout, c.sweep_interval) == (
        30, 3600, 300, 30)
    assert c.login_when_unreachable == "allow"


DESIGN_EXAMPLE = r'''
[roles.docker]
groups = ["docker"]                 # temporary supplementary groups
max_ttl = "4h"
issuers = ["corp", "host"]          # who may issue grants for this role ("host": this host)
requesters = ["%developers"]        # who may `jit request` it here
approvers = ["%sre"]                # who may approve; never the requester
approvals = 1                       # 0: self-service with a reason (break-glass)
on_expiry = "terminate-sessions"    # or "keep-sessions"
login = false                       # true: this grant admits its holder where [login] gates

[roles.db-admin]
sudo = [ { runas = "postgres", commands = ["/usr/bin/psql *"] },
         { runas = "root", commands = ["/usr/bin/systemctl restart postgresql"] } ]
authenticate = true                 # sudo asks for the user's password (PAM), 5 min per tty
record = "always"                   # or "interactive", "never"
record_failure = "terminate"        # or "continue", when hostd goes away mid-session

[[guardrails]]                      # checked on every sudo, and on every program a
action = "deny"                     # sudo session starts (sudo's intercept)
match = "regex on the resolved command line"
message = "shown to the user"
[[guardrails]]
action = "approve"                  # pauses sudo until one of the role's approvers decides
match = '^/usr/bin/systemctl (stop|disable) '

[[standing]]                        # sudo without a grant: break-glass administrators
members = ["root", "%oncall"]
sudo = [ { runas = "root", commands = ["ALL"] } ]

[login]
require_grant = ["%contractors"]    # may log in only while holding a role with login = true
when_unreachable = "allow"          # for members not gated; gated ones are refused

[requests]
ttl = "1h"                          # an unanswered request expires

[sudo]
approval_timeout = "5m"

[notify]
webhook = "https://chat.example/hooks/..."   # optional; JSON with a Slack-compatible "text"

[masking]
rules = [ { name = "aws-key", regex = 'AKIA[0-9A-Z]{16}' } ]
'''


def test_design_example_policy_parses():
    c = cfg.Config(**cfg.parse_policy(POLICY, tomllib.loads(DESIGN_EXAMPLE)))
    docker = c.roles["docker"]
    assert docker == cfg.Role(name="docker", groups=("docker",), max_ttl=14400,
                              issuers=("corp", "host"), requesters=("%developers",),
                              approvers=("%sre",), approvals=1,
                              on_expiry="terminate-sessions", login=False)
    db = c.roles["db-admin"]
    assert db.sudo == (cfg.SudoRule("postgres", ("/usr/bin/psql *",)),
                       cfg.SudoRule("root", ("/usr/bin/systemctl restart postgresql",)))
    assert (db.authenticate, db.record, db.record_failure) == (True, "always", "terminate")
    assert [(g.action, g.message) for g in c.guardrails] == [("deny", "shown to the user"),
                                                            ("approve", "")]
    assert c.guardrails[1].match.search("/usr/bin/systemctl stop nginx")
    assert not c.guardrails[1].match.search("/usr/bin/systemctl status nginx")
    assert c.standing == (cfg.Standing(("root", "%oncall"), (cfg.SudoRule("root", ("ALL",)),)),)
    assert (c.login_require_grant, c.login_when_unreachable) == (("%contractors",), "allow")
    assert (c.request_ttl, c.sudo_approval_timeout) == (3600, 300)
    assert c.notify_webhook == "https://chat.example/hooks/..."
    assert [name for name, _ in c.masking] == ["aws-key"]
    assert c.masking[0][1].search("key AKIAABCDEFGHIJKLMNOP here")


# --- issuers -----------------------------------------------------------------------------------


def _pem(private_key) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def issuer_dir(tmp_path, pki) -> Path:
    """A directory with an issuer file's neighbours: PEM keys of each kind, JWKS documents."""
    (tmp_path / "corp.pub").write_bytes(_pem(pki.corp))
    (tmp_path / "ec.pub").write_bytes(_pem(pki.ec))
    (tmp_path / "garbage.pub").write_text("not a key\n")
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (tmp_path / "rsa1024.pub").write_bytes(_pem(small))
    (tmp_path / "p384.pub").write_bytes(_pem(ec.generate_private_key(ec.SECP384R1())))
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(pki.corp.public_key()))
    (tmp_path / "good.jwks").write_text(json.dumps({"keys": [dict(jwk, kid="k1")]}))
    (tmp_path / "nokid.jwks").write_text(json.dumps({"keys": [jwk]}))
    private_jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(pki.corp))
    (tmp_path / "private.jwks").write_text(json.dumps({"keys": [dict(private_jwk, kid="k")]}))
    (tmp_path / "notjson.jwks").write_text("{")
    (tmp_path / "nokeys.jwks").write_text(json.dumps({"kes": []}))
    (tmp_path / "wrongalg.jwks").write_text(json.dumps({"keys": [dict(jwk, kid="k",
                                                                      alg="RS256")]}))
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pki.rsa.public_key()))
    (tmp_path / "ps256.jwks").write_text(json.dumps({"keys": [dict(rsa_jwk, kid="r",
                                                                   alg="PS256")]}))
    return tmp_path


def issuer(**fields) -> dict:
    return {"name": "corp", "public_keys": ["corp.pub"], "algorithms": ["EdDSA"], **fields}


def _without(data: dict, key: str) -> dict:
    return {k: v for k, v in data.items() if k != key}


ISSUER_ERRORS = [
    ("name-missing", _without(issuer(), "name"), "name", "is required"),
    ("name-host-is-built-in", issuer(name="host"), "name", "'host' is built in"),
    ("name-upper-case", issuer(name="Corp"), "name", "not allowed"),
    ("name-int", issuer(name=5), "name", "must be str"),
    ("algorithms-missing", _without(issuer(), "algorithms"), "algorithms",
     "explicit allow-list"),
    ("algorithms-empty", issuer(algorithms=[]), "algorithms", "explicit allow-list"),
    ("algorithms-hs256", issuer(algorithms=["HS256"]), "algorithms", "'HS256' is not allowed"),
    ("algorithms-none", issuer(algorithms=["none"]), "algorithms", "'none' is not allowed"),
    ("algorithms-one-bad", issuer(algorithms=["EdDSA", "PS256"]), "algorithms",
     "'PS256' is not allowed"),
    ("algorithms-lower-case", issuer(algorithms=["eddsa"]), "algorithms", "not allowed"),
    ("algorithms-string", issuer(algorithms="EdDSA"), "algorithms", "must be list"),
    ("no-key-fits-algorithms", issuer(algorithms=["RS256"]), "algorithms",
     "none of the issuer's keys"),
    ("key-file-missing", issuer(public_keys=["missing.pub"]), "public_keys", "missing.pub"),
    ("key-file-garbage", issuer(public_keys=["garbage.pub"]), "public_keys", "garbage.pub"),
    ("rsa-too-small", issuer(public_keys=["rsa1024.pub"], algorithms=["RS256"]), "public_keys",
     "too small"),
    ("ec-p384", issuer(public_keys=["p384.pub"], algorithms=["ES256"]), "public_keys",
     "not supported"),
    ("no-key-at-all", _without(issuer(), "public_keys"), "public_keys", "no key"),
    ("jwks-private-key", issuer(public_keys=[], jwks="private.jwks"), "jwks", "private key"),
    ("jwks-no-kid", issuer(public_keys=[], jwks="nokid.jwks"), "jwks", "no kid"),
    ("jwks-not-json", issuer(public_keys=[], jwks="notjson.jwks"), "jwks", "notjson.jwks"),
    ("jwks-no-keys", issuer(public_keys=[], jwks="nokeys.jwks"), "jwks", "not a JWKS"),
    ("jwks-alg-of-other-key-type", issuer(public_keys=[], jwks="wrongalg.jwks"), "jwks",
     "keys[0] (k)"),
    ("jwks-alg-not-the-one-allowed", issuer(public_keys=[], jwks="ps256.jwks",
                                            algorithms=["RS256"]), "jwks", "does not fit"),
    ("jwks-missing", issuer(public_keys=[], jwks="missing.jwks"), "jwks", "missing.jwks"),
    ("unknown-key", issuer(comment="x"), "comment", "unknown key"),
    ("username-claim-int", issuer(username_claim=5), "username_claim", "must be str"),
]


@pytest.mark.parametrize("data,key,problem", [e[1:] for e in ISSUER_ERRORS],
                         ids=[e[0] for e in ISSUER_ERRORS])
def test_issuer_error_names_file_key_and_problem(data, key, problem, issuer_dir):
    path = issuer_dir / "corp.toml"
    with pytest.raises(ConfigError) as info:
        cfg.parse_issuer(path, data)
    assert_names(info.value, path, key, problem)


def test_issuer_from_pem_and_jwks(issuer_dir, pki):
    iss = cfg.parse_issuer(issuer_dir / "corp.toml",
                           issuer(public_keys=["corp.pub", "ec.pub"], jwks="good.jwks",
                                  algorithms=["EdDSA", "ES256"], username_claim="email"))
    assert iss.name == "corp" and iss.username_claim == "email"
    assert iss.algorithms == ("EdDSA", "ES256")
    corp_kid = thumbprint(pki.corp.public_key())
    assert [(k.kid, k.algorithm) for k in iss.keys] == [
        (corp_kid, "EdDSA"), (thumbprint(pki.ec.public_key()), "ES256"), ("k1", "EdDSA")]


def test_issuer_keeps_only_keys_of_allowed_algorithms(issuer_dir):
    iss = cfg.parse_issuer(issuer_dir / "corp.toml",
                           issuer(public_keys=["corp.pub", "ec.pub"], algorithms=["ES256"]))
    assert [k.algorithm for k in iss.keys] == ["ES256"]


# --- load: the whole configuration under a sandbox root ----------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def sandbox(tmp_path, pki) -> Paths:
    paths = Paths.for_root(tmp_path)
    write(paths.root / "etc/jit/keys/corp.pub", _pem(pki.corp).decode())
    return paths


CORP_ISSUER = 'name = "corp"\npublic_keys = ["/etc/jit/keys/corp.pub"]\nalgorithms = ["EdDSA"]\n'


def load_error(paths: Paths) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        cfg.load(paths)
    return info.value


def test_load_role_naming_unconfigured_issuer(sandbox):
    write(sandbox.config, '[roles.docker]\ngroups = ["docker"]\nissuers = ["corp", "host"]\n')
    assert_names(load_error(sandbox), sandbox.config, "roles.docker.issuers",
                 "'corp' is not configured")


def test_load_role_naming_configured_and_builtin_issuers(sandbox, pki):
    write(sandbox.config, '[roles.docker]\ngroups = ["docker"]\nissuers = ["corp", "host"]\n')
    write(sandbox.issuers_dir / "corp.toml", CORP_ISSUER)  # absolute key path, re-rooted
    generate_ed25519(sandbox.host_key)
    c = cfg.load(sandbox)
    assert sorted(c.issuers) == ["corp", "host"]
    assert c.issuers["corp"].keys[0].kid == thumbprint(pki.corp.public_key())
    assert c.issuers["host"].algorithms == ("EdDSA",)
    assert c.roles["docker"].issuers == ("corp", "host")


def test_load_without_host_key_still_accepts_host_in_roles(sandbox):
    write(sandbox.config, '[roles.docker]\ngroups = ["docker"]\nissuers = ["host"]\n')
    assert "host" not in cfg.load(sandbox).issuers


def test_load_issuer_defined_twice(sandbox):
    write(sandbox.issuers_dir / "a.toml", CORP_ISSUER)
    second = write(sandbox.issuers_dir / "b.toml", CORP_ISSUER)
    assert_names(load_error(sandbox), second, "name", "defined twice")


def test_load_reports_issuer_file_errors_with_their_path(sandbox):
    bad = write(sandbox.issuers_dir / "corp.toml", CORP_ISSUER + 'algorithm = "EdDSA"\n')
    assert_names(load_error(sandbox), bad, "algorithm", "unknown key")


def test_load_bad_toml(sandbox):
    write(sandbox.config, "[roles.docker\n")
    assert_names(load_error(sandbox), sandbox.config, "", "not valid TOML")


def test_load_bad_host_key(sandbox):
    write(sandbox.host_key, "not a key")
    assert_names(load_error(sandbox), sandbox.host_key, "", "bad host issuer key")


def test_load_missing_policy_is_empty(sandbox):
    c = cfg.load(sandbox)
    assert c.roles == {} and c.issuers == {}


def test_load_ignores_non_toml_files_in_issuers_d(sandbox):
    write(sandbox.issuers_dir / "corp.toml", CORP_ISSUER)
    write(sandbox.issuers_dir / "corp.toml.dpkg-old", "garbage [")
    assert list(cfg.load(sandbox).issuers) == ["corp"]


def test_host_key_private_pem_yields_its_public_half(sandbox):
    key = ed25519.Ed25519PrivateKey.generate()
    write(sandbox.host_key, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode())
    assert cfg.load(sandbox).issuers["host"].keys[0].kid == thumbprint(key.public_key())


# --- finding 2: a role naming a group twice ----------------------------------------------------


def test_role_naming_a_group_twice_is_refused():
    """Two rows for one (grant, group) clash in the store: every activation was `replayed`."""
    err = policy_error(role(groups=["docker", "adm", "docker"]))
    assert_names(err, POLICY, "roles.docker.groups", '"docker" listed twice')


def test_role_naming_distinct_groups_is_accepted():
    out = cfg.parse_policy(POLICY, role(groups=["docker", "adm"]))
    assert out["roles"]["docker"].groups == ("docker", "adm")


# --- finding 4: `$` accepted a trailing newline ------------------------------------------------

TRAILING_NEWLINE = [
    ("group", role(groups=["docker\n"]), "roles.docker.groups"),
    ("issuer", role(issuers=["corp\n"]), "roles.docker.issuers"),
    ("requester", role(requesters=["alice\n"], approvers=["%sre"], issuers=["host"]),
     "roles.docker.requesters"),
    ("approver", role(approvers=["%sre\n"]), "roles.docker.approvers"),
    ("runas", db_sudo(runas="root\n"), "roles.db.sudo[0].runas"),
    ("standing-member", {"standing": [{"members": ["root\n"]}]}, "standing[0].members"),
    ("login-member", {"login": {"require_grant": ["%contractors\n"]}}, "login.require_grant"),
    ("webhook", {"notify": {"webhook": "https://chat.example/hook\n"}}, "notify.webhook"),
    ("role-name", {"roles": {"docker\n": {}}}, "roles.docker\n"),
]


@pytest.mark.parametrize("data,key", [t[1:] for t in TRAILING_NEWLINE],
                         ids=[t[0] for t in TRAILING_NEWLINE])
def test_trailing_newline_is_refused(data, key):
    assert policy_error(data).key == key


def test_issuer_name_with_trailing_newline_is_refused(issuer_dir):
    path = issuer_dir / "corp.toml"
    with pytest.raises(ConfigError) as info:
        cfg.parse_issuer(path, issuer(name="corp\n"))
    assert_names(info.value, path, "name", "not allowed")


def test_user_name_pattern_refuses_a_trailing_newline():
    assert cfg.USER_NAME.fullmatch("alice\n") is None
    assert cfg.USER_NAME.fullmatch("alice;x") is None
    assert cfg.USER_NAME.fullmatch("alice") and cfg.USER_NAME.fullmatch("host$")


def test_no_pattern_is_matched_without_its_end():
    """Hardening finding 12: every name check in hostd is a fullmatch; `.match()` (which
    with `$` lets "alice\n" through) is left only to the duration tokenizer."""
    import ast
    from pathlib import Path

    calls = []
    for path in sorted(Path(cfg.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("match", "search")):
                calls.append(f"{path.name}:{node.lineno}")
    # ... and to the stream scanners, which check no names and use no `$`
    # (masking.py, termsafe.py: search/match at a position in terminal output).
    assert {c.split(":")[0] for c in calls} <= {"durations.py", "masking.py",
                                                "termsafe.py"}, calls
    assert "durations.py" in {c.split(":")[0] for c in calls}


# --- every documented setting parses --------------------------------------------------------

@pytest.mark.parametrize("data", [
    {}, role(), role(on_expiry="keep-sessions"), role(on_expiry="terminate-sessions"),
    role(login=False),
    {"requests": {"ttl": "1h"}}, {"notify": {"webhook": "https://x"}},
    {"daemon": {"leeway": "10s"}}, {"guardrails": [{"match": "x"}]},
    {"standing": [{"members": ["root"]}]}, {"sudo": {"approval_timeout": "5m"}}, db_sudo(),
    role(authenticate=True), role(login=True), {"login": {"require_grant": ["%sre"]}},
    {"masking": {"rules": []}}, role(record="always"), role(record_failure="continue"),
    role(record_input=True), {"recording": {"max_age": "30d", "max_total_size": "5G"}},
], ids=["empty", "plain-role", "keep-sessions", "terminate-sessions", "login-false",
        "requests", "notify", "daemon", "guardrails", "standing", "sudo-section", "role-sudo",
        "role-authenticate", "login-true", "login-section", "masking", "role-record",
        "role-record-failure", "role-record-input", "recording"])
def test_every_setting_parses_into_a_config(data):
    assert isinstance(cfg.Config(**cfg.parse_policy(POLICY, data)), cfg.Config)


def test_design_example_parses():
    assert cfg.parse_policy(POLICY, tomllib.loads(DESIGN_EXAMPLE))["roles"]


@pytest.mark.parametrize("data,key", [
    ({"recording": {"max_total_size": "lots"}}, "recording.max_total_size"),
    ({"recording": {"max_age": "forever"}}, "recording.max_age"),
    ({"recording": {"keep": "1d"}}, "recording.keep"),
    (role(record_input="yes"), "roles.docker.record_input"),
], ids=["size", "age", "unknown", "record-input-type"])
def test_recording_settings_are_checked(data, key):
    with pytest.raises(cfg.ConfigError) as err:
        cfg.parse_policy(POLICY, data)
    assert err.value.key == key


def test_recording_settings_parse():
    c = cfg.Config(**cfg.parse_policy(POLICY, {"recording": {"max_age": "30d",
                                                             "max_total_size": "512M"}}))
    assert (c.recording_max_age, c.recording_max_total_size) == (30 * 86400, 512 * 1024**2)
    assert cfg.Config(**cfg.parse_policy(POLICY, {})).recording_max_total_size == 10 * 1024**3
    unlimited = cfg.parse_policy(POLICY, {"recording": {"max_total_size": 0}})
    assert unlimited["recording_max_total_size"] == 0
    assert cfg.parse_policy(POLICY, role(record_input=True))["roles"]["docker"].record_input
