"""Login gating (hostd/policy/logins.py): who is gated, what admits them, what they read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hostd.policy import config as cfg
from hostd.policy import logins

POLICY = Path("/etc/jit/jit.toml")
NOW = 1_800_000_000


def config(text: dict) -> cfg.Config:
    return cfg.Config(**cfg.parse_policy(POLICY, text))


CONF = config({
    "roles": {"console": {"groups": ["docker"], "login": True, "requesters": ["%ops"],
                          "issuers": ["host"],
                          "approvers": ["bob"]},
              "shell": {"groups": ["adm"], "login": True},
              "docker": {"groups": ["docker"]}},
    "login": {"require_grant": ["alice", "%contractors"]},
})


def grant(gid: str, role: str, user: str = "alice", exp: int = NOW + 600,
          state: str = "active") -> dict:
    return {"id": gid, "role": role, "user": user, "exp": exp, "state": state,
            "groups": ["docker"]}


def test_gated_by_name_or_group_never_root():
    assert logins.gated(CONF.login_require_grant, "alice", set())
    assert logins.gated(CONF.login_require_grant, "dave", {"contractors"})
    assert not logins.gated(CONF.login_require_grant, "bob", {"developers"})
    assert not logins.gated(["root", "%root"], "root", {"root"})


def test_ungated_users_pass_without_a_grant():
    d = logins.decide(CONF, [], "bob", set(), NOW, "web1")
    assert (d.allowed, d.gated, d.message) == (True, False, "")


def test_gated_without_a_grant_is_refused_with_a_role_to_ask_for():
    d = logins.decide(CONF, [], "alice", set(), NOW, "web1")
    assert not d.allowed and d.gated
    # alice is not among console's requesters: she cannot request it, so the hint
    # names the role and who can help, never a command she would be refused (issue 20)
    assert d.message == ("jit: logging in to web1 requires an active grant of role "
                         "console; ask an administrator for one")
    d = logins.decide(CONF, [], "dave", {"contractors", "ops"}, NOW, "web1")
    assert d.message.endswith("ask with: jit request console")


def test_the_role_a_user_may_request_is_suggested_first():
    b = {"login": True, "requesters": ["eve"], "issuers": ["host"], "approvers": ["bob"]}
    conf = config({"roles": {"a": {"login": True}, "b": b},
                   "login": {"require_grant": ["eve"]}})
    assert logins.decide(conf, [], "eve", set(), NOW, "h").message.endswith("jit request b")


def test_no_login_role_says_so():
    conf = config({"login": {"require_grant": ["eve"]}})
    assert "no role here admits logins" in logins.decide(conf, [], "eve", set(), NOW, "h").message


def test_only_live_login_grants_admit():
    for g in (grant("1", "docker"), grant("2", "console", exp=NOW),
              grant("3", "console", state="expired"), grant("4", "console", user="bob"),
              grant("5", "gone-role")):
        assert not logins.decide(CONF, [g], "alice", set(), NOW, "h").allowed, g
    d = logins.decide(CONF, [grant("1", "docker"), grant("6", "shell")], "alice", set(), NOW,
                      "h")
    assert d.allowed and d.grant_ids == ("6",)


def test_the_host_name_is_escaped_in_the_refusal():
    assert "\\x1b" in logins.refusal("web\x1b[2J", "console")


def test_session_text_lists_grants_with_time_left_and_the_newgrp_hint():
    text = logins.session_text([grant("b", "shell", exp=NOW + 3600),
                                grant("a", "console", exp=NOW + 125)], NOW)
    lines = text.splitlines()
    assert lines[0] == "jit: active grants:"
    assert lines[1] == "jit:   console (docker): 2m 05s left (grant a)"
    assert lines[2] == "jit:   shell (docker): 1h 00m left (grant b)"
    assert "`newgrp docker`" in lines[3]
    assert logins.session_text([], NOW) == ""


def test_session_text_escapes_role_and_group_names():
    g = dict(grant("a", "con\nsole"), groups=["doc\x1bker"])
    assert "\n" not in logins.session_text([g], NOW).splitlines()[1]
    assert "\x1b" not in logins.session_text([g], NOW)


def test_gate_file_is_root_only_atomic_and_rewritten_only_on_change(tmp_path):
    path = tmp_path / "var/lib/jit/login-gate.json"
    assert logins.write_gate(path, CONF)
    assert json.loads(path.read_text()) == {"v": 1, "require_grant": ["alice", "%contractors"],
                                            "when_unreachable": "allow"}
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not logins.write_gate(path, CONF)
    os.chmod(path, 0o644)
    assert logins.write_gate(path, CONF)  # a loosened mode is put right
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert logins.write_gate(path, config({"login": {"when_unreachable": "deny"}}))
    assert json.loads(path.read_text())["when_unreachable"] == "deny"
    assert [p.name for p in path.parent.iterdir()] == ["login-gate.json"]
