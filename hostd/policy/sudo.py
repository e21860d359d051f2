"""sudo decisions: what `sudo.check` answers, as sudoers(5) would on Debian 12.

`decide` is a pure function of (request, policy, live grants, the user's groups, the
runas account, clock, host name, an executable test): no sockets, no subprocess, no
NSS, no clock reads. The caller looks everything up and passes it in; that keeps every
decision reproducible from the event that records it.

Checks, in order; each refusal comes from exactly one of them:

- `bad_request`: the request does not hold together (empty argv, relative cwd, a runas
  account other than the one sudo asked for, sudoedit without files).
- `option_not_allowed`: an option sudoers only honours with a tag jitaccess has no way
  to give (-E, VAR=value, -P, -R, -D, -T, -C, -r, -t, -c).
- `runas_not_allowed`: sudo -u names no known account; `-g GROUP` other than the runas
  user's own primary group (rules have no runas group); or rules exist for the user,
  none for that runas user (checked after the guardrails, like no_grant).
- `command_not_found`: argv[0] (or the sudoedit editor) is no executable file, searched
  through secure_path when it has no slash.
- `guardrail_denied`: a `deny` guardrail matches the resolved command line. Denials are
  checked before any rule, so no grant can outrank them.
- `no_grant`: no active, unexpired grant of a role with `sudo` rules, and no
  `[[standing]]` entry naming the user or one of their groups.
- `no_rule`: rules for that runas user exist, none allows this command.
- `needs_approval` (result `pending`, not a refusal): the command is allowed but an
  `approve` guardrail matches; the decision names the guardrail, the role whose
  approvers decide (None for a standing rule) and the subject to bind the approval to.

On allow the decision carries sudo's `command_info`, `argv_out` and `user_env_out`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from hostd.errors import JitError
from hostd.events import escape
from hostd.policy.approvals import command_subject, in_members
from hostd.policy.config import Config, SudoRule
from hostd.policy.liveness import is_live

# Debian 12's /etc/sudoers and sudo 1.9.13's compiled-in lists (`sudo -V` as root).
SECURE_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
ENV_KEEP = ("COLORS", "DISPLAY", "DPKG_COLORS", "HOSTNAME", "KRB5CCNAME", "LS_COLORS",
            "PS1", "PS2", "XAUTHORITY", "XAUTHORIZATION", "XDG_CURRENT_DESKTOP")
ENV_CHECK = ("COLORTERM", "LANG", "LANGUAGE", "LC_*", "LINGUAS", "TERM", "TZ")
DEFAULT_UMASK = 0o022
CLOSEFROM = 3
MAIL_DIR = "/var/mail"
ZONEINFO = "/usr/share/zoneinfo/"
PATH_MAX = 4096
DEFAULT_EDITOR = "/usr/bin/editor"  # Debian builds sudo --with-editor=/usr/bin/editor
EDITOR_VARS = ("SUDO_EDITOR", "VISUAL", "EDITOR")  # --with-env-editor: the user's choice

# settings sudoers refuses without a tag (SETENV, CWD=, CHROOT=, ...) we cannot express
REFUSED_SETTINGS = {
    "preserve_environment": "-E (preserve the environment)",
    "preserve_groups": "-P (preserve the group vector)",
    "cmnd_chroot": "-R (change the root directory)",
    "cmnd_cwd": "-D (set the working directory)",
    "timeout": "-T (command timeout)",
    "closefrom": "-C (close descriptors from)",
    "selinux_role": "-r (SELinux role)",
    "selinux_type": "-t (SELinux type)",
    "login_class": "-c (login class)",
}
_TRUE = ("true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")

Which = Callable[[str], "str | None"]


def _bad(message: str) -> JitError:
    return JitError("bad_request", message)


def parse_kv(entries: object, what: str = "list") -> dict[str, str]:
    """sudo's `name=value` vectors as a dict, split on the first `=` as sudo_plugin(5)
    says. Refused: non-strings, no `=`, an empty name, NUL, and a name given twice
    (which of two PATHs a program reads is the program's choice, not ours)."""
    if not isinstance(entries, list):
        raise _bad(f"{what} must be a list of name=value strings")
    out: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, str) or "\0" in entry:
            raise _bad(f"{what}: entries must be strings without NUL")
        name, sep, value = entry.partition("=")
        if not sep or not name:
            raise _bad(f"{what}: {escape(entry)[:80]!r} is not name=value")
        if name in out:
            raise _bad(f"{what}: {escape(name)[:80]} given twice")
        out[name] = value
    return out


