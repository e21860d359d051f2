"""pam/pam_jit.py's pure parts: the wire format without the json module, the outcome
table, argument parsing, su's quiet cases, the gate file's trust checks, and the whole
account/session logic against a stand-in PAM handle and a tiny socket server."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "pam" / "pam_jit.py"
spec = importlib.util.spec_from_file_location("pam_jit", MODULE)
pam_jit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pam_jit)


class Handle:
    """The attributes and constants of pam_python's PamHandle that the module uses."""

    PAM_SUCCESS, PAM_SERVICE_ERR, PAM_PERM_DENIED, PAM_AUTHINFO_UNAVAIL = 0, 3, 6, 9
    PAM_USER_UNKNOWN, PAM_SESSION_ERR, PAM_IGNORE = 10, 14, 25
    PAM_SILENT, PAM_ERROR_MSG, PAM_TEXT_INFO = 0x8000, 3, 4

    def __init__(self, user: str | None, service: str = "login") -> None:
        self.user, self.service, self.tty, self.rhost = user, service, "tty1", None
        self.said: list[tuple[int, str]] = []

    class Message:
        def __init__(self, style: int, text: str) -> None:
            self.msg_style, self.msg = style, text

    def conversation(self, msg):
        self.said.append((msg.msg_style, msg.msg))


