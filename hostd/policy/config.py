"""Host policy (`/etc/jit/jit.toml`) and trusted issuers (`/etc/jit/issuers.d/*.toml`).

Parsed with tomllib into frozen dataclasses. Every error names the file, the key and
what is wrong; unknown keys are errors (a typo must not silently drop a restriction).
The built-in issuer `host` is this host's own key, for grants hostd signs itself.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostd.errors import ConfigError
from hostd.masking import analysis as maskrules
from hostd.paths import Paths
from hostd.policy import moderation
from hostd.policy.durations import parse_size
from hostd.policy.idp import OidcIssuer, parse_oidc_issuer
from hostd.policy.revconfig import RevocationConfig, parse_revocation
from hostd.policy.sudorules import Rule, parse_rule
from hostd.policy.tables import NAME, USER_NAME
from hostd.policy.tables import Table as _Table
from hostd.policy.trust import check as check_trusted
from hostd.policy.trust import read_file

if TYPE_CHECKING:  # keys loads cryptography: only reading issuers needs it
    from hostd.policy.keys import PublicKey

MEMBER = re.compile(r"%?[a-z_][a-z0-9_.-]{0,31}\$?")
WEBHOOK = re.compile(r"https?://[^\s]+")
MAX_LEEWAY = 60
HOST_ISSUER = "host"
DEFAULT_MAX_TOTAL_SIZE = 10 * 1024**3  # [recording] max_total_size: 10G


@dataclass(frozen=True)
class SudoRule:
    """`runas` and its `commands` as written (sudo -l lists them, events name them),
    with each entry parsed once, here, into a sudorules.Rule (wildcards compiled)."""

    runas: str
    commands: tuple[str, ...]
    rules: tuple[Rule, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(parse_rule(c) for c in self.commands))


@dataclass(frozen=True)
class Role:
    name: str
    groups: tuple[str, ...] = ()
    max_ttl: int = 3600
    issuers: tuple[str, ...] = ()
    requesters: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approvals: int = 1
    on_expiry: str = "terminate-sessions"
    login: bool = False
    sudo: tuple[SudoRule, ...] = ()
    authenticate: bool = True  # sudo asks for the password, as sudoers does by default
    record: str = "interactive"
    record_failure: str = "terminate"
    record_input: bool = False  # keystrokes recorded too (masked); off: passwords typed
    max_lead_time: int = 7 * 86400  # how far ahead a grant may start (scheduled, pending)
    moderation: moderation.Moderation | None = None  # issue 23 (policy/moderation.py)


@dataclass(frozen=True)
class Guardrail:
    """A `deny` or `approve` guardrail in one of two forms: `match`, a regex searched
    in the command line, or `program` (an absolute path, compared by the file it
    resolves to, or `sudoedit` for sudo -e and its files) with `args`, regexes that
    must each be found in some argument."""

    action: str
    match: re.Pattern | None
    message: str
    program: str = ""
    args: tuple[re.Pattern, ...] = ()

    def describe(self) -> str:
        """How sudo -l, check-config and events name it (raw: callers escape)."""
        if self.match is not None:
            return f"{self.action} match {self.match.pattern!r}"
        args = "".join(f" {a.pattern!r}" for a in self.args)
        return f"{self.action} program {self.program}" + (f" args{args}" if args else "")


@dataclass(frozen=True)
class Standing:
    members: tuple[str, ...]
    sudo: tuple[SudoRule, ...]


@dataclass(frozen=True)
class Issuer:
    name: str
    keys: tuple[PublicKey, ...]
    algorithms: tuple[str, ...]
    username_claim: str = "sub"
    revocation: RevocationConfig | None = None  # its [revocation] table (revconfig.py)


@dataclass(frozen=True)
class Config:
    roles: dict[str, Role] = field(default_factory=dict)
    issuers: dict[str, Issuer] = field(default_factory=dict)
    oidc: dict[str, OidcIssuer] = field(default_factory=dict)  # type = "oidc" (idp.py)
    guardrails: tuple[Guardrail, ...] = ()
    standing: tuple[Standing, ...] = ()
    login_require_grant: tuple[str, ...] = ()
    login_when_unreachable: str = "allow"
    request_ttl: int = 3600
    sudo_approval_timeout: int = 300
    notify_webhook: str = ""
    masking: tuple[tuple[str, re.Pattern], ...] = ()
    masking_fields: tuple[str, ...] = ()     # field names added to the built-in family
    masking_optional: tuple[str, ...] = ()   # opt-in rule sets: "email", "card"
    masking_hold: float = 1.0                # seconds a secret still forming is held
    leeway: int = 30
    sweep_interval: int = 30
    recording_max_age: int = 0  # seconds; 0: recordings are not removed for their age
    recording_max_total_size: int = DEFAULT_MAX_TOTAL_SIZE  # bytes; 0: no limit


def _masking_extras(masking: _Table) -> dict:
    """[masking] fields, optional and hold (hostd.masking.rules)."""
    from hostd.masking import rules as rules_mod
    fields = masking.strings("fields", unique=True)
    try:
        rules_mod.check_field_names(fields)
    except rules_mod.FieldNameError as exc:
        raise masking.fail("fields", str(exc)) from None
    optional = masking.strings("optional", unique=True)
    for name in optional:
        if name not in rules_mod.OPTIONAL:
            raise masking.fail("optional", f"{name!r} is not one of "
                               f"{', '.join(rules_mod.OPTIONAL)}")
    hold = masking.get("hold", (int, float), 1.0)
    if isinstance(hold, bool) or not 0 <= hold <= 10:
        raise masking.fail("hold", "must be seconds from 0 to 10")
    return {"masking_fields": fields, "masking_optional": optional,
            "masking_hold": float(hold)}


def _sudo_rules(table: _Table) -> tuple[SudoRule, ...]:
    rules = []
    for i, item in enumerate(table.get("sudo", list, [])):
        t = _Table(table.path, f"{table.key('sudo')}[{i}]", item)
        runas = t.get("runas", str, "root")
        if not USER_NAME.fullmatch(runas):
            raise t.fail("runas", f"{runas!r} is not a user name")
        commands = t.strings("commands")
        if not commands:
            raise t.fail("commands", "must name at least one command")
        for c in commands:
            if c != "ALL" and not c.startswith(("/", "sudoedit /")):
                raise t.fail("commands", f"{c!r} must be an absolute path, "
                                         "sudoedit /FILE or ALL")
        t.finish()
        rules.append(SudoRule(runas, commands))
    return tuple(rules)


def _role(path: Path, name: str, data: Any) -> Role:
    if not NAME.fullmatch(name):
        raise ConfigError(str(path), f"roles.{name}", "role names are [a-z0-9_.-], at most 64")
    t = _Table(path, f"roles.{name}", data)
    approvals = t.get("approvals", int, 1)
    if not 0 <= approvals <= 10:
        raise t.fail("approvals", "must be between 0 and 10")
    role = Role(
        name=name,
        # unique: one grant holds a group once (a second row would clash as `replayed`)
        groups=t.strings("groups", NAME, "group name", unique=True),
        max_ttl=t.duration("max_ttl", 3600),
        issuers=t.strings("issuers", NAME, "issuer name"),
        requesters=t.strings("requesters", MEMBER, "user or %group"),
        approvers=t.strings("approvers", MEMBER, "user or %group"),
        approvals=approvals,
        on_expiry=t.choice("on_expiry", ("terminate-sessions", "keep-sessions"),
                           "terminate-sessions"),
        login=t.get("login", bool, False),
        sudo=_sudo_rules(t),
        authenticate=t.get("authenticate", bool, True),
        record=t.choice("record", ("always", "interactive", "never"), "interactive"),
        record_failure=t.choice("record_failure", ("terminate", "continue"), "terminate"),
        record_input=t.get("record_input", bool, False),
        max_lead_time=t.duration("max_lead_time", 7 * 86400),
        moderation=None if t.get("moderation", dict) is None else moderation.parse(
            _Table(path, t.key("moderation"), t.data["moderation"])),
    )
    t.finish()
    if role.moderation and (role.record != "always" or role.record_failure != "terminate"):
        raise t.fail("moderation", 'needs record = "always", record_failure = "terminate"')
    if approvals > 0 and role.requesters and not role.approvers:
        raise t.fail("approvers", f"approvals = {approvals} needs approvers")
    if role.requesters and HOST_ISSUER not in role.issuers:
        raise t.fail("issuers", f"must include {HOST_ISSUER!r}: requests are granted by this "
                                "host's own key")
    return role


def parse_policy(path: Path, data: dict) -> dict[str, Any]:
    """The host policy's sections as keyword arguments of Config (issuers excluded)."""
    top = _Table(path, "", data)
    out: dict[str, Any] = {}
    roles = top.get("roles", dict, {})
    out["roles"] = {name: _role(path, name, body) for name, body in roles.items()}
    out["guardrails"] = _guardrails(top)
    out["standing"] = tuple(
        _standing(_Table(path, f"standing[{i}]", item))
        for i, item in enumerate(top.get("standing", list, [])))
    for section, read in _SECTIONS:
        table = _Table(path, section, top.get(section, dict, {}))
        out.update(read(table))
        table.finish()
    top.finish()
    return out