def _bool(settings: dict[str, str], name: str) -> bool:
    value = settings.get(name, "false").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _bad(f"settings: {name} must be true or false")


def _int(info: dict[str, str], name: str, base: int = 10, top: int = 2**32 - 1) -> int:
    try:
        value = int(info[name], base)
    except KeyError:
        raise _bad(f"user_info: {name} is required") from None
    except ValueError:
        raise _bad(f"user_info: {name} is not a number") from None
    if not 0 <= value <= top:
        raise _bad(f"user_info: {name} is out of range")
    return value


@dataclass(frozen=True)
class SudoRequest:
    """What the shim passes: settings, user_info, argv, user_env and env_add, parsed."""

    user: str
    uid: int
    gid: int
    cwd: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    tty: str = ""
    host: str = ""
    umask: int = DEFAULT_UMASK
    runas_user: str = "root"  # name or #uid, as sudo -u gave it
    runas_group: str = ""
    login_shell: bool = False
    run_shell: bool = False
    sudoedit: bool = False
    refused: tuple[str, ...] = ()  # options given that sudoers would need a tag for
    intercepted: bool = False  # a program the sudo session started (intercept=true)
    pid: str = ""  # sudo's own pid and its parent's: wrong passwords count per sudo,
    ppid: str = ""  # timestamps fall back to the parent without a tty (as sudoers)
    noninteractive: bool = False  # sudo -n: never prompt, never wait

    @classmethod
    def from_wire(cls, settings: object, user_info: object, argv: object, env: object,
                  env_add: object = None, intercepted: bool = False) -> SudoRequest:
        """Parse the shim's vectors; JitError `bad_request` on anything malformed.
        `intercepted` is the shim's: a check after the first one in a session. As
        sudoers' MODE_INTERCEPT_MASK does, the invocation's shell, sudoedit and option
        flags then no longer apply: the program is checked as the command it is."""
        s = parse_kv(settings, "settings")
        info = parse_kv(user_info, "user_info")
        user_env = parse_kv(env, "env")
        added = parse_kv(env_add if env_add is not None else [], "env_add")
        if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a
                                                 for a in argv):
            raise _bad("argv must be a list of strings without NUL")
        refused = [flag for name, flag in REFUSED_SETTINGS.items()
                   if name in s and (s[name] and s[name].lower() not in _FALSE)]
        if added:
            refused.append("VAR=value (set environment variables)")
        if "user" not in info:
            raise _bad("user_info: user is required")
        flags = {f: _bool(s, f) and not intercepted
                 for f in ("login_shell", "run_shell", "sudoedit")}
        return cls(
            user=info["user"], uid=_int(info, "uid"), gid=_int(info, "gid"),
            cwd=info.get("cwd", ""), argv=tuple(argv), env=user_env,
            tty=info.get("tty", ""), host=info.get("host", ""),
            umask=_int(info, "umask", 8, 0o777) if "umask" in info else DEFAULT_UMASK,
            runas_user=s.get("runas_user") or "root", runas_group=s.get("runas_group", ""),
            refused=() if intercepted else tuple(refused), intercepted=intercepted,
            pid=info.get("pid", ""), ppid=info.get("ppid", ""),
            noninteractive=_bool(s, "noninteractive"), **flags,
        )


