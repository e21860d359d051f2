"""`jit idp refresh|status`, `jit revocations fetch` and `jit login`'s argument checks,
through jit's own main() against a sandbox root (JIT_ROOT) and the loopback IdP of
test_fetch.py: what an administrator sees, exit codes included."""

from __future__ import annotations

import json
import os

import pytest
from test_fetch import IdP, _sandbox

from hostd.cli import login as cli_login
from hostd.cli.main import main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the fetcher's commands are root's")


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    paths = _sandbox(tmp_path)
    monkeypatch.setenv("JIT_ROOT", str(tmp_path))
    return paths


@pytest.fixture
def idp():
    with IdP() as server:
        yield server


def _issuer(paths, idp: IdP, extra: str = "") -> None:
    (paths.issuers_dir / "corp.toml").write_text(
        f'name = "corp"\ntype = "oidc"\nissuer = "{idp.issuer}"\nclient_id = "jitaccess"\n'
        f'algorithms = ["RS256"]\n{extra}')


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_refresh_then_status(sandbox, idp, capsys):
    _issuer(sandbox, idp)
    assert main(["idp", "refresh"]) == 0
    assert "corp: 1 key(s) r1, fresh until" in capsys.readouterr().out
    assert main(["idp", "status", "--json"]) == 0
    [corp] = _json(capsys)["issuers"]
    assert corp["keys"] == [{"kid": "r1", "algorithms": ["RS256"]}]
    assert corp["age"] is not None and corp["expired"] is False
    assert main(["idp", "refresh", "--due", "--json"]) == 0  # fresh: nothing to do
    assert _json(capsys)["issuers"] == []


def test_a_failed_refresh_exits_3_and_status_shows_the_error(sandbox, idp, capsys):
    _issuer(sandbox, idp)
    assert main(["idp", "refresh"]) == 0
    idp.broken = True
    capsys.readouterr()
    assert main(["idp", "refresh", "--json"]) == 3
    answer = _json(capsys)
    assert answer["code"] == "fetch_failed" and "HTTP 500" in answer["message"]
    assert main(["idp", "status"]) == 0
    shown = capsys.readouterr().out
    assert "keys: r1 (RS256)" in shown and "last error at" in shown and "HTTP 500" in shown


def test_refresh_names_an_unknown_issuer(sandbox, idp, capsys):
    _issuer(sandbox, idp)
    assert main(["idp", "refresh", "nope"]) == 2
    assert "no OIDC issuer 'nope'" in capsys.readouterr().err


def test_revocations_fetch_pulls_only_what_is_due(sandbox, idp, capsys):
    (sandbox.issuers_dir / "lists.toml").write_text(
        f'name = "corp"\nkeys = ["k.pub"]\n[revocation]\nurl = "{idp.base}/list.jwt"\n')
    assert main(["revocations", "fetch", "--json"]) == 0
    [first] = _json(capsys)["issuers"]
    assert first["changed"] is True
    assert main(["revocations", "fetch", "--json"]) == 0
    assert _json(capsys)["issuers"] == []  # refresh (1m) has not passed
    assert main(["revocations", "fetch", "--force"]) == 0
    assert capsys.readouterr().out.strip() == "corp: unchanged"


@pytest.mark.parametrize("argv", [["login"], ["login", "oncall", "--roles"]])
def test_login_wants_a_role_or_roles(sandbox, argv, capsys):
    assert main(argv) == 2
    assert "name a ROLE" in capsys.readouterr().err


def test_login_without_a_refreshed_issuer_says_what_to_run(sandbox, capsys):
    assert main(["login", "oncall"]) == 2
    assert "jit idp refresh" in capsys.readouterr().err


def test_login_prints_a_grant_or_the_request_it_became():
    grant = {"grant": {"id": "g1", "role": "oncall", "groups": ["docker"], "exp": 2e9,
                       "not_after": "2033-05-18T03:33:20Z"}}
    assert cli_login._activated(grant).startswith("grant g1 active: role oncall, groups "
                                                  "docker, until 2033-05-18T03:33:20Z")
    request = {"request": {"id": "r1", "state": "pending", "role": "docker"}}
    assert cli_login._activated(request) == ("request r1 pending: role docker needs approval "
                                             "(jit requests shows it)")