def _guardrails(top: _Table) -> tuple[Guardrail, ...]:
    guardrails = []
    for i, item in enumerate(top.get("guardrails", list, [])):
        t = _Table(top.path, f"guardrails[{i}]", item)
        guardrails.append(_guardrail(t))
        t.finish()
    return tuple(guardrails)


def _guardrail(t: _Table) -> Guardrail:
    """`match` alone, or `program` with optional `args` (never both forms)."""
    action = t.choice("action", ("deny", "approve"), "deny")
    message = t.get("message", str, "")
    program = t.get("program", str, "")
    if "match" in t.data:
        if program or "args" in t.data:
            raise t.fail("match", "give either match or program/args, not both")
        return Guardrail(action, t.regex("match"), message)
    if not program:
        raise t.fail("match", "is required (or program, with args)")
    if program.rsplit("/", 1)[-1] == "sudoedit":
        program = "sudoedit"  # sudoers' pseudo-command; a leading path is dropped
    elif not program.startswith("/") or "\0" in program:
        raise t.fail("program", "must be an absolute path or sudoedit")
    args = []
    for i, text in enumerate(t.get("args", list, [])):
        if not isinstance(text, str):
            raise t.fail("args", f"entry {i} must be a string")
        try:
            args.append(re.compile(text))
        except re.error as exc:
            raise t.fail("args", f"entry {i}: bad regular expression: {exc}") from None
    return Guardrail(action, None, message, program, tuple(args))