@dataclass(frozen=True)
class RunasUser:
    """The target account, looked up by the caller (NSS): sudo -u NAME or #UID."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str
    groups: tuple[int, ...] = ()  # supplementary group ids, for runas_groups
    group: str = ""  # the primary group's name, for sudo -g


@dataclass(frozen=True)
class Rule:
    """One `commands` entry of a sudo rule, parsed as sudoers reads a Cmnd."""

    text: str
    kind: str  # "all", "command", "sudoedit", "regex" (not supported: never matches)
    path: str = ""
    args: str | None = None  # None: any arguments
    no_args: bool = False  # `""`: no arguments at all


@dataclass(frozen=True)
class Source:
    """What allowed it, for the event: a grant (id, role) or a standing entry (index)."""

    kind: str  # "grant" or "standing"
    runas: str
    command: str  # the rule's text
    grant_id: str = ""
    role: str = ""
    standing: int = -1


@dataclass(frozen=True)
class Resolved:
    """The command as matched and as run: sudoedit keeps `sudoedit FILES` for matching."""

    path: str  # the absolute command, or "sudoedit"
    args: tuple[str, ...]
    run: str  # command_info's command=
    argv_out: tuple[str, ...]

    @property
    def argv(self) -> list[str]:
        return [self.path, *self.args]

    @property
    def line(self) -> str:
        return " ".join(self.argv)


@dataclass(frozen=True)
class Decision:
    """The answer to the shim: on allow, command_info/argv/env are sudo's
    command_info, argv_out and user_env_out; on pending, guardrail, approval_role and
    subject are what the caller needs to create the command approval."""

    result: str  # "allow", "deny", "pending"
    code: str  # "allowed", a refusal code, or "needs_approval"
    message: str = ""
    command: str = ""  # the resolved command line, escaped (for messages)
    source: Source | None = None
    needs_password: bool = False
    command_info: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    guardrail: int = -1  # index in config.guardrails
    approval_role: str | None = None
    subject: dict | None = None
    line: str = ""  # the resolved command line, raw: events escape it themselves

    @property
    def allowed(self) -> bool:
        return self.result == "allow"


def _deny(code: str, message: str, command: str = "") -> Decision:
    return Decision("deny", code, message, command)


# rules and matching ------------------------------------------------------------------------

_CLASSES = {"alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z",
            "lower": "a-z", "space": r" \t\n\r\f\v", "blank": r" \t", "xdigit": "0-9A-Fa-f",
            "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")}


def _bracket(pattern: str, i: int) -> tuple[str, bool, int] | None:
    """A `[...]` expression starting after `[`: (class body, negated, next index), or
    None when it does not close (then `[` is literal, as in fnmatch(3))."""
    j, n, items = i, len(pattern), []
    negated = j < n and pattern[j] in "!^"
    j += negated
    first = True
    while j < n:
        c = pattern[j]
        if c == "]" and not first:
            return "".join(items), negated, j + 1
        first = False
        if pattern.startswith("[:", j):
            end = pattern.find(":]", j + 2)
            if end < 0 or pattern[j + 2:end] not in _CLASSES:
                return None
            items.append(_CLASSES[pattern[j + 2:end]])
            j = end + 2
        elif c == "\\" and j + 1 < n:
            items.append(re.escape(pattern[j + 1]))
            j += 2
        elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            items.append(f"{re.escape(c)}-{re.escape(pattern[j + 2])}")
            j += 3
        else:
            items.append(re.escape(c))
            j += 1
    return None


def glob_regex(pattern: str, pathname: bool = False) -> re.Pattern | None:
    """POSIX fnmatch(3) as a regex to fullmatch: `*`, `?`, `[...]`, `[!...]`, `\\x`.
    Python's fnmatch has no backslash escapes, so sudoers' `\\*` would not be literal.
    `pathname` is FNM_PATHNAME: nothing matches `/` (command paths, sudoedit files).
    None when the pattern is no valid expression (a rule that never matches)."""
    one = "[^/]" if pathname else "."
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(one + "*")
        elif c == "?":
            out.append(one)
        elif c == "\\" and i < n:
            out.append(re.escape(pattern[i]))
            i += 1
        elif c == "[" and (parsed := _bracket(pattern, i)) is not None:
            body, negated, i = parsed
            if negated:
                out.append(f"[^{'/' if pathname else ''}{body}]")
            else:
                out.append(f"{'(?!/)' if pathname else ''}[{body}]")
        else:
            out.append(re.escape(c))
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:  # e.g. a reversed range [z-a]
        return None


def fnmatch(pattern: str, text: str, pathname: bool = False) -> bool:
    regex = glob_regex(pattern, pathname)
    return regex is not None and regex.fullmatch(text) is not None


def parse_rule(text: str) -> Rule:
    """`ALL`, `/path`, `/path args`, `/path ""`, `sudoedit [files]` (a leading path on
    sudoedit is dropped, as sudoers does). Arguments are one string, words joined by
    one space, matched against the user's arguments joined the same way."""
    words = text.split()
    if words == ["ALL"]:
        return Rule(text, "all")
    head, rest = (words[0], words[1:]) if words else ("", [])
    if _is_regex(head) or (rest and _is_regex(" ".join(rest))):
        return Rule(text, "regex", head)
    kind = "sudoedit" if head.rsplit("/", 1)[-1] == "sudoedit" else "command"
    if rest == ['""']:
        return Rule(text, kind, head, None, no_args=True)
    return Rule(text, kind, head, " ".join(rest) if rest else None)


