"""pam_jit: jitaccess's PAM module, for Debian's pam_python.so (libpam-python).

    account  required  pam_python.so /usr/lib/jitaccess/pam_jit.py
    session  optional  pam_python.so /usr/lib/jitaccess/pam_jit.py

A thin client of jit-hostd, as SSSD's pam_sss is of sssd: one bounded request per
phase (`pam.account`, `pam.open_session`, `pam.close_session`) on the fixed socket,
the user from `pamh.user`, and every outcome turned into a PAM code in one place
(`pam_code`). hostd finds the login session itself, from this process's pid
(SO_PEERCRED) and logind.

When hostd cannot answer, `account` applies the gate file hostd writes whenever it
loads the policy (/var/lib/jit/login-gate.json): gated users are refused, everyone
else follows `[login] when_unreachable`. Root is never refused; the module does
nothing under the `jit-sudo` service (hostd's own PAM use).

Every import here costs each login: only modules built into the interpreter or
already loaded at its start (_json, _socket, os, pwd, grp, sys, time) are used; the
`hostd` package is not imported. Arguments (for tests; the environment never counts):
`socket=PATH`, `gate=PATH`.
"""

import _json
import _socket
import grp
import os
import pwd
import sys
import time

SOCKET = "/run/jit/hostd.sock"
GATE = "/var/lib/jit/login-gate.json"
TIMEOUT = 3.0  # seconds for the whole request: a wedged hostd must not hang a login
MAX_ANSWER = 256 * 1024
INERT_SERVICES = ("jit-sudo",)
UNREACHABLE = ("unreachable", "timeout", "busy", "config_error", "internal")


class _Ctx:
    """What _json's C scanner reads from json.JSONDecoder (importing json costs ~9 ms)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None



_scan = _json.make_scanner(_Ctx())
_quote = _json.encode_basestring_ascii


class Failure(Exception):
    """hostd did not answer: `code` is unreachable or timeout."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# the outcome -> PAM code table: the one place a result becomes a PAM return value ------

OUTCOMES = {
    "ok": "PAM_SUCCESS",
    "inert": "PAM_IGNORE",  # not ours to judge (jit-sudo, root's sessions)
    "refused": "PAM_PERM_DENIED",  # gated without a login grant, or when_unreachable=deny
    "unreachable_refused": "PAM_AUTHINFO_UNAVAIL",  # gated, and hostd cannot say otherwise
    "no_user": "PAM_USER_UNKNOWN",
    "session_failed": "PAM_SESSION_ERR",
    "error": "PAM_SERVICE_ERR",  # a bad answer or a bug: fail closed
}


def pam_code(pamh, outcome):
    """The PAM return value of an outcome (OUTCOMES); anything unknown fails closed."""
    return getattr(pamh, OUTCOMES.get(outcome, "PAM_SERVICE_ERR"))


# the client ---------------------------------------------------------------------------

def _encode(op, fields):
    body = "".join(f",{_quote(k)}:{_quote(v)}" for k, v in fields.items())
    return f'{{"v":1,"op":{_quote(op)}{body}}}\n'.encode("ascii")


def _parse(data):
    """One JSON object from bytes; None for anything else."""
    try:
        text = data.decode("utf-8")
        obj, end = _scan(text, 0)
    except Exception:  # StopIteration, ValueError, RecursionError from the scanner
        return None
    return obj if isinstance(obj, dict) and not text[end:].strip() else None


def _decode(data):
    obj = _parse(data)
    if obj is None or not isinstance(obj.get("ok"), bool):
        raise Failure("unreachable", "malformed answer from jit-hostd")
    return obj


def ask(path, op, fields, timeout=TIMEOUT):
    """One request, one answer, within `timeout` seconds in all. The socket must be a
    socket owned by root, served by root (SO_PEERCRED), as pam_sss checks sssd's."""
    deadline = time.monotonic() + timeout
    try:
        st = os.lstat(path)
    except OSError:
        raise Failure("unreachable", f"jit-hostd is not running (no {path})") from None
    if (st.st_mode & 0o170000) != 0o140000 or st.st_uid != 0:
        raise Failure("unreachable", f"{path} is not a socket owned by root")
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(cred[4:8], sys.byteorder) != 0:
            raise Failure("unreachable", f"{path} is not served by root")
        data = memoryview(_encode(op, fields))
        while data:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            data = data[sock.send(data, _socket.MSG_NOSIGNAL):]
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("timeout", "jit-hostd did not answer in time")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                raise Failure("unreachable", "jit-hostd closed the connection")
            buf += chunk
            if len(buf) > MAX_ANSWER:
                raise Failure("unreachable", "answer from jit-hostd too large")
        return _decode(buf)
    except TimeoutError:
        raise Failure("timeout", "jit-hostd did not answer in time") from None
    except OSError as exc:
        raise Failure("unreachable", f"cannot reach jit-hostd: {exc.strerror or exc}") from None
    finally:
        sock.close()


# the gate file: [login] when hostd cannot answer --------------------------------------

