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

The parts: sudorequest.py parses what the shim sends, sudorules.py reads `commands`
entries (parsed once, at config load), sudoenv.py builds the environment and
command_info; this module resolves the command and decides.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from hostd.events import escape
from hostd.policy.approvals import command_subject, in_members
from hostd.policy.config import Config, SudoRule
from hostd.policy.guardrails import Files, canonical, first, spellings
from hostd.policy.liveness import is_live
from hostd.policy.sudoenv import SECURE_PATH, command_info, reset_env
from hostd.policy.sudorequest import Resolved, RunasUser, SudoRequest
from hostd.policy.sudorules import Rule

__all__ = ["Decision", "RunasUser", "Source", "SudoRequest", "decide", "listing",
           "rule_warnings", "sources"]


DEFAULT_EDITOR = "/usr/bin/editor"  # Debian builds sudo --with-editor=/usr/bin/editor
EDITOR_VARS = ("SUDO_EDITOR", "VISUAL", "EDITOR")  # --with-env-editor: the user's choice

Which = Callable[[str], "str | None"]


@dataclass(frozen=True)
class Source:
    """What allowed it, for the event: a grant (id, role) or a standing entry (index)."""

    kind: str  # "grant" or "standing"
    runas: str
    command: str  # the rule's text
    grant_id: str = ""
    role: str = ""
    standing: int = -1
    cmnd: Rule | None = field(default=None, compare=False, repr=False)  # parsed at load



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
            for text, cmnd in zip(rule.commands, rule.rules, strict=True):
                out.append((Source("grant", rule.runas, text, str(grant.get("id", "")),
                                   role.name, cmnd=cmnd), rule, role.authenticate))
    for index, entry in enumerate(config.standing):
        if in_members(entry.members, user, user_groups):
            for rule in entry.sudo:
                for text, cmnd in zip(rule.commands, rule.rules, strict=True):
                    # no setting for standing entries: sudoers' default, authenticate
                    out.append((Source("standing", rule.runas, text, standing=index,
                                       cmnd=cmnd), rule, True))
    return out



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


def decide(req: SudoRequest, config: Config, grants: list[dict], user_groups: set[str],
           runas: RunasUser | None, now: int, host: str, which: Which,
           approved: bool = False, files: Files | None = None) -> Decision:
    """Allow, deny or pending for one sudo (or intercepted) command. `grants` are the
    user's live grants as Core.list_grants gives them; expired ones are ignored here
    too, since a grant must never outlive its `exp` between listing and deciding.
    `runas` is None when sudo -u named no known account. `files`: the program paths
    the caller identified (guardrails.FileId: realpath, device, inode), so the command
    is compared by its file, not its spelling."""
    problem = check_request(req, runas)
    if problem is not None:
        return problem
    assert runas is not None
    typed = resolve_request(req, runas, which)
    if isinstance(typed, Decision):
        return typed
    files = files or {}
    cmd = canonical(typed, files)
    spelt = spellings(typed, cmd)
    return replace(_decide_command(req, config, grants, user_groups, runas, now, host, cmd,
                                   approved, lambda action: first(config, action, spelt,
                                                                  files), typed.path),
                   line=cmd.line)


def _decide_command(req: SudoRequest, config: Config, grants: list[dict],
                    user_groups: set[str], runas: RunasUser, now: int, host: str,
                    cmd: Resolved, approved: bool, guardrail, typed_path: str) -> Decision:
    """decide() once the command is resolved and canonical. `approved`: an approver
    already let this exact command run once, so `approve` guardrails are passed (never
    `deny` ones). `guardrail(action)`: the first of that action holding for any
    spelling of the command (guardrails.first). A rule matches the program by its
    real path or by the path as resolved (sudoers compares files: `/bin/ls` runs under
    a `/usr/bin/ls` rule, and a rule naming a symlink still holds for it)."""
    shown = escape(cmd.line)
    denied = guardrail("deny")
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
    match = next((h for h in as_runas if h[0].cmnd is not None
                  and any(h[0].cmnd.matches(p, cmd.args) for p in {cmd.path, typed_path})),
                 None)
    if match is None:
        return _deny("no_rule", f"sorry, you may not run {shown} as {escape(runas.name)} "
                                f"on {escape(host)}", shown)
    source, _rule, authenticate = match
    # sudoers never asks root, nor again inside a session (intercept_authenticate off)
    needs_password = authenticate and req.uid != 0 and not req.intercepted
    pending = -1 if approved else guardrail("approve")
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
    if config.guardrails:
        lines.append("  guardrails (before any rule, on the command as resolved):")
        lines += [f"    {escape(rail.describe())}" for rail in config.guardrails]
    return lines



# jit check-config ---------------------------------------------------------------------------

def rule_warnings(config: Config) -> list[str]:
    """`commands` entries that load but can never match here (Rule.problem), named by
    their place in jit.toml, for `jit check-config` to warn about."""
    places = [(f"roles.{r.name}.sudo", r.sudo) for r in config.roles.values()]
    places += [(f"standing[{i}].sudo", s.sudo) for i, s in enumerate(config.standing)]
    out = []
    for where, rules in places:
        for i, rule in enumerate(rules):
            for text, cmnd in zip(rule.commands, rule.rules, strict=True):
                if cmnd.problem is not None:
                    out.append(f"{where}[{i}].commands: {text!r} never matches: {cmnd.problem}")
    return out