def _standing(t: _Table) -> Standing:
    entry = Standing(t.strings("members", MEMBER, "user or %group"), _sudo_rules(t))
    t.finish()
    return entry


def _login(t: _Table) -> dict[str, Any]:
    return {"login_require_grant": t.strings("require_grant", MEMBER, "user or %group"),
            "login_when_unreachable": t.choice("when_unreachable", ("allow", "deny"), "allow")}


def _requests(t: _Table) -> dict[str, Any]:
    return {"request_ttl": t.duration("ttl", 3600)}


def _sudo(t: _Table) -> dict[str, Any]:
    return {"sudo_approval_timeout": t.duration("approval_timeout", 300)}


def _notify(t: _Table) -> dict[str, Any]:
    webhook = t.get("webhook", str, "")
    if webhook and not WEBHOOK.fullmatch(webhook):
        raise t.fail("webhook", "must be an http:// or https:// URL")
    return {"notify_webhook": webhook}


def _masking(masking: _Table) -> dict[str, Any]:
    rules = []
    for i, item in enumerate(masking.get("rules", list, [])):
        t = _Table(masking.path, f"masking.rules[{i}]", item)
        name, regex = t.get("name", str, required=True), t.regex("regex")
        try:  # streamable: bounded reach, no empty match, no exponential backtracking
            maskrules.check_rule(name, regex)
        except maskrules.MaskingRuleError as exc:
            raise t.fail("regex", str(exc)) from None
        rules.append((name, regex))
        t.finish()
    out: dict[str, Any] = {"masking": tuple(rules)}
    out.update(_masking_extras(masking))
    return out


def _recording(recording: _Table) -> dict[str, Any]:
    out: dict[str, Any] = {"recording_max_age": recording.duration("max_age", 0)}
    size = recording.get("max_total_size", (str, int), None)
    if size is None:
        out["recording_max_total_size"] = DEFAULT_MAX_TOTAL_SIZE
    elif size in (0, "0"):  # no limit
        out["recording_max_total_size"] = 0
    else:
        try:
            out["recording_max_total_size"] = parse_size(str(size))
        except ValueError as exc:
            raise recording.fail("max_total_size", str(exc)) from None
    return out


def _daemon(daemon: _Table) -> dict[str, Any]:
    if daemon.data.get("leeway") in ("0", "0s"):  # no clock skew tolerated at all
        daemon.used.add("leeway")
        leeway = 0
    else:
        leeway = daemon.duration("leeway", 30)
    if leeway > MAX_LEEWAY:
        raise daemon.fail("leeway", f"at most {MAX_LEEWAY}s")
    return {"leeway": leeway, "sweep_interval": daemon.duration("sweep_interval", 30)}


# The single-table sections, in the order they were always read (the first error wins).
_SECTIONS: tuple[tuple[str, Callable[[_Table], dict[str, Any]]], ...] = (
    ("login", _login), ("requests", _requests), ("sudo", _sudo), ("notify", _notify),
    ("masking", _masking), ("recording", _recording), ("daemon", _daemon),
)