def _is_regex(part: str) -> bool:
    return part.startswith("^") and part.endswith("$")


def rule_problem(text: str) -> str | None:
    """Why a `commands` entry can never match here, for `jit check-config` to warn:
    sudoers' regular expressions (`^...$`, sudo 1.9.10) are POSIX ERE, which Python's
    re only resembles, so such rules are refused rather than matched differently."""
    rule = parse_rule(text)
    if rule.kind == "regex":
        return "regular expressions (^...$) are not supported; use shell wildcards"
    if rule.kind != "all" and rule.args is not None and glob_regex(
            rule.args, rule.kind == "sudoedit") is None:
        return "the argument pattern is not a valid wildcard expression"
    return None


def _path_matches(rule_path: str, path: str) -> bool:
    """Exact, a directory (`/usr/bin/`: files directly in it), or a glob whose
    wildcards never match `/` (sudoers: `/usr/bin/*` is not `/usr/bin/X11/xterm`)."""
    if not rule_path.startswith("/"):
        return False
    if rule_path.endswith("/"):
        return posixpath.dirname(path) + "/" == rule_path
    if any(ch in rule_path for ch in "*?["):
        return fnmatch(rule_path, path, pathname=True)
    return rule_path == path


def rule_matches(rule: Rule, cmd: Resolved) -> bool:
    """sudoers' command matching for one Cmnd: ALL matches everything, sudoedit too."""
    if rule.kind == "all":
        return True
    if rule.kind == "regex":
        return False
    if (rule.kind == "sudoedit") != (cmd.path == "sudoedit"):
        return False
    if rule.kind == "command" and not _path_matches(rule.path, cmd.path):
        return False
    if rule.no_args:
        return not cmd.args
    if rule.args is None:
        return True
    return fnmatch(rule.args, " ".join(cmd.args), pathname=rule.kind == "sudoedit")


# resolution --------------------------------------------------------------------------------

def _normal(path: str) -> str:
    """Lexically normal absolute path (`//x`, `a/./b`, `a/../b`): what is matched is
    what is run, so a path spelled oddly cannot match one rule and run another file."""
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/")


def _absolute(name: str, cwd: str) -> str:
    return _normal(name if name.startswith("/") else posixpath.join(cwd, name))


def resolve(name: str, cwd: str, which: Which) -> str | None:
    """sudoers' find_path with secure_path: a name with a slash is taken as it is
    (relative to the user's cwd), one without is searched for in SECURE_PATH; never
    in the user's PATH or cwd. `which(abs_path)` is truthy if an executable file is
    there (shutil.which is); what it returns is not used, so a caller's which that
    canonicalises cannot change what is matched and run."""
    if not name:
        return None
    candidates = [_absolute(name, cwd)] if "/" in name else [f"{d}/{name}" for d in SECURE_PATH]
    return next((c for c in candidates if which(c)), None)


