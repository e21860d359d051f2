"""`jit setup pam --enable | --disable` and `jit grants --sessions`.

The PAM stacks are Debian's: the package ships the pam-auth-update profile
/usr/share/pam-configs/jitaccess (on by default, as libpam-systemd's is) and this
module only asks pam-auth-update to switch it, so /etc/pam.d is always what
pam-auth-update itself would write: `--disable` leaves the common-* files byte for byte
as they were before the profile was enabled. Hand-edited common-* files are left alone
by pam-auth-update; enabling then fails and says so.

Enabling refuses when the module could not run (pam_jit.so missing from the multiarch
PAM directory, or not a root-owned ELF file) and checks afterwards that root skips
pam_jit in common-account: root can never be locked out by it. The profile also skips
the module under sudo and sudo-i (sudo is not a login: a gated user's sudo needs no
login grant, and its PAM session is not a login to register) and jit-sudo (hostd's own
password check, where the module would be inert anyway). The text checks are pure.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hostd.errors import JitError
from hostd.events import escape

PROFILE = "jitaccess"
MODULE = "pam_jit.so"
# where libpam finds a module named without a path: the multiarch PAM directories
MODULE_GLOBS = ("lib/*-linux-gnu*/security/pam_jit.so",
                "usr/lib/*-linux-gnu*/security/pam_jit.so")
ROOT_SKIP = "pam_succeed_if.so quiet uid eq 0"
STACKS = ("common-account", "common-auth", "common-password", "common-session",
          "common-session-noninteractive")


def _words(line: str) -> list[str]:
    return line.split("#", 1)[0].split()


def _is_ours(line: str) -> bool:
    """A stack line that calls pam_jit.so, by name or by path."""
    words = _words(line)
    return len(words) >= 3 and words[2].rsplit("/", 1)[-1] == MODULE


def stack_has_module(text: str) -> bool:
    """A PAM stack file that calls pam_jit."""
    return any(_is_ours(line) for line in text.splitlines())


def _skip(words: list[str]) -> int:
    """N of a `[success=N default=ignore] pam_succeed_if.so quiet uid eq 0` line, else 0."""
    text = " ".join(words)
    if len(words) < 4 or not words[1].startswith("[success=") or not text.endswith(ROOT_SKIP):
        return 0
    n = words[1].removeprefix("[success=")
    return int(n) if n.isdigit() and "default=ignore]" in words else 0


def root_skips(account_text: str) -> bool:
    """In common-account, every pam_jit line is among the lines a root skip
    (`[success=N default=ignore] pam_succeed_if.so quiet uid eq 0`) jumps over: root
    never reaches the module, whatever it or hostd does."""
    lines = [w for w in (_words(line) for line in account_text.splitlines()) if w]
    for i, words in enumerate(lines):
        if words[0] == "account" and _is_ours(" ".join(words)):
            if not any(0 < i - j <= _skip(lines[j]) for j in range(i)):
                return False
    return True


def _pam_auth_update(root: Path, *args: str) -> None:
    cmd = ["pam-auth-update", "--package", *args]
    if root != Path("/"):
        cmd[1:1] = ["--root", str(root)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C"}
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False,
                           env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JitError("internal", f"pam-auth-update could not run: {exc}") from None
    if r.returncode != 0:
        raise JitError("internal", f"pam-auth-update failed: {escape(r.stderr.strip())}")


def _module_ok(path: Path) -> bool:
    """A regular file owned by root, writable by root alone, that is an ELF object."""
    try:
        st = path.lstat()
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError:
        return False
    return (path.is_file() and not path.is_symlink() and st.st_uid == 0
            and not st.st_mode & 0o022 and magic == b"\x7fELF")


def preflight(root: Path) -> list[str]:
    """What would keep pam_jit from working: the profile, the module."""
    problems = []
    if not (root / "usr/share/pam-configs" / PROFILE).is_file():
        problems.append(f"/usr/share/pam-configs/{PROFILE} is missing")
    found = [p for g in MODULE_GLOBS for p in sorted(root.glob(g))]
    if not found:
        problems.append(f"{MODULE} is missing from the PAM module directory")
    elif not any(_module_ok(p) for p in found):
        problems.append(f"{MODULE} is not a root-owned ELF file ({found[0]})")
    return problems


def enable(root: Path) -> bool:
    """Switch the profile on; False if it already was. JitError when it cannot be."""
    pam_d = root / "etc/pam.d"
    problems = preflight(root)
    if problems:
        raise JitError("denied", "refusing to enable pam_jit: " + "; ".join(problems))
    account = pam_d / "common-account"
    if stack_has_module(account.read_text()) and stack_has_module(
            (pam_d / "common-session").read_text()):
        return False
    _pam_auth_update(root, "--enable", PROFILE)
    text = account.read_text()
    if not stack_has_module(text) or not stack_has_module((pam_d / "common-session").read_text()):
        raise JitError("denied", "pam-auth-update did not enable the jitaccess profile: "
                                 "/etc/pam.d/common-* were probably edited by hand "
                                 "(pam-auth-update leaves those alone)")
    if not root_skips(text):  # never expected: the profile puts the skip first
        _pam_auth_update(root, "--disable", PROFILE)
        raise JitError("internal", "common-account would send root through pam_jit; "
                                   "the profile was switched off again")
    return True


def disable(root: Path) -> bool:
    """Switch the profile off (and keep it off on upgrades); False if it was not on."""
    pam_d = root / "etc/pam.d"
    on = any(stack_has_module((pam_d / s).read_text()) for s in STACKS if (pam_d / s).exists())
    _pam_auth_update(root, "--disable", PROFILE)
    left = [s for s in STACKS if (pam_d / s).exists() and stack_has_module((pam_d / s).read_text())]
    if left:
        raise JitError("internal", f"pam_jit is still in /etc/pam.d/{left[0]}: it was edited "
                                   "by hand; remove the pam_jit line there")
    return on


def setup(args, out, root: Path) -> int:
    """`jit setup pam --enable | --disable` (root only)."""
    if os.geteuid() != 0:
        raise JitError("permission_denied", "jit setup pam changes /etc/pam.d: run it as root")
    if args.disable:
        changed = disable(root)
        return out(args, {"ok": True, "code": "ok", "message": "disabled", "changed": changed},
                   "pam_jit is off: /etc/pam.d is as pam-auth-update writes it without the "
                   "jitaccess profile" if changed else "pam_jit was not enabled")
    changed = enable(root)
    return out(args, {"ok": True, "code": "ok", "message": "enabled", "changed": changed},
               "pam_jit is on (account: gates users named in [login] require_grant; "
               "session: registers logins); `jit setup pam --disable` undoes it"
               if changed else "pam_jit was already enabled")


# jit grants --sessions ---------------------------------------------------------------------

def sessions_table(sessions: list[dict], all_users: bool) -> str:
    """Registered login sessions as `jit grants --sessions` prints them."""
    if not sessions:
        return "no registered login sessions"
    from hostd.policy.durations import rfc3339

    head = ["SESSION", *(["USER"] if all_users else []), "PID", "TTY", "SERVICE", "OPENED (UTC)",
            "CLOSED", "GRANTS"]
    rows = [[escape(s["id"] or "-"), *([escape(s["user"])] if all_users else []),
             str(s["pid"]), escape(s["tty"] or "-")[:16], escape(s["service"] or "-")[:16],
             rfc3339(s["opened"]).replace("T", " "),
             rfc3339(s["closed"]).replace("T", " ") if s["closed"] else "-",
             ",".join(s["grants"]) or "-"] for s in sessions]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def list_sessions(args, out, call) -> int:
    """`jit grants --sessions [--all]`: login sessions hostd registered."""
    answer = call("login.list", all=bool(args.all))
    text = sessions_table(answer["sessions"], bool(args.all))
    if not answer["sessions"] and not args.all and os.geteuid() == 0:
        others = len(call("login.list", all=True)["sessions"])
        text = (f"root has no registered login sessions (root's logins are never gated); "
                f"{others} of other users: jit grants --sessions --all")
    return out(args, answer, text)
