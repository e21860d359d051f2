"""check-config's warnings (hostd/cli/config_checks.py) and the README's sudo policy,
which once had an approve guardrail nobody could approve, a deny rule that blocked every
absolute path and a standing group a fresh host lacks (issue 20, item 4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fakes import FakeAccounts

from hostd.cli import config_checks
from hostd.errors import JitError
from hostd.policy import config as cfg_mod
from hostd.policy import grants
from hostd.policy.durations import compact_duration

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
POLICY = Path("/etc/jit/jit.toml")


def policy(text: str) -> cfg_mod.Config:
    import tomllib

    return cfg_mod.Config(**cfg_mod.parse_policy(POLICY, tomllib.loads(text)))


def fresh_debian() -> FakeAccounts:
    """root, alice and bob; Debian's `sudo` group with bob in it; no %oncall."""
    accounts = FakeAccounts()
    accounts.members["sudo"] = {"bob"}
    return accounts


def readme_sudo_policy() -> str:
    section = README[README.index("## sudo by grant"):]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def test_the_readmes_sudo_policy_draws_no_warning_on_a_fresh_host() -> None:
    cfg = policy(readme_sudo_policy())
    assert config_checks.name_warnings(cfg, fresh_debian()) == []
    assert [w for w in config_checks.approval_warnings(cfg, fresh_debian())
            if "db-admin" in w] == []


def test_the_readmes_deny_rule_refuses_recursive_removal_of_absolute_paths() -> None:
    from hostd.policy import sudo as sp

    cfg = policy(readme_sudo_policy() + '[roles.all]\nsudo = [{commands = ["ALL"]}]\n'
                 'authenticate = false\n')
    root = sp.RunasUser("root", 0, 0, "/root", "/bin/bash", (0,), "root")

    def code(argv: list[str]) -> str:
        req = sp.SudoRequest.from_wire([], ["user=al", "uid=1000", "gid=1000", "cwd=/"],
                                       argv, [], [])
        grant = {"id": "g", "user": "al", "role": "all", "exp": 2**40}
        return sp.decide(req, cfg, [grant], set(), root, 0, "h", lambda p: p).code

    assert code(["/usr/bin/rm", "-fr", "/"]) == "guardrail_denied"
    assert code(["/usr/bin/rm", "-r", "-f", "/tmp/x", "y"]) == "guardrail_denied"
    assert code(["/usr/bin/rm", "-f", "/tmp/x"]) == "allowed"
    assert code(["/usr/bin/systemctl", "stop", "x"]) == "needs_approval"


def test_names_that_do_not_exist_are_named_where_they_are() -> None:
    cfg = policy("""
[roles.db]
issuers = ["host"]
requesters = ["%nosuchgroup", "alice"]
approvers = ["nosuchuser", "bob"]
[[standing]]
members = ["root", "%oncall"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
[login]
require_grant = ["ghost"]
""")
    assert config_checks.name_warnings(cfg, fresh_debian()) == [
        "role db: requesters: group '%nosuchgroup' does not exist on this host",
        "role db: approvers: user 'nosuchuser' does not exist on this host",
        "standing[0]: members: group '%oncall' does not exist on this host",
        "login: require_grant: user 'ghost' does not exist on this host"]


def test_an_approve_guardrail_under_a_role_without_approvers_is_named() -> None:
    cfg = policy("""
[roles.db-admin]
issuers = ["corp"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
[[guardrails]]
action = "approve"
match = '^/usr/bin/systemctl stop '
""")
    [w] = config_checks.approval_warnings(cfg, fresh_debian())
    assert w.startswith("role db-admin: no approvers, so sudo commands an approve guardrail")
    assert "'^/usr/bin/systemctl stop '" in w


def test_more_approvals_than_known_approvers_can_never_be_decided() -> None:
    cfg = policy("""
[roles.db]
issuers = ["host"]
requesters = ["alice"]
approvers = ["%sudo"]
approvals = 2
""")
    assert config_checks.approval_warnings(cfg, fresh_debian()) == [
        "role db: approvals = 2 but this host knows 1 approver(s): its requests can never "
        "be approved"]


def test_a_moderated_role_with_too_few_known_approvers_can_never_start() -> None:
    cfg = policy("""
[roles.db]
issuers = ["host"]
approvers = ["%sudo"]
record = "always"
moderation = { watchers = 2 }
""")
    assert config_checks.approval_warnings(cfg, fresh_debian()) == [
        "role db: moderation needs 2 moderator(s) but this host knows 1 approver(s): its "
        "sessions can never start"]


def test_max_ttl_lines_say_which_is_the_default(tmp_path: Path) -> None:
    text = '[roles.a]\nissuers = ["corp"]\n[roles.b]\nissuers = ["corp"]\nmax_ttl = "4h"\n'
    (tmp_path / "jit.toml").write_text(text)
    assert config_checks.max_ttls(policy(text), tmp_path / "jit.toml") == [
        "role a: max_ttl 1h (the default)", "role b: max_ttl 4h"]


@pytest.mark.parametrize(("seconds", "text"), [(7200, "2h"), (5400, "1h30m"), (45, "45s"),
                                               (90061, "1d1h1m1s"), (0, "0s")])
def test_compact_duration(seconds: int, text: str) -> None:
    assert compact_duration(seconds) == text


def test_a_ttl_refusal_says_the_limit(mint, make_config, host) -> None:
    config = make_config()
    config.roles["docker"] = cfg_mod.Role("docker", ("docker",), 3600, ("corp",))
    with pytest.raises(JitError) as info:
        grants.verify(mint.token(exp=mint.now + 7200), config, host, mint.now)
    assert info.value.code == "ttl_exceeds_role_max"
    assert info.value.message == "2h asked, role docker allows 1h"



def test_check_config_lists_both_guardrail_forms_and_names_a_missing_program() -> None:
    cfg = policy("""
[[guardrails]]
match = '^/usr/bin/rm -rf /( |$)'
[[guardrails]]
action = "approve"
program = "/usr/bin/no-such-tool"
args = ['^--force$']
""")
    assert config_checks.guardrail_lines(cfg) == [
        "guardrails[0]: deny match '^/usr/bin/rm -rf /( |$)'",
        "guardrails[1]: approve program /usr/bin/no-such-tool args '^--force$'"]
    assert config_checks.guardrail_warnings(cfg, is_file=lambda p: False) == [
        "guardrails[1]: program '/usr/bin/no-such-tool' is not a file on this host, so the "
        "guardrail matches only that path"]
    assert config_checks.guardrail_warnings(cfg, is_file=lambda p: True) == []


def test_a_sudoedit_guardrail_is_no_missing_program() -> None:
    cfg = policy("""
[[guardrails]]
program = "/usr/bin/sudoedit"
args = ['^/etc/shadow$']
""")
    assert config_checks.guardrail_lines(cfg) == [
        "guardrails[0]: deny program sudoedit args '^/etc/shadow$'"]
    assert config_checks.guardrail_warnings(cfg, is_file=lambda p: False) == []


def test_max_ttl_lines_show_a_set_max_lead_time(tmp_path: Path) -> None:
    text = '[roles.a]\nissuers = ["corp"]\nmax_lead_time = "2d"\n'
    (tmp_path / "jit.toml").write_text(text)
    assert config_checks.max_ttls(policy(text), tmp_path / "jit.toml") == [
        "role a: max_ttl 1h (the default), max_lead_time 2d"]