def _editor(env: dict[str, str], cwd: str, which: Which) -> list[str] | None:
    """sudoedit's editor: SUDO_EDITOR, VISUAL, EDITOR (it runs as the user, so theirs
    is fine), else Debian's /usr/bin/editor; one holding `--` is skipped, as sudoers
    does, since `--` separates the editor from the files."""
    for var in EDITOR_VARS:
        words = env.get(var, "").split()
        if words and "--" not in words and not words[0].startswith("()"):
            path = resolve(words[0], cwd, which)
            if path:
                return [path, *words[1:]]
    return [DEFAULT_EDITOR] if which(DEFAULT_EDITOR) else None


def resolve_request(req: SudoRequest, runas: RunasUser, which: Which) -> Resolved | Decision:
    """The command to match and to run, or the refusal (`command_not_found`,
    `bad_request`). -i runs the runas user's shell as a login shell (`-bash`)."""
    if req.sudoedit:
        files = tuple(_absolute(f, req.cwd) for f in req.argv[1:] if f)
        if not files or len(files) != len(req.argv) - 1:
            return _deny("bad_request", "sudoedit needs file names")
        editor = _editor(req.env, req.cwd, which)
        if editor is None:
            return _deny("command_not_found", "no editor found for sudoedit")
        return Resolved("sudoedit", files, editor[0], (*editor, "--", *files))
    if req.login_shell:
        shell = resolve(runas.shell, "/", which) if runas.shell.startswith("/") else None
        if shell is None:
            return _deny("command_not_found",
                         f"the login shell of {escape(runas.name)} is not executable")
        login_name = "-" + posixpath.basename(shell)
        args = req.argv[1:]
        # sudoers: newer bash wants --login with -c even when named "-bash"
        extra = ("--login",) if login_name == "-bash" and args[:1] == ("-c",) else ()
        return Resolved(shell, args, shell, (login_name, *extra, *args))
    path = resolve(req.argv[0], req.cwd, which)
    if path is None:
        return _deny("command_not_found", f"{escape(req.argv[0])}: command not found")
    return Resolved(path, req.argv[1:], path, req.argv)


# grants and standing rules -----------------------------------------------------------------

def _live(grant: dict, user: str, now: int) -> bool:
    return grant.get("user", user) == user and is_live(grant, now)


def sources(config: Config, grants: Iterable[dict], user: str, user_groups: set[str],
            now: int) -> list[tuple[Source, SudoRule, bool]]:
    """Every sudo rule the user holds now: (source, rule, needs_password), grants first
    (in the order given), then standing entries in file order."""
    out: list[tuple[Source, SudoRule, bool]] = []
    for grant in grants:
        role = config.roles.get(grant.get("role", ""))
        if role is None or not _live(grant, user, now):
            continue
        for rule in role.sudo:
            for text in rule.commands:
                out.append((Source("grant", rule.runas, text, str(grant.get("id", "")),
                                   role.name), rule, role.authenticate))
    for index, entry in enumerate(config.standing):
        if in_members(entry.members, user, user_groups):
            for rule in entry.sudo:
                for text in rule.commands:
                    # no setting for standing entries: sudoers' default, authenticate
                    out.append((Source("standing", rule.runas, text, standing=index),
                                rule, True))
    return out


# the environment ---------------------------------------------------------------------------

def _listed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith("*") and name.startswith(p[:-1])) for p in patterns)


def _safe_tz(value: str) -> bool:
    """sudoers' TZ check: a zoneinfo path only, no `..`, no blanks or controls."""
    tz = value[1:] if value.startswith(":") else value
    if tz.startswith("/") and not tz.startswith(ZONEINFO):
        return False
    return (".." not in tz.split("/") and len(value) < PATH_MAX
            and all(ch.isprintable() and not ch.isspace() for ch in value))


def _safe(name: str, value: str) -> bool:
    """env_check: kept only without `%` or `/` (format-string and path tricks)."""
    if name == "TZ":
        return _safe_tz(value)
    return "%" not in value and "/" not in value


