"""pam_jit.so run by libpam through pam_wrapper (a private service directory, no
/etc/pam.d) against a real hostd in a sandbox root: the module as login would load it,
with only its socket and gate file named by module arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox import POLICY, PYTHON, REPO, USERS, Sandbox

from hostd.client import Client
from hostd.protocol import request
from hostd.state.store import Store

WRAPPER = "/usr/lib/x86_64-linux-gnu/libpam_wrapper.so"
NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
MODULE = REPO / "pam" / "pam_jit.so"
PERMIT = "/lib/x86_64-linux-gnu/security/pam_permit.so"
RUNNER = Path(__file__).resolve().parent / "pam_runner.py"
SUCCESS, PERM_DENIED, AUTHINFO_UNAVAIL = 0, 6, 9

LOGIN_POLICY = POLICY + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true

[login]
require_grant = ["alice", "%developers"]
"""


class Pam:
    """A private PAM service directory whose stacks run pam_jit against the sandbox."""

    def __init__(self, box: Sandbox, nss: bool = False) -> None:
        self.box, self.nss = box, nss
        self.dir = box.root / "pam.d"
        self.dir.mkdir()
        module = (f"{MODULE} socket={box.socket_path} "
                  f"gate={box.root}/var/lib/jit/login-gate.json")
        (self.dir / "login").write_text(f"account required {module}\n"
                                        f"session required {module}\n")
        # hostd's own PAM service: the module must stay out of it (pam_permit decides)
        (self.dir / "jit-sudo").write_text(f"account required {module}\n"
                                           f"account required {PERMIT}\n")

    def run(self, user: str, *steps: tuple[str, int], service: str = "login") -> dict:
        r = subprocess.run([PYTHON, str(RUNNER), self._job(user, steps, service)],
                           env=self._env(), capture_output=True, text=True, timeout=60,
                           check=False)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.splitlines()[-1])

    def hold(self, user: str, *steps: tuple[str, int]) -> tuple[dict, subprocess.Popen]:
        """Run the steps in a process that stays (a logged-in user's) until its stdin
        closes: (its result, the process)."""
        proc = subprocess.Popen([PYTHON, str(RUNNER), self._job(user, steps, "login", True)],
                                env=self._env(), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        return json.loads(proc.stdout.readline()), proc

    @staticmethod
    def _job(user: str, steps: tuple, service: str, hold: bool = False) -> str:
        return json.dumps({"user": user, "service": service, "steps": steps, "hold": hold})

    def _env(self) -> dict[str, str]:
        env = {"LD_PRELOAD": WRAPPER, "PAM_WRAPPER": "1",
               "PAM_WRAPPER_SERVICE_DIR": str(self.dir), "PATH": "/usr/bin:/bin",
               "LANG": "C.UTF-8"}
        if self.nss:  # the module resolves users and groups from the sandbox's files too
            env.update(LD_PRELOAD=f"{WRAPPER}:{NSS_WRAPPER}",
                       NSS_WRAPPER_PASSWD=str(self.box.root / "etc/passwd"),
                       NSS_WRAPPER_GROUP=str(self.box.root / "etc/group"))
        return env


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    """pam_jit.so built from this tree (pam/Makefile, Debian's hardening flags)."""
    r = subprocess.run(["make", "-C", str(REPO / "pam"), "pam_jit.so"], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def _box(policy: str) -> Sandbox:
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    box = Sandbox(policy)
    box.start()
    return box


@pytest.fixture
def box():
    b = _box(LOGIN_POLICY)
    yield b
    b.cleanup()


@pytest.fixture
def pam(box):
    return Pam(box)


def activate(box: Sandbox, user: str, role: str) -> str:
    r = box.jit("activate", box.issue(user, role=role), "--json", user=user)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["grant"]["id"]


def test_gated_user_without_a_grant_is_refused_with_how_to_ask(box, pam):
    out = pam.run("alice", ("account", PERM_DENIED))
    assert out["ok"], out
    # console has no requesters: alice cannot ask for it on the host (issue 20)
    assert out["errors"] == ["jit: logging in to testhost requires an active grant of role "
                             "console; ask an administrator for one"]
    refused = box.events("login_refused")
    assert [e["JIT_USER"] for e in refused] == ["alice"]
    assert refused[0]["JIT_CODE"] == "no_grant"


def test_a_group_in_require_grant_gates_its_members(box, pam):
    assert pam.run("carol", ("account", PERM_DENIED))["ok"]  # carol is in developers


def test_a_grant_without_login_does_not_admit(box, pam):
    activate(box, "alice", "docker")
    assert pam.run("alice", ("account", PERM_DENIED))["ok"]


def test_a_login_grant_admits_and_the_session_is_registered(box, pam):
    grant_id = activate(box, "alice", "console")
    out = pam.run("alice", ("account", SUCCESS), ("open_session", SUCCESS),
                  ("close_session", SUCCESS))
    assert out["ok"], out
    assert out["errors"] == []
    text = "\n".join(out["info"])
    assert "jit: active grants:" in text and "console (docker): " in text
    assert " left (grant " + grant_id in text and "newgrp docker" in text
    reader = Store.reader(box.root / "var/lib/jit/state.db")
    sessions = reader.sessions_of_grant(grant_id)
    assert len(sessions) == 1
    s = sessions[0]
    assert (s["user"], s["uid"], s["pid"], s["id"]) == ("alice", 1001, out["pid"], None)
    assert [e["JIT_USER"] for e in box.events("session_opened")] == ["alice"]
    assert box.events("session_opened")[0]["JIT_GRANT_ID"] == grant_id
    # the row is closed just after close_session's answer (off the login's path)
    assert [e["JIT_USER"] for e in box.wait_for(lambda: box.events("session_closed"))] == [
        "alice"]
    s = reader.sessions_of_grant(grant_id)[0]
    assert s["closed"] is not None and s["closed"] >= s["opened"]
    assert box.events("login_refused") == []


def test_open_sessions_are_listed_by_jit_grants_sessions(box, pam):
    grant_id = activate(box, "alice", "console")
    out, held = pam.hold("alice", ("open_session", SUCCESS))  # logged in until released
    try:
        _listed(box, out, grant_id)
    finally:
        held.stdin.close()
        held.wait(30)


def _listed(box: Sandbox, out: dict, grant_id: str) -> None:
    rc, listed = box.jit_json("grants", "--sessions", "--all")
    assert rc == 0, listed
    assert [(s["user"], s["pid"], s["grants"]) for s in listed["sessions"]] == [
        ("alice", out["pid"], [grant_id])]
    rc, own = box.jit_json("grants", "--sessions", user="alice")
    assert rc == 0 and [s["pid"] for s in own["sessions"]] == [out["pid"]]
    rc, other = box.jit_json("grants", "--sessions", user="bob")
    assert rc == 0 and other["sessions"] == []
    r = box.jit("grants", "--sessions", "--all", user="bob")
    assert r.returncode == 1 and "permission_denied" in r.stderr
    text = box.jit("grants", "--sessions", "--all").stdout
    assert "alice" in text and grant_id in text
    # root without --all: not "no registered login sessions" while alice's is (issue 20)
    assert box.jit("grants", "--sessions").stdout == (
        "root has no registered login sessions (root's logins are never gated); 1 of other "
        "users: jit grants --sessions --all\n")


def test_sessions_left_open_by_a_gone_process_are_closed_by_the_sweep(box, pam):
    second, held = pam.hold("bob", ("open_session", SUCCESS))  # logged in throughout
    try:
        first = pam.run("alice", ("open_session", SUCCESS))  # exits without closing
        # the periodic sweep (sweep_interval, 1 s here) closes it, never bob's live one
        closed = box.wait_for(lambda: box.events("session_closed"))
        rc, listed = box.jit_json("grants", "--sessions", "--all")
        assert rc == 0 and [s["pid"] for s in listed["sessions"]] == [second["pid"]]
        assert [(e["JIT_USER"], e["JIT_REASON"]) for e in closed] == [
            ("alice", "process gone")]
        assert first["pid"] != second["pid"]
    finally:
        held.stdin.close()
        held.wait(30)


def test_sessions_of_a_grant_are_those_opened_while_it_was_live(box, pam):
    before = pam.run("alice", ("open_session", SUCCESS))
    grant_id = activate(box, "alice", "console")
    during = pam.run("alice", ("open_session", SUCCESS))
    reader = Store.reader(box.root / "var/lib/jit/state.db")
    assert [s["pid"] for s in reader.sessions_of_grant(grant_id)] == [during["pid"]]
    assert before["pid"] != during["pid"]


def test_an_ungated_user_passes(box, pam):
    out = pam.run("bob", ("account", SUCCESS), ("open_session", SUCCESS),
                  ("close_session", SUCCESS))
    assert out["ok"] and out["errors"] == [] and out["info"] == [], out
    assert box.events("login_refused") == []


def test_inert_under_the_jit_sudo_service(box, pam):
    assert pam.run("alice", ("account", PERM_DENIED))["ok"]
    assert pam.run("alice", ("account", SUCCESS), service="jit-sudo")["ok"]
    assert len(box.events("login_refused")) == 1  # only the login service asked hostd


def test_hostd_unreachable_gated_refused_others_allowed_root_always(box, pam):
    box.stop()
    out = pam.run("alice", ("account", AUTHINFO_UNAVAIL))
    assert out["ok"], out
    assert out["errors"] == ["jit: logging in to " + os.uname().nodename + " requires an "
                             "active grant, and jit-hostd cannot be reached to check one: "
                             "try again later"]
    assert pam.run("bob", ("account", SUCCESS))["ok"]
    assert pam.run("root", ("account", SUCCESS))["ok"]


def test_when_unreachable_deny_refuses_everyone_but_root():
    box = _box(LOGIN_POLICY + 'when_unreachable = "deny"\n')
    try:
        pam = Pam(box)
        assert pam.run("bob", ("account", SUCCESS))["ok"]  # hostd answers: ungated
        box.stop()
        out = pam.run("bob", ("account", PERM_DENIED))
        assert out["ok"] and "cannot be reached" in out["errors"][0], out
        assert pam.run("root", ("account", SUCCESS))["ok"]
    finally:
        box.cleanup()


def test_a_broken_policy_falls_back_to_the_last_gate_file(box, pam):
    box.stop()
    (box.root / "etc/jit/jit.toml").write_text("[login\n")
    box.start()  # hostd answers config_error to pam.account: the module uses the file
    assert box.events("config_error")
    assert pam.run("alice", ("account", AUTHINFO_UNAVAIL))["ok"]  # last good rules hold
    assert pam.run("bob", ("account", SUCCESS))["ok"]


def test_hostd_writes_the_gate_file_root_only_and_on_reload(box):
    gate = box.root / "var/lib/jit/login-gate.json"
    st = gate.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)
    assert json.loads(gate.read_text()) == {"v": 1, "require_grant": ["alice", "%developers"],
                                            "when_unreachable": "allow"}
    (box.root / "etc/jit/jit.toml").write_text(POLICY + '[login]\nwhen_unreachable = "deny"\n')
    box.proc.send_signal(signal.SIGHUP)
    assert box.wait_for(lambda: json.loads(gate.read_text())["when_unreachable"] == "deny",
                        timeout=10)
    assert json.loads(gate.read_text())["require_grant"] == []


def test_pam_jit_and_hostd_agree_on_who_is_gated():
    """Who is gated, as hostd decides (hostd/policy/logins.py, asked through pam.account)
    and as pam_jit decides from the gate file hostd wrote (hostd stopped), both reading
    the sandbox's users and groups (the module through nss_wrapper): named users, listed
    group members, members by primary group, never root."""
    policy = LOGIN_POLICY.replace('require_grant = ["alice", "%developers"]',
                                  'require_grant = ["%developers", "%bob", "%nosuch", "x"]')
    box = _box(policy)
    try:
        hostd_view = {}
        for user in USERS:
            answer = Client(box.socket_path).call(request("pam.account", user=user))
            assert answer.get("code") in ("ok", "no_grant"), answer
            hostd_view[user] = answer.get("gated", answer["code"] == "no_grant")
        box.stop()
        pam = Pam(box, nss=True)
        module_view = {user: pam.run(user, ("account", AUTHINFO_UNAVAIL))["ok"]
                       for user in USERS}
        assert module_view == hostd_view
        assert {u for u, gated in hostd_view.items() if gated} == {"alice", "bob", "carol"}
    finally:
        box.cleanup()


def test_the_pam_ops_are_root_only(box):
    r = subprocess.run(
        ["setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", PYTHON, "-c",
         "import sys; from hostd.client import Client; from hostd.protocol import request; "
         "print(Client(sys.argv[1]).call(request('pam.account', user='bob'))['code'])",
         str(box.socket_path)], env=box.env, capture_output=True, text=True, timeout=60,
        check=False)
    assert r.stdout.strip() == "permission_denied", r.stderr


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