def parse_issuer(path: Path, data: dict, root: Path | None = None,
                 trusted_from: Path | None = None) -> Issuer | OidcIssuer:
    """One issuer file (`type = "oidc"`: an identity provider, hostd/policy/idp.py);
    `root` re-roots absolute key paths inside a sandbox. load() gives `trusted_from`
    (`/` or the sandbox root): key files must then be root's alone."""
    from hostd.policy.keys import SUPPORTED_ALGORITHMS, load_jwks, load_pem_public

    t = _Table(path, "", data)
    if t.choice("type", ("key", "oidc"), "key") == "oidc":  # an identity provider
        return parse_oidc_issuer(path, data)
    name = t.get("name", str, required=True)
    if not NAME.fullmatch(name) or name == HOST_ISSUER:
        raise t.fail("name", f"{name!r} is not allowed (lowercase [a-z0-9_.-]; 'host' is built in)")
    algorithms = t.strings("algorithms")
    if not algorithms:
        raise t.fail("algorithms", "an explicit allow-list is required (EdDSA, ES256, RS256)")
    for alg in algorithms:
        if alg not in SUPPORTED_ALGORITHMS:
            raise t.fail("algorithms", f"{alg!r} is not allowed (EdDSA, ES256, RS256 only)")
    keys: list[PublicKey] = []
    base = path.parent
    for entry in t.strings("public_keys"):
        key_path = (base / entry) if not entry.startswith("/") else Path(entry)
        try:
            keys.append(load_pem_public(_rooted(root, key_path), trusted_from))
        except (OSError, ValueError) as exc:
            raise t.fail("public_keys", f"{entry}: {exc}") from None
    jwks = t.get("jwks", str)
    if jwks:
        try:
            jwks_path = Path(jwks) if jwks.startswith("/") else base / jwks
            keys.extend(load_jwks(_rooted(root, jwks_path), trusted_from))
        except (OSError, ValueError) as exc:
            raise t.fail("jwks", f"{jwks}: {exc}") from None
    if not keys:
        raise t.fail("public_keys", "no key: give public_keys or jwks")
    usable = [k for k in keys if k.algorithm in algorithms]
    if not usable:
        raise t.fail("algorithms", "none of the issuer's keys fits the allowed algorithms")
    claim = t.get("username_claim", str, "sub")
    revocation = parse_revocation(path, t.get("revocation", dict), root)
    t.finish()
    return Issuer(name, tuple(usable), tuple(algorithms), claim, revocation)


def _rooted(root: Path | None, key_path: Path) -> Path:
    """Absolute key paths in a sandbox's issuer files are under the sandbox root."""
    if root is None or not key_path.is_absolute() or key_path.is_relative_to(root):
        return key_path
    return root / str(key_path).lstrip("/")


def _read_toml(path: Path, trusted_from: Path) -> dict:
    """A trusted regular file's TOML (trust.read_file: root's alone, never blocks)."""
    try:
        return tomllib.loads(read_file(path, trusted_from).decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None


def _trusted_path(path: Path, trusted_from: Path) -> None:
    """A trust path not read here: issuers.d (whoever can write it adds an issuer), the
    host's private key (whoever can replace it has hostd sign with their key)."""
    try:
        check_trusted(path, trusted_from)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None


def load(paths: Paths) -> Config:
    """Read and check the whole configuration; ConfigError on the first problem.
    Trust files are checked from `/` down, or from the sandbox root under --root."""
    top = paths.root
    data = _read_toml(paths.config, top) if paths.config.exists() else {}
    kwargs = parse_policy(paths.config, data)
    issuers: dict[str, Issuer] = {}
    oidc: dict[str, OidcIssuer] = {}
    if paths.issuers_dir.is_dir():
        _trusted_path(paths.issuers_dir, top)
        for file in sorted(paths.issuers_dir.glob("*.toml")):
            root = paths.root if paths.sandboxed else None
            issuer = parse_issuer(file, _read_toml(file, top), root, top)
            if issuer.name in issuers or issuer.name in oidc:
                raise ConfigError(str(file), "name", f"issuer {issuer.name!r} defined twice")
            (oidc if isinstance(issuer, OidcIssuer) else issuers)[issuer.name] = issuer
    if paths.host_key.exists():  # hostd signs with it and writes the .pub from it
        _trusted_path(paths.host_key, top)
    host_pub = paths.host_key_pub if paths.host_key_pub.exists() else paths.host_key
    if host_pub.exists():
        from hostd.policy.keys import load_pem_public

        try:
            host_key = load_pem_public(host_pub, top)
            issuers[HOST_ISSUER] = Issuer(HOST_ISSUER, (host_key,), ("EdDSA",), "sub")
        except PermissionError:
            pass  # a user without the public half: host grants are hostd's to verify
        except (OSError, ValueError) as exc:
            raise ConfigError(str(host_pub), "", f"bad host issuer key: {exc}") from None
    for role in kwargs["roles"].values():
        for name in role.issuers:
            if name not in issuers and name not in oidc and name != HOST_ISSUER:
                raise ConfigError(str(paths.config), f"roles.{role.name}.issuers",
                                  f"issuer {name!r} is not configured in issuers.d")
    return Config(issuers=issuers, oidc=oidc, **kwargs)