def reset_env(req: SudoRequest, runas: RunasUser, command_line: str) -> tuple[str, ...]:
    """The environment as env_reset leaves it (sudoers(5) "Command environment"):
    env_keep and (safe) env_check variables of the user, bash functions (values
    starting with `()`) never; PATH is secure_path; HOME, LOGNAME, USER, SHELL, MAIL
    are the runas user's; SUDO_* describe the invoking user."""
    env: dict[str, str] = {}
    for name, value in req.env.items():
        if value.startswith("()"):
            continue
        if _listed(name, ENV_KEEP) or (_listed(name, ENV_CHECK) and _safe(name, value)):
            env[name] = value
    sudo_ps1 = req.env.get("SUDO_PS1")
    if sudo_ps1 is not None and not sudo_ps1.startswith("()"):
        env["PS1"] = sudo_ps1
    env.setdefault("TERM", "unknown")
    env.update({
        "PATH": ":".join(SECURE_PATH), "HOME": runas.home, "LOGNAME": runas.name,
        "USER": runas.name, "SHELL": runas.shell, "MAIL": f"{MAIL_DIR}/{runas.name}",
        "SUDO_USER": req.user, "SUDO_UID": str(req.uid), "SUDO_GID": str(req.gid),
        "SUDO_COMMAND": command_line[:PATH_MAX],
    })
    return tuple(f"{k}={v}" for k, v in sorted(env.items()))


def _group_vector(runas: RunasUser) -> list[int]:
    """getgrouplist(3) always holds the primary group; keep it first, no duplicates."""
    return [runas.gid, *(g for g in dict.fromkeys(runas.groups) if g != runas.gid)]


def command_info(req: SudoRequest, runas: RunasUser, cmd: Resolved) -> tuple[str, ...]:
    """sudo_plugin(5) command_info as sudoers fills it with Debian's defaults: the
    umask is the union of the user's and 0022 (never lowered); fds from 3 closed;
    use_pty (Debian's /etc/sudoers); intercept, so what the command starts comes back
    to `sudo.check` (not for sudoedit: the editor runs as the user)."""
    info = [
        f"command={cmd.run}",
        f"runas_user={runas.name}",
        f"runas_uid={runas.uid}",
        f"runas_gid={runas.gid}",
        f"runas_groups={','.join(str(g) for g in _group_vector(runas))}",
        f"cwd={runas.home if req.login_shell else req.cwd}",
        f"umask={(DEFAULT_UMASK | req.umask) & 0o777:04o}",
        f"closefrom={CLOSEFROM}",
        "use_pty=true",
    ]
    if req.sudoedit:
        info += ["sudoedit=true", f"sudoedit_nfiles={len(cmd.args)}"]
    else:
        info.append("intercept=true")
    return tuple(info)


# the decision ------------------------------------------------------------------------------

def check_request(req: SudoRequest, runas: RunasUser | None) -> Decision | None:
    """Shape and options, before anything is resolved."""
    if not req.argv or not req.argv[0]:
        return _deny("bad_request", "no command given")
    if not req.cwd.startswith("/"):
        return _deny("bad_request", "the working directory must be an absolute path")
    if req.refused:
        return _deny("option_not_allowed",
                     f"sorry, jitaccess does not allow {', '.join(req.refused)}")
    if runas is None:  # the caller found no such account
        return _deny("runas_not_allowed", f"unknown user {escape(req.runas_user)}")
    if req.runas_user not in (runas.name, f"#{runas.uid}"):  # the caller's mistake
        return _deny("bad_request", "the runas account does not match runas_user")
    if req.runas_group and req.runas_group not in (runas.group, f"#{runas.gid}"):
        return _deny("runas_not_allowed",
                     f"sorry, you may not run commands as group {escape(req.runas_group)}")
    return None


def _found(pattern: re.Pattern, line: str) -> bool:
    """re.search, written as finditer: hostd keeps .match/.search for the duration
    tokenizer only (test_config: names are fullmatched). A guardrail is an
    administrator's regex on the command line, documented as found anywhere unless
    anchored; `$` also matching before a final newline only widens a guardrail."""
    return next(pattern.finditer(line), None) is not None


def _guardrail(config: Config, action: str, line: str) -> int:
    """The first guardrail of `action` whose regex is found in the command line."""
    for index, rail in enumerate(config.guardrails):
        if rail.action == action and _found(rail.match, line):
            return index
    return -1