def read_gate(path):
    """The gate rules hostd last wrote; None when missing or not to be trusted (owned by
    someone else than root, or writable by others): then nobody counts as gated."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or st.st_mode & 0o022 or (st.st_mode & 0o170000) != 0o100000:
            return None
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    rules = _parse(data)
    if rules is None or rules.get("v") != 1:
        return None
    require = rules.get("require_grant")
    if not isinstance(require, list) or not all(isinstance(m, str) for m in require):
        return None
    return {"require_grant": require,
            "when_unreachable": "deny" if rules.get("when_unreachable") == "deny" else "allow"}


def is_gated(require, user):
    """`user` named in require_grant, or a member of a `%group` there (listed, or by
    primary group), as hostd/policy/logins.py decides; never root."""
    if user == "root":
        return False
    try:
        primary = pwd.getpwnam(user).pw_gid
    except KeyError:
        primary = None
    for member in require:
        if member == user:
            return True
        if member.startswith("%"):
            try:
                g = grp.getgrnam(member[1:])
            except KeyError:
                continue
            if user in g.gr_mem or g.gr_gid == primary:
                return True
    return False


# PAM ------------------------------------------------------------------------------------

def _args(argv):
    opts = {"socket": SOCKET, "gate": GATE}
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if sep and key in opts and value.startswith("/"):
            opts[key] = value
    return opts


SU_SERVICES = ("su", "su-l", "runuser", "runuser-l")


def su_quiet(service, cmdline=None):
    """True when this process is su or runuser without a login shell or with a command:
    util-linux then answers a lone PAM_TEXT_INFO with success but no response array,
    which crashes pam_python (a NULL dereference). Mirrors su's rule
    (`if (!simulate_login || command) suppress_pam_info = 1`); unsure means quiet."""
    if service not in SU_SERVICES:
        return False
    try:
        if cmdline is None:
            with open("/proc/self/cmdline", "rb") as fh:
                cmdline = fh.read()
        args = cmdline.split(b"\0")[1:]
    except OSError:
        return True
    login = False
    for arg in args:
        if arg == b"--":
            break
        if arg in (b"-", b"-l", b"--login"):
            login = True
        elif arg.startswith((b"--command", b"--session-command")):
            return True
        elif arg.startswith(b"-") and not arg.startswith(b"--"):
            flags = arg[1:]
            if b"c" in flags or b"C" in flags:
                return True
            login = login or b"l" in flags
    return not login


def _say(pamh, flags, text, error=False):
    """Show hostd's words (already escaped by hostd) through the application's
    conversation; a missing conversation function never fails the login."""
    if not text or (flags & pamh.PAM_SILENT and not error):
        return
    if not error and su_quiet(pamh.service):
        return
    style = pamh.PAM_ERROR_MSG if error else pamh.PAM_TEXT_INFO
    try:
        pamh.conversation(pamh.Message(style, text))
    except Exception:  # noqa: S110 - no conversation: the refusal still stands
        pass


def _fields(pamh, user):
    fields = {"user": user, "service": pamh.service or ""}
    for key in ("tty", "rhost"):
        value = getattr(pamh, key, None)
        if value:
            fields[key] = value
    return fields


def _user(pamh):
    user = pamh.user
    return user if isinstance(user, str) and user else None


def account(pamh, flags, argv):
    """The outcome of pam_sm_acct_mgmt: ask hostd, else apply the gate file."""
    if pamh.service in INERT_SERVICES:
        return "inert"
    user = _user(pamh)
    if user is None:
        return "no_user"
    if user == "root":
        return "ok"  # never refused: a broken hostd or policy must not lock root out
    opts = _args(argv)
    gate = read_gate(opts["gate"])
    if gate is not None and not gate["require_grant"]:
        return "ok"  # nobody is gated: inert, and no round trip
    try:
        answer = ask(opts["socket"], "pam.account", _fields(pamh, user))
    except Failure as exc:
        answer = {"ok": False, "code": exc.code, "message": str(exc)}
    if answer["ok"]:
        return "ok"
    code = answer.get("code")
    if code == "no_grant":
        _say(pamh, flags, str(answer.get("message", "")), error=True)
        return "refused"
    if code == "not_found":
        return "no_user"
    if code not in UNREACHABLE:
        return "error"
    host = os.uname().nodename
    if gate is not None and is_gated(gate["require_grant"], user):
        _say(pamh, flags, f"jit: logging in to {host} requires an active grant, and "
                          "jit-hostd cannot be reached to check one: try again later",
             error=True)
        return "unreachable_refused"
    if gate is not None and gate["when_unreachable"] == "deny":
        _say(pamh, flags, f"jit: jit-hostd cannot be reached and {host} admits no "
                          "logins without it: try again later", error=True)
        return "refused"
    return "ok"


def session(pamh, flags, argv, op):
    """The outcome of pam_sm_open_session / pam_sm_close_session."""
    if pamh.service in INERT_SERVICES:
        return "inert"
    user = _user(pamh)
    if user is None:
        return "no_user"
    if user == "root":
        return "inert"
    try:
        answer = ask(_args(argv)["socket"], op, _fields(pamh, user))
    except Failure:
        return "session_failed"
    if not answer["ok"]:
        return "no_user" if answer.get("code") == "not_found" else "session_failed"
    _say(pamh, flags, str(answer.get("message") or ""))
    return "ok"


def _guarded(pamh, fn, *args):
    try:
        return pam_code(pamh, fn(pamh, *args))
    except Exception:  # a bug must fail closed, never fall through as success
        return pam_code(pamh, "error")


def pam_sm_acct_mgmt(pamh, flags, argv):
    return _guarded(pamh, account, flags, argv)


def pam_sm_open_session(pamh, flags, argv):
    return _guarded(pamh, session, flags, argv, "pam.open_session")


def pam_sm_close_session(pamh, flags, argv):
    return _guarded(pamh, session, flags, argv, "pam.close_session")


def pam_sm_authenticate(pamh, flags, argv):
    return pamh.PAM_IGNORE


def pam_sm_setcred(pamh, flags, argv):
    return pamh.PAM_IGNORE


def pam_sm_chauthtok(pamh, flags, argv):
    return pamh.PAM_IGNORE
