"""pam_jit.so driven through libpam by pamtester (pam_wrapper: a private service
directory; nss_wrapper: private users and groups), every run under valgrind memcheck,
against a stand-in hostd that answers each request with canned bytes: every outcome,
hostd down, the gate file missing, untrusted or corrupt, oversized and malformed answers.

Needs root (the module trusts only a root-owned socket and gate file) and the Debian
packages pamtester, valgrind, libpam-wrapper, libnss-wrapper, libpam0g-dev,
libjson-c-dev: a missing one fails, never skips.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PAM_DIR = HERE.parent
MODULE = PAM_DIR / "pam_jit.so"
LIBDIR = Path("/usr/lib/x86_64-linux-gnu")
PERMIT = "/lib/x86_64-linux-gnu/security/pam_permit.so"
VALGRIND = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite"]
HOST = os.uname().nodename

# pam_strerror's words, as pamtester prints them for each PAM code
SUCCESS = "done"
PERM_DENIED = "Permission denied"
AUTHINFO_UNAVAIL = "Authentication service cannot retrieve authentication info"
USER_UNKNOWN = "User not known to the underlying authentication module"
SESSION_ERR = "Cannot make/remove an entry for the specified session"
SERVICE_ERR = "Error in service module"

OK = {"ok": True, "code": "ok", "message": ""}
NO_GRANT = {"ok": False, "code": "no_grant",
            "message": "jit: logging in to testhost requires an active grant; "
                       "ask with: jit request console"}
GATE = {"v": 1, "require_grant": ["alice", "%developers"], "when_unreachable": "allow"}
ACCOUNTS = ("root:x:0:0:root:/root:/bin/sh\nalice:x:1001:1001::/:/bin/sh\n"
            "bob:x:1002:1002::/:/bin/sh\ncarol:x:1003:1003::/:/bin/sh\n"
            "dave:x:1004:2000::/:/bin/sh\n")
GROUPS = ("root:x:0:\nalice:x:1001:\nbob:x:1002:\ncarol:x:1003:\n"
          "developers:x:2000:carol\n")


def line(answer: dict) -> bytes:
    return json.dumps(answer).encode() + b"\n"


class Hostd:
    """A stand-in hostd: each connection gets the next canned reply (bytes to send,
    None: hold the connection open without answering until stop())."""

    def __init__(self, path: Path, replies: list[bytes | None]) -> None:
        self.path, self.replies, self.requests = path, list(replies), []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            reply = self.replies.pop(0)
            data = conn.makefile("rb").readline()
            self.requests.append(json.loads(data) if data else None)
            if reply is None:
                self.held.append(conn)
                continue
            try:
                conn.sendall(reply)
            except OSError:
                pass  # the module stopped reading (an oversized answer): as it should
            conn.close()

    def stop(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


class Stack:
    """A private PAM service `jit-test` (and `jit-sudo`) whose stacks run pam_jit.so."""

    def __init__(self, tmp: Path, sock: Path | None = None) -> None:
        self.tmp = tmp
        self.socket = sock or tmp / "hostd.sock"
        self.gate = tmp / "gate.json"
        self.dir = tmp / "pam.d"
        self.dir.mkdir()
        module = f"{MODULE} socket={self.socket} gate={self.gate}"
        for service in ("jit-test", "jit-sudo"):
            (self.dir / service).write_text(
                f"account required {module}\naccount required {PERMIT}\n"
                f"session required {module}\nsession required {PERMIT}\n")
        (tmp / "passwd").write_text(ACCOUNTS)
        (tmp / "group").write_text(GROUPS)
        self.hostd: Hostd | None = None

    def write_gate(self, data: dict | bytes, mode: int = 0o600) -> None:
        self.gate.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
        os.chmod(self.gate, mode)

    def serve(self, *replies: bytes | None) -> Hostd:
        self.hostd = Hostd(self.socket, list(replies))
        return self.hostd

    def run(self, user: str, *ops: str, service: str = "jit-test",
            items: tuple[str, ...] = ()) -> tuple[str, str]:
        """pamtester under valgrind: (the last result word set, everything shown)."""
        env = {"LD_PRELOAD": f"{LIBDIR}/libpam_wrapper.so:{LIBDIR}/libnss_wrapper.so",
               "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": str(self.dir),
               "NSS_WRAPPER_PASSWD": str(self.tmp / "passwd"),
               "NSS_WRAPPER_GROUP": str(self.tmp / "group"), "PATH": "/usr/bin:/bin"}
        argv = [*VALGRIND, "pamtester", *[f"-I{i}" for i in items], service, user, *ops]
        r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                           check=False, stdin=subprocess.DEVNULL)
        assert r.returncode in (0, 1), f"valgrind or pamtester failed:\n{r.stdout}{r.stderr}"
        out = "\n".join(x for x in (r.stdout + r.stderr).splitlines()
                        if not x.startswith("PWRAP_"))  # pam_wrapper's own chatter
        last = out.strip().splitlines()[-1] if out.strip() else ""
        done = last.endswith((" done.", "opened a session", "successfully been closed."))
        result = SUCCESS if r.returncode == 0 and done else last
        return result.removeprefix("pamtester: "), out


@pytest.fixture(scope="module")
def built() -> None:
    needed = {"pamtester": "pamtester", "valgrind": "valgrind", "make": "make",
              "gcc": "gcc"}
    missing = sorted({pkg for prog, pkg in needed.items() if not shutil.which(prog)}
                     | {pkg for path, pkg in (
                         (LIBDIR / "libpam_wrapper.so", "libpam-wrapper"),
                         (LIBDIR / "libnss_wrapper.so", "libnss-wrapper"),
                         (Path("/usr/include/security/pam_modules.h"), "libpam0g-dev"),
                         (Path("/usr/include/json-c/json.h"), "libjson-c-dev"))
                        if not path.exists()})
    if missing:
        pytest.fail("pam_jit tests need the Debian packages: " + " ".join(missing),
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("pam_jit tests need root (the module trusts only root's files)",
                    pytrace=False)
    r = subprocess.run(["make", "-C", str(PAM_DIR), "pam_jit.so", "tests/fuzz_answer"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def stack(built, tmp_path):
    s = Stack(tmp_path)
    yield s
    if s.hostd is not None:
        s.hostd.stop()


# hostd answers -----------------------------------------------------------------------

def test_account_ok_and_the_request_names_user_service_tty_rhost(stack):
    stack.write_gate(GATE)
    hostd = stack.serve(line(OK))
    assert stack.run("alice", "acct_mgmt", items=("tty=tty1", "rhost=10.0.0.9"))[0] == SUCCESS
    assert hostd.requests == [{"v": 1, "op": "pam.account", "user": "alice",
                               "service": "jit-test", "tty": "tty1", "rhost": "10.0.0.9"}]


def test_no_grant_is_refused_with_hostds_words(stack):
    stack.write_gate(GATE)
    stack.serve(line(NO_GRANT))
    result, out = stack.run("alice", "acct_mgmt")
    assert result == PERM_DENIED
    assert NO_GRANT["message"] in out


def test_not_found_is_user_unknown_and_other_refusals_fail_closed(stack):
    stack.write_gate(GATE)
    stack.serve(line({"ok": False, "code": "not_found", "message": "no such user"}),
                line({"ok": False, "code": "bad_request", "message": "no"}),
                line({"ok": False, "code": "permission_denied", "message": "root only"}))
    assert stack.run("alice", "acct_mgmt")[0] == USER_UNKNOWN
    assert stack.run("alice", "acct_mgmt")[0] == SERVICE_ERR
    assert stack.run("bob", "acct_mgmt")[0] == SERVICE_ERR  # even for an ungated user


@pytest.mark.parametrize("code", ["internal", "busy", "config_error", "timeout"])
def test_hostd_that_cannot_decide_falls_back_to_the_gate_file(stack, code):
    stack.write_gate(GATE)
    failed = line({"ok": False, "code": code, "message": "x"})
    stack.serve(failed, failed)
    result, out = stack.run("alice", "acct_mgmt")
    assert result == AUTHINFO_UNAVAIL
    assert (f"jit: logging in to {HOST} requires an active grant, and jit-hostd cannot be "
            "reached to check one: try again later") in out
    assert stack.run("bob", "acct_mgmt")[0] == SUCCESS


def test_sessions_open_and_close_and_show_hostds_text(stack):
    text = "jit: active grants:\njit:   console (docker): 59m left (grant g1)"
    hostd = stack.serve(line({"ok": True, "code": "ok", "message": text}), line(OK),
                        line({"ok": True, "code": "ok", "message": text}))
    result, out = stack.run("alice", "open_session", "close_session")
    assert result == SUCCESS and text in out
    result, out = stack.run("alice", "open_session(PAM_SILENT)")
    assert result == SUCCESS and text not in out  # PAM_SILENT: no info text
    assert [r["op"] for r in hostd.requests] == ["pam.open_session", "pam.close_session",
                                                 "pam.open_session"]


def test_session_failures(stack):
    stack.serve(line({"ok": False, "code": "not_found", "message": "no such user"}),
                line({"ok": False, "code": "internal", "message": "x"}), b"nonsense\n")
    assert stack.run("alice", "open_session")[0] == USER_UNKNOWN
    assert stack.run("alice", "open_session")[0] == SESSION_ERR
    assert stack.run("alice", "close_session")[0] == SESSION_ERR
    stack.hostd.stop()
    stack.socket.unlink()
    assert stack.run("bob", "open_session")[0] == SESSION_ERR  # hostd down


def test_root_is_never_refused_and_jit_sudo_is_inert(stack):
    stack.write_gate({**GATE, "require_grant": ["root", "alice"], "when_unreachable": "deny"})
    hostd = stack.serve(line(NO_GRANT), line(NO_GRANT))
    assert stack.run("root", "acct_mgmt", "open_session", "close_session")[0] == SUCCESS
    assert stack.run("alice", "acct_mgmt", "open_session", service="jit-sudo")[0] == SUCCESS
    assert hostd.requests == []  # neither asked hostd


def test_no_user_is_user_unknown(stack):
    stack.serve()
    assert stack.run("", "acct_mgmt")[0] == USER_UNKNOWN


# hostd down, and the gate file --------------------------------------------------------

def test_hostd_down_gated_refused_others_allowed(stack):
    stack.write_gate(GATE)
    assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL
    assert stack.run("carol", "acct_mgmt")[0] == AUTHINFO_UNAVAIL  # listed in %developers
    assert stack.run("dave", "acct_mgmt")[0] == AUTHINFO_UNAVAIL  # primary group developers
    assert stack.run("bob", "acct_mgmt")[0] == SUCCESS
    assert stack.run("nosuchuser", "acct_mgmt")[0] == SUCCESS
    stack.write_gate({**GATE, "when_unreachable": "deny"})
    result, out = stack.run("bob", "acct_mgmt")
    assert result == PERM_DENIED
    assert f"jit-hostd cannot be reached and {HOST} admits no logins without it" in out


def test_nobody_gated_means_no_round_trip(stack):
    stack.write_gate({"v": 1, "require_grant": [], "when_unreachable": "deny"})
    hostd = stack.serve(line(NO_GRANT))
    assert stack.run("alice", "acct_mgmt")[0] == SUCCESS
    assert hostd.requests == []


def untrusted(stack: Stack, case: str) -> None:
    if case == "missing":
        return
    if case == "writable":
        stack.write_gate(GATE, 0o646)
    elif case == "group-writable":
        stack.write_gate(GATE, 0o620)
    elif case == "not-root":
        stack.write_gate(GATE)
        os.chown(stack.gate, 1002, 1002)
    elif case == "symlink":
        real = stack.tmp / "real.json"
        real.write_text(json.dumps(GATE))
        os.chmod(real, 0o600)
        stack.gate.symlink_to(real)
    elif case == "directory":
        stack.gate.mkdir()
    else:
        stack.write_gate(CORRUPT[case])


CORRUPT = {
    "not-json": b"{\"v\": 1, \"require_grant\": [\"alice\"",
    "version": json.dumps({**GATE, "v": 2}).encode(),
    "version-string": json.dumps({**GATE, "v": "1"}).encode(),
    "list-not-array": json.dumps({**GATE, "require_grant": "alice"}).encode(),
    "non-string-member": json.dumps({**GATE, "require_grant": ["alice", 7]}).encode(),
    "nul-in-member": b"{\"v\": 1, \"require_grant\": [\"alice\\u0000x\"]}",
    "array": json.dumps([GATE]).encode(),
    "trailing": json.dumps(GATE).encode() + b" {}",
    "trailing-nul": json.dumps(GATE).encode() + b"\n\0",
    "bad-utf8": b"{\"v\": 1, \"require_grant\": [\"al\xffice\"]}",
    "oversized": json.dumps({**GATE, "pad": "x" * 70000}).encode(),
    "empty": b"",
}


@pytest.mark.parametrize("case", ["missing", "writable", "group-writable", "not-root",
                                  "symlink", "directory", *CORRUPT])
def test_a_gate_file_not_to_be_trusted_counts_as_none(stack, case):
    """hostd down and no trustworthy rules: nobody counts as gated (pam_jit.py did the
    same); even a `deny` in an untrusted file is not applied."""
    untrusted(stack, case)
    assert stack.run("alice", "acct_mgmt")[0] == SUCCESS


def test_gate_file_with_trailing_newline_is_read(stack):
    stack.write_gate(json.dumps(GATE, sort_keys=True).encode() + b"\n")  # as hostd writes it
    assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL


# malformed, oversized, slow answers and untrusted sockets ------------------------------

MALFORMED = {
    "not-json": b"nonsense\n",
    "array": b"[true]\n",
    "ok-not-bool": b"{\"ok\": 1, \"code\": \"ok\"}\n",
    "no-code": b"{\"ok\": true}\n",
    "code-not-string": b"{\"ok\": true, \"code\": 5}\n",
    "two-lines": line(OK) + line(OK),
    "trailing": b"{\"ok\": true, \"code\": \"ok\"} x\n",
    "bad-utf8": b"{\"ok\": true, \"code\": \"o\xffk\"}\n",
    "no-newline": b"{\"ok\": true, \"code\": \"ok\"}",
    "empty": b"",
    "oversized": b"{\"ok\": true, \"code\": \"ok\", \"m\": \"" + b"x" * 70000 + b"\"}\n",
    "nul-in-code": b"{\"ok\": true, \"code\": \"o\\u0000k\"}\n",
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_answer_counts_as_unreachable(stack, case):
    """Never a pass on a bad answer: a gated user gets the unreachable refusal."""
    stack.write_gate(GATE)
    stack.serve(MALFORMED[case], MALFORMED[case])
    assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL
    assert stack.run("alice", "open_session")[0] == SESSION_ERR


def test_a_hostd_that_never_answers_times_out(stack):
    stack.write_gate(GATE)
    stack.serve(None)
    assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL


def test_a_socket_not_owned_by_root_is_not_trusted(stack):
    stack.write_gate(GATE)
    hostd = stack.serve(line(OK))
    os.chown(stack.socket, 1002, 1002)
    assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL
    assert hostd.requests == []


def test_a_daemon_not_running_as_root_is_not_trusted(built, tmp_path):
    """The socket file is root's, but the process serving it is not (SO_PEERCRED)."""
    public = Path(tempfile.mkdtemp(prefix="pam-jit-", dir="/tmp"))
    os.chmod(public, 0o777)  # noqa: S103 - where uid 1002 can bind (a test directory)
    stack = Stack(tmp_path, public / "hostd.sock")
    stack.write_gate(GATE)
    serve = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); "
             "s.listen(4); print('ready', flush=True); "
             "c=s.accept()[0]; c.sendall(b'{\"ok\": true, \"code\": \"ok\"}\\n'); c.close()")
    proc = subprocess.Popen(["setpriv", "--reuid=1002", "--regid=1002", "--clear-groups",
                             "/usr/bin/python3", "-c", serve, str(stack.socket)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.chown(stack.socket, 0, 0)
        assert stack.run("alice", "acct_mgmt")[0] == AUTHINFO_UNAVAIL
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(public)


# the answer parser --------------------------------------------------------------------

def test_a_short_fuzz_run_of_the_answer_parser_finds_nothing(built):
    r = subprocess.run([str(HERE / "fuzz_answer"), "20000", str(os.getpid())],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no findings" in r.stdout


# the session's terminal, handed over to hostd --------------------------------------

class TerminalDesk:
    """A stand-in for hostd's terminal.sock: takes each request with its descriptors,
    writes a line through the first one, answers ok."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.got: list[tuple[dict, int]] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            data, anc, _flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
            fds = [fd for level, kind, raw in anc
                   if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                   for fd in array.array("i", raw)]
            self.got.append((json.loads(data), len(fds)))
            for fd in fds:
                os.write(fd, b"through the handed-over descriptor\r\n")
                os.close(fd)
            conn.sendall(line(OK))


def test_open_session_hands_the_terminal_to_hostd(stack):
    """PAM_TTY a tty: its descriptor travels to terminal.sock next to the socket (even
    with `mesg n`, 0600 and owned by the user: the module opens it as root)."""
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    os.chown(tty, 1001, 1001)
    os.chmod(tty, 0o600)
    try:
        stack.serve(line(OK), line(OK))
        desk = TerminalDesk(stack.socket.parent / "terminal.sock")
        assert stack.run("alice", "open_session", items=(f"tty={tty}",))[0] == SUCCESS
        assert desk.got == [({"v": 1, "op": "pam.terminal", "user": "alice",
                              "service": "jit-test", "tty": tty}, 1)]
        assert b"through the handed-over descriptor" in os.read(master, 4096)
        # not a terminal, or no device: nothing is handed over, the session still opens
        assert stack.run("alice", "open_session", items=("tty=/dev/null",))[0] == SUCCESS
        assert len(desk.got) == 1
    finally:
        os.close(master)
        os.close(slave)


class TurnHostd:
    """A stand-in hostd that answers requests in turn on one connection, as hostd does:
    `turns` holds, per connection, the reply to each of its requests (None: read the
    request and close unanswered; b"": close without reading one, as hostd's idle
    timeout does). `seen`: the ops per connection."""

    def __init__(self, path: Path, turns: list[list[bytes | None]]) -> None:
        self.turns, self.seen = [list(t) for t in turns], []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        for replies in self.turns:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            ops: list[str] = []
            self.seen.append(ops)
            with conn, conn.makefile("rb") as f:
                for reply in replies:
                    if reply == b"":
                        break
                    data = f.readline()
                    if not data:
                        break
                    ops.append(json.loads(data)["op"])
                    if reply is None:
                        break  # closed at once, the request unanswered
                    conn.sendall(reply)
                else:
                    f.read()  # every reply given: until the module closes its end

    def stop(self) -> None:
        self.sock.close()


def test_open_session_reuses_accounts_connection(stack):
    """account's connection carries open_session too (same process, hostd still there):
    one connect and one accept fewer per login; close_session opens its own."""
    stack.write_gate(GATE)
    hostd = TurnHostd(stack.socket, [[line(OK), line(OK)], [line(OK)]])
    try:
        result, _ = stack.run("alice", "acct_mgmt", "open_session", "close_session")
        assert result == SUCCESS
        hostd.thread.join(10)
        assert hostd.seen == [["pam.account", "pam.open_session"], ["pam.close_session"]]
    finally:
        hostd.stop()


def test_a_kept_connection_hostd_closed_is_not_used(stack):
    """hostd closed account's connection (its idle timeout) before open_session: the
    module sees it closed and opens a new one."""
    stack.write_gate(GATE)
    hostd = TurnHostd(stack.socket, [[line(OK), b""], [line(OK)]])
    try:
        result, _ = stack.run("alice", "acct_mgmt", "open_session")
        assert result == SUCCESS
        hostd.thread.join(10)
        assert hostd.seen == [["pam.account"], ["pam.open_session"]]
    finally:
        hostd.stop()


def test_a_kept_connection_closed_before_the_answer_is_asked_again(stack):
    """hostd closes the kept connection with open_session's request unanswered (its idle
    timeout running out meanwhile): asked again on a new connection, once."""
    stack.write_gate(GATE)
    hostd = TurnHostd(stack.socket, [[line(OK), None], [line(OK)]])
    try:
        result, _ = stack.run("alice", "acct_mgmt", "open_session")
        assert result == SUCCESS
        hostd.thread.join(10)
        assert hostd.seen == [["pam.account", "pam.open_session"], ["pam.open_session"]]
    finally:
        hostd.stop()


def test_a_refused_account_keeps_no_connection(stack):
    stack.write_gate(GATE)
    hostd = TurnHostd(stack.socket, [[line(NO_GRANT), line(OK)]])
    try:
        assert stack.run("alice", "acct_mgmt")[0] == PERM_DENIED
        hostd.thread.join(10)
        assert hostd.seen == [["pam.account"]], "closed at once, never reused"
    finally:
        hostd.stop()