def decide(req: SudoRequest, config: Config, grants: list[dict], user_groups: set[str],
           runas: RunasUser | None, now: int, host: str, which: Which,
           approved: bool = False) -> Decision:
    """Allow, deny or pending for one sudo (or intercepted) command. `grants` are the
    user's live grants as Core.list_grants gives them; expired ones are ignored here
    too, since a grant must never outlive its `exp` between listing and deciding.
    `runas` is None when sudo -u named no known account."""
    problem = check_request(req, runas)
    if problem is not None:
        return problem
    assert runas is not None
    cmd = resolve_request(req, runas, which)
    if isinstance(cmd, Decision):
        return cmd
    return replace(_decide_command(req, config, grants, user_groups, runas, now, host, cmd,
                                   approved), line=cmd.line)


def _decide_command(req: SudoRequest, config: Config, grants: list[dict],
                    user_groups: set[str], runas: RunasUser, now: int, host: str,
                    cmd: Resolved, approved: bool) -> Decision:
    """decide() once the command is resolved. `approved`: an approver already let this
    exact command run once, so `approve` guardrails are passed (never `deny` ones)."""
    shown = escape(cmd.line)
    denied = _guardrail(config, "deny", cmd.line)
    if denied >= 0:
        message = config.guardrails[denied].message or "refused by a guardrail"
        return Decision("deny", "guardrail_denied", escape(message), shown, guardrail=denied)
    held = sources(config, grants, req.user, user_groups, now)
    if not held:
        return _deny("no_grant", f"{escape(req.user)} holds no grant allowing sudo on "
                                 f"{escape(host)}", shown)
    as_runas = [h for h in held if h[1].runas == runas.name]
    if not as_runas:
        return _deny("runas_not_allowed", f"sorry, you may not run commands as "
                                          f"{escape(runas.name)} on {escape(host)}", shown)
    match = next((h for h in as_runas if rule_matches(parse_rule(h[0].command), cmd)), None)
    if match is None:
        return _deny("no_rule", f"sorry, you may not run {shown} as {escape(runas.name)} "
                                f"on {escape(host)}", shown)
    source, _rule, authenticate = match
    # sudoers never asks root, nor again inside a session (intercept_authenticate off)
    needs_password = authenticate and req.uid != 0 and not req.intercepted
    pending = -1 if approved else _guardrail(config, "approve", cmd.line)
    if pending >= 0:
        subject = command_subject(req.user, runas.name, cmd.argv, req.cwd, host)
        message = config.guardrails[pending].message or "this command needs an approval"
        return Decision("pending", "needs_approval", escape(message), shown, source,
                        needs_password, guardrail=pending,
                        approval_role=source.role or None, subject=subject)
    return Decision("allow", "allowed", "", shown, source, needs_password,
                    command_info(req, runas, cmd), cmd.argv_out,
                    reset_env(req, runas, cmd.line))


# sudo -l -----------------------------------------------------------------------------------

def listing(config: Config, grants: list[dict], user: str, user_groups: set[str],
            now: int, host: str) -> list[str]:
    """What `sudo -l` prints: one block per grant or standing entry, sudoers' own
    `(runas) NOPASSWD: command` lines. Everything from policy or users is escaped."""
    held = sources(config, grants, user, user_groups, now)
    if not held:
        return [f"User {escape(user)} is not allowed to run sudo on {escape(host)}."]
    lines = [f"User {escape(user)} may run the following commands on {escape(host)}:"]
    grant_ends = {str(g.get("id", "")): g.get("not_after", g.get("exp", "")) for g in grants}
    last = None
    for source, rule, authenticate in held:
        block = (source.kind, source.grant_id, source.standing)
        if block != last:
            last = block
            if source.kind == "grant":
                lines.append(f"  grant {escape(source.grant_id)} (role {escape(source.role)}, "
                             f"until {escape(grant_ends.get(source.grant_id, ''))}):")
            else:
                members = ", ".join(config.standing[source.standing].members)
                lines.append(f"  standing rule (members {escape(members)}):")
        tag = "" if authenticate and user != "root" else "NOPASSWD: "
        lines.append(f"    ({escape(rule.runas)}) {tag}{escape(source.command)}")
    return lines