def test_imports_only_builtin_or_preloaded_modules():
    """pam_python starts the interpreter with site (so os is loaded) and imports
    traceback; anything more pam_jit imports costs every login."""
    code = (f"import sys; before = set(sys.modules); sys.path.insert(0, {str(MODULE.parent)!r});"
            "import pam_jit; print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert set(out) <= {"pam_jit", "_json", "_socket", "grp", "pwd", "time"}, out


def test_encode_decode_round_trip_and_escapes():
    line = pam_jit._encode("pam.account", {"user": 'a"l\nice\udcff', "service": "login"})
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    assert json.loads(line) == {"v": 1, "op": "pam.account", "user": 'a"l\nice\udcff',
                                "service": "login"}
    assert pam_jit._decode(b'{"ok": true, "message": "x\\u00e9"}\n')["message"] == "xé"
    for bad in (b"", b"[]", b'{"ok": 1}', b"{", b'{"ok": true} x', b"\xff"):
        with pytest.raises(pam_jit.Failure):
            pam_jit._decode(bad)


def test_every_outcome_is_a_named_pam_code_and_unknown_fails_closed():
    h = Handle("alice")
    assert {o: pam_jit.pam_code(h, o) for o in pam_jit.OUTCOMES} == {
        "ok": 0, "inert": 25, "refused": 6, "unreachable_refused": 9, "no_user": 10,
        "session_failed": 14, "error": 3}
    assert pam_jit.pam_code(h, "whatever") == 3


def test_arguments_take_absolute_paths_only():
    assert pam_jit._args(["m", "socket=/tmp/s", "gate=rel", "other=/x"]) == {
        "socket": "/tmp/s", "gate": pam_jit.GATE}


@pytest.mark.parametrize("argv,quiet", [
    (["su", "-l", "alice"], False), (["su", "-", "alice"], False),
    (["su", "--login", "alice"], False), (["su", "-l", "alice", "-c", "id"], True),
    (["su", "-lc", "id", "alice"], True), (["su", "alice"], True),
    (["su", "--command=id", "-l", "alice"], True), (["su", "-l", "--", "alice", "-c"], False),
    (["runuser", "-u", "alice", "--", "id"], True),
])
def test_su_quiet_mirrors_util_linux(argv, quiet):
    cmdline = b"\0".join(a.encode() for a in argv) + b"\0"
    assert pam_jit.su_quiet("su-l", cmdline) is quiet
    assert pam_jit.su_quiet("login", cmdline) is False


def write_gate(path: Path, data: dict, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(data))
    os.chmod(path, mode)
    return path


def test_read_gate_trusts_only_a_private_root_file(tmp_path):
    good = {"v": 1, "require_grant": ["alice", "%wheel"], "when_unreachable": "deny"}
    path = write_gate(tmp_path / "gate.json", good)
    if os.geteuid() == 0:
        assert pam_jit.read_gate(str(path)) == {"require_grant": ["alice", "%wheel"],
                                                "when_unreachable": "deny"}
        write_gate(path, good, 0o666)
        assert pam_jit.read_gate(str(path)) is None  # writable by others
        write_gate(path, {"v": 2, "require_grant": []})
        assert pam_jit.read_gate(str(path)) is None
        write_gate(path, {"v": 1, "require_grant": "alice"})
        assert pam_jit.read_gate(str(path)) is None
        link = tmp_path / "link.json"
        link.symlink_to(path)
        assert pam_jit.read_gate(str(link)) is None
    else:
        assert pam_jit.read_gate(str(path)) is None  # not owned by root
    assert pam_jit.read_gate(str(tmp_path / "missing")) is None


def test_is_gated_resolves_groups_through_nss():
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    group = grp.getgrgid(me.pw_gid).gr_name
    assert pam_jit.is_gated([f"%{group}"], me.pw_name) is (me.pw_name != "root")
    assert pam_jit.is_gated(["nosuchuser"], "someone") is False
    assert pam_jit.is_gated(["%no-such-group"], "someone") is False
    assert pam_jit.is_gated(["root"], "root") is False


class FakeHostd:
    """Answers each request line with the next canned answer (or closes)."""

    def __init__(self, path: Path, answers: list[dict | None]) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.answers, self.requests = answers, []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        for answer in self.answers:
            conn, _ = self.sock.accept()
            with conn:
                self.requests.append(json.loads(conn.makefile("rb").readline()))
                if answer is not None:
                    conn.sendall(json.dumps(answer).encode() + b"\n")


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("the module trusts only root's socket and gate file")  # CI runs as root


def test_account_and_sessions_against_a_stand_in_hostd(tmp_path, root_only):
    sock = tmp_path / "s"
    gate = write_gate(tmp_path / "g", {"v": 1, "require_grant": ["alice"]})
    argv = ["pam_jit.py", f"socket={sock}", f"gate={gate}"]
    hostd = FakeHostd(sock, [
        {"ok": False, "code": "no_grant", "message": "jit: logging in to h requires ..."},
        {"ok": True, "code": "ok"},
        {"ok": True, "code": "ok", "message": "jit: active grants:\njit:   x"},
        {"ok": False, "code": "bad_request", "message": "no"},
        {"ok": False, "code": "not_found", "message": "no such user"},
    ])
    h = Handle("alice")
    assert pam_jit.pam_sm_acct_mgmt(h, 0, argv) == h.PAM_PERM_DENIED
    assert h.said == [(h.PAM_ERROR_MSG, "jit: logging in to h requires ...")]
    assert pam_jit.pam_sm_acct_mgmt(h, 0, argv) == h.PAM_SUCCESS
    assert pam_jit.pam_sm_open_session(h, 0, argv) == h.PAM_SUCCESS
    assert h.said[-1] == (h.PAM_TEXT_INFO, "jit: active grants:\njit:   x")
    assert pam_jit.pam_sm_acct_mgmt(h, 0, argv) == h.PAM_SERVICE_ERR  # fail closed
    assert pam_jit.pam_sm_close_session(h, 0, argv) == h.PAM_USER_UNKNOWN
    assert [r["op"] for r in hostd.requests] == ["pam.account", "pam.account",
                                                 "pam.open_session", "pam.account",
                                                 "pam.close_session"]
    assert hostd.requests[0] == {"v": 1, "op": "pam.account", "user": "alice",
                                 "service": "login", "tty": "tty1"}


def test_unreachable_follows_the_gate_file_and_root_never_asks(tmp_path, root_only):
    argv = ["pam_jit.py", f"socket={tmp_path / 'none'}", f"gate={tmp_path / 'g'}"]
    write_gate(tmp_path / "g", {"v": 1, "require_grant": ["alice"], "when_unreachable": "allow"})
    alice, bob, root = Handle("alice"), Handle("bob"), Handle("root")
    assert pam_jit.pam_sm_acct_mgmt(alice, 0, argv) == alice.PAM_AUTHINFO_UNAVAIL
    assert "cannot be reached" in alice.said[0][1]
    assert pam_jit.pam_sm_acct_mgmt(bob, 0, argv) == bob.PAM_SUCCESS
    assert pam_jit.pam_sm_open_session(bob, 0, argv) == bob.PAM_SESSION_ERR
    write_gate(tmp_path / "g", {"v": 1, "require_grant": ["alice"], "when_unreachable": "deny"})
    assert pam_jit.pam_sm_acct_mgmt(bob, 0, argv) == bob.PAM_PERM_DENIED
    assert pam_jit.pam_sm_acct_mgmt(root, 0, argv) == root.PAM_SUCCESS
    assert pam_jit.pam_sm_open_session(root, 0, argv) == root.PAM_IGNORE
    assert pam_jit.pam_sm_acct_mgmt(Handle(None), 0, argv) == root.PAM_USER_UNKNOWN
    assert pam_jit.pam_sm_acct_mgmt(Handle("alice", "jit-sudo"), 0, argv) == root.PAM_IGNORE
    write_gate(tmp_path / "g", {"v": 1, "require_grant": []})
    assert pam_jit.pam_sm_acct_mgmt(alice, 0, argv) == alice.PAM_SUCCESS  # nobody gated


def test_a_hostd_that_never_answers_times_out(tmp_path, root_only):
    sock = tmp_path / "s"
    FakeHostd(sock, [None])
    with pytest.raises(pam_jit.Failure) as err:
        pam_jit.ask(str(sock), "pam.account", {"user": "alice"}, timeout=0.5)
    assert err.value.code in ("timeout", "unreachable")


def test_a_bug_fails_closed():
    class Broken(Handle):
        @property
        def service(self):
            raise RuntimeError("boom")

        @service.setter
        def service(self, value):
            pass

    h = Broken("alice")
    assert pam_jit.pam_sm_acct_mgmt(h, 0, ["pam_jit.py"]) == h.PAM_SERVICE_ERR
