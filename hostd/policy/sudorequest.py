"""What the sudo shim sends, parsed: `SudoRequest` from sudo's settings, user_info,
argv and environment vectors (sudo_plugin(5)), the runas account the caller looked up,
and the command as resolved for matching and running.

Pure: parsing only. A malformed vector is JitError `bad_request`, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostd.errors import JitError
from hostd.events import escape

DEFAULT_UMASK = 0o022

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
    sid: str = ""  # the session id (sudo's user_info): timestamps are per session

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
            pid=info.get("pid", ""), ppid=info.get("ppid", ""), sid=info.get("sid", ""),
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

