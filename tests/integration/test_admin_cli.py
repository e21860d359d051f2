"""An admin's first hour (issue 20) against a real hostd in a sandbox root: `jit reload`
says whether the new policy took, and requesters withdraw their own requests."""

from __future__ import annotations

import json
import subprocess

from sandbox import POLICY, PYTHON, REPO, USERS

SELF_SERVE_FREE = POLICY + """
[roles.db]
groups = ["docker"]
max_ttl = "1h"
issuers = ["host"]
requesters = ["alice"]
approvers = ["bob"]
approvals = 1
"""


def call_op(box, op: str, user: str = "root") -> dict:
    """One raw op through the standard client (what `jit reload` sends)."""
    code = ("import json,sys; from hostd.client import Client; from hostd.wire import request;"
            f"print(json.dumps(Client({str(box.socket_path)!r}).call(request({op!r}))))")
    cmd = [PYTHON, "-c", code]
    if user != "root":
        cmd = ["setpriv", f"--reuid={USERS[user]}", f"--regid={USERS[user]}",
               "--clear-groups", *cmd]
    out = subprocess.run(cmd, env=box.env, capture_output=True, text=True, check=True,
                         cwd=box.root, timeout=60)
    return json.loads(out.stdout)


def test_reload_applies_a_good_policy_and_says_so(sandbox):
    (sandbox.root / "etc/jit/jit.toml").write_text(SELF_SERVE_FREE)
    r = sandbox.jit("reload")
    assert r.returncode == 0, r.stderr
    assert "reloaded; hostd now serves roles db, docker, ops" in r.stdout
    code, answer = sandbox.jit_json("reload")
    assert code == 0 and answer["reloaded"] is True and answer["roles"] == ["db", "docker", "ops"]
    code, made = sandbox.jit_json("request", "db", "--for", "10m", "--reason", "r",
                                  user="alice")
    assert code == 0, made  # hostd serves the new role


def test_reload_of_a_broken_policy_is_refused_and_exits_non_zero(sandbox):
    (sandbox.root / "etc/jit/jit.toml").write_text(POLICY + "\n[roles.x]\ngroups = 3\n")
    r = sandbox.jit("reload")
    assert r.returncode == 2
    assert r.stderr.startswith("jit: config_error: ") and "not reloaded" in r.stderr
    assert len(r.stderr.splitlines()) == 1
    # hostd's own answer when asked directly: refused, the previous policy stays
    answer = call_op(sandbox, "config.reload")
    assert answer["ok"] is False and answer["code"] == "config_error"
    assert "hostd keeps the previous one" in answer["message"]
    assert call_op(sandbox, "status")["config_error"] is None
    refused = sandbox.events("config_error")
    assert refused and "reload refused" in refused[-1]["MESSAGE"]
    code, grant = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")
    assert code == 0, grant  # the previous policy still serves docker


def test_reload_is_root_only(sandbox):
    r = sandbox.jit("reload", user="alice")
    assert r.returncode != 0 and "run it as root" in r.stderr
    answer = call_op(sandbox, "config.reload", user="alice")
    assert answer["code"] == "permission_denied"


def test_reload_without_a_running_hostd_checks_and_says_so(sandbox):
    sandbox.stop()
    r = sandbox.jit("reload")
    assert r.returncode == 0 and "hostd is not running" in r.stdout


def test_check_config_warns_of_names_this_host_lacks_and_shows_max_ttl(sandbox):
    (sandbox.root / "etc/jit/jit.toml").write_text(POLICY + """
[roles.db]
issuers = ["host"]
requesters = ["%nosuchgroup"]
approvers = ["nosuchuser"]
[[standing]]
members = ["%oncall"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
""")
    r = sandbox.jit("check-config")
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        "jit: warning: role db: requesters: group '%nosuchgroup' does not exist on this host",
        "jit: warning: role db: approvers: user 'nosuchuser' does not exist on this host",
        "jit: warning: standing[0]: members: group '%oncall' does not exist on this host",
        "jit: warning: role db: approvals = 1 but this host knows 0 approver(s): its "
        "requests can never be approved"]
    assert "role db: max_ttl 1h (the default)" in r.stdout.splitlines()
    assert "role docker: max_ttl 4h" in r.stdout.splitlines()
    code, answer = sandbox.jit_json("check-config")
    assert code == 0 and answer["max_ttl"] == {"db": 3600, "docker": 14400, "ops": 3600}


def test_a_ttl_refusal_names_the_roles_limit(sandbox):
    r = sandbox.jit("activate", sandbox.issue("alice", role="ops", duration="2h"), user="alice")
    assert r.returncode == 1
    assert r.stderr == "jit: ttl_exceeds_role_max: 2h asked, role ops allows 1h\n"


def test_a_requester_withdraws_a_pending_request_and_asking_twice_joins(sandbox):
    (sandbox.root / "etc/jit/jit.toml").write_text(SELF_SERVE_FREE)
    assert sandbox.jit("reload").returncode == 0
    code, first = sandbox.jit_json("request", "db", "--for", "10m", "--reason", "r",
                                   user="alice")
    assert code == 0 and first["request"]["state"] == "pending"
    rid = first["request"]["id"]
    again = sandbox.jit("request", "db", "--for", "20m", "--reason", "r2", user="alice")
    assert again.returncode == 0
    assert again.stdout.startswith(f"request {rid} for role db is already pending")
    r = sandbox.jit("requests", "--cancel", rid, user="bob")  # an approver, not its requester
    assert r.returncode == 1 and r.stderr.startswith("jit: not_found: ")
    r = sandbox.jit("requests", "--cancel", rid, user="alice")
    assert (r.returncode, r.stdout) == (0, f"request {rid} withdrawn\n")
    code, listed = sandbox.jit_json("requests", user="alice")
    assert [x["state"] for x in listed["requests"] if x["id"] == rid] == ["cancelled"]
    r = sandbox.jit("approve", rid, user="bob")
    assert r.returncode == 1 and "cancelled by its requester" in r.stderr
    [ev] = [e for e in sandbox.events("request_expired") if e["JIT_REQUEST_ID"] == rid]
    assert ev["JIT_DECISION"] == "cancelled"


def test_bash_completion_offers_grant_request_and_recording_ids_from_hostd(sandbox):
    """completion/jit asks the real `jit` (COMP_WORDS[0]) for ids, as the user."""
    (sandbox.root / "etc/jit/jit.toml").write_text(SELF_SERVE_FREE)
    assert sandbox.jit("reload").returncode == 0
    code, g = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")
    assert code == 0, g
    code, r = sandbox.jit_json("request", "db", "--for", "10m", "--reason", "r", user="alice")
    assert code == 0, r
    jit = sandbox.root / "jit"
    jit.write_text(f'#!/bin/sh\nexec {PYTHON} -m hostd.cli.main "$@"\n')
    jit.chmod(0o755)
    script = REPO / "completion" / "jit"

    def complete(*words: str, user: str = "alice") -> list[str]:
        code = (f"source {script}; COMP_WORDS=({jit} {' '.join(words)} ''); "
                f"COMP_CWORD={len(words) + 1}; _jit; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        uid = USERS[user]
        out = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                              "bash", "--norc", "-c", code], env=sandbox.env,
                             capture_output=True, text=True, check=True, timeout=60)
        return [x for x in out.stdout.splitlines() if x]

    assert complete("revoke") == [g["grant"]["id"]]
    assert complete("requests", "--cancel") == [r["request"]["id"]]
    assert complete("approve", user="bob") == [r["request"]["id"]]
    assert complete("request") == ["docker", "ops", "db"]
