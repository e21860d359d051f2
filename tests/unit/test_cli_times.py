"""Every TIME option takes `-DURATION` as written (`jit audit --since -1d`), and
`--held-at live` means now (issue 20, items 1 and 2)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_stream import GRANT, record, write_journal

from hostd.cli import main as cli
from hostd.cli.argv import join_relative_times, time_options


def test_every_time_option_is_found_in_the_parser() -> None:
    assert time_options(cli.build_parser()) >= {"--since", "--until", "--held-at",
                                                "--not-before"}


@pytest.mark.parametrize(("argv", "want"), [
    (["audit", "--since", "-1d"], ["audit", "--since=-1d"]),
    (["audit", "--until", "-2h", "--user", "a"], ["audit", "--until=-2h", "--user", "a"]),
    (["audit", "--held-at", "-1h30m"], ["audit", "--held-at=-1h30m"]),
    (["issue", "--not-before", "-5m"], ["issue", "--not-before=-5m"]),
    (["audit", "--since", "--json"], ["audit", "--since", "--json"]),  # an option stays one
    (["revoke", "x", "--reason", "-1d"], ["revoke", "x", "--reason", "-1d"]),  # not a TIME
    (["audit", "--", "--since", "-1d"], ["audit", "--", "--since", "-1d"]),
])
def test_join_relative_times(argv: list[str], want: list[str]) -> None:
    assert join_relative_times(cli.build_parser(), argv) == want


@pytest.fixture(scope="module")
def recent_journal(tmp_path_factory) -> Path:
    now = time.time()
    old = dict(GRANT, grant_id="g-old")
    new = dict(GRANT, grant_id="g-new")
    events = [record("grant_activated", "old", int((now - 3 * 86400) * 1e6), **old),
              record("grant_expired", "old ends", int((now - 3 * 86400 + 60) * 1e6), **old),
              record("grant_activated", "new", int((now - 3600) * 1e6),
                     **dict(new, not_after="2099-01-01T00:00:00Z"))]
    return write_journal(events, tmp_path_factory.mktemp("journal") / "recent.journal")


def audit(*argv: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["audit", *argv])
    return code, out.getvalue().splitlines()


def test_since_and_until_accept_a_relative_time_as_written(recent_journal: Path) -> None:
    code, lines = audit("--json", "--journal-file", str(recent_journal), "--since", "-1d")
    assert code == 0 and [json.loads(x)["JIT_GRANT_ID"] for x in lines] == ["g-new"]
    code, lines = audit("--json", "--journal-file", str(recent_journal), "--until", "-2d")
    assert code == 0 and [json.loads(x)["JIT_GRANT_ID"] for x in lines] == ["g-old", "g-old"]


def test_held_at_live_is_now(recent_journal: Path) -> None:
    code, lines = audit("--json", "--journal-file", str(recent_journal), "--held-at", "live")
    answer = json.loads(lines[0])
    assert code == 0 and [h["grant_id"] for h in answer["held"]] == ["g-new"]


@pytest.mark.parametrize("argv", [["audit", "--json", "--format", "xml"],
                                  ["request", "docker", "--json"],
                                  ["--json"],
                                  ["revoke", "--json", "--bogus", "x"]])
def test_usage_errors_are_json_with_json(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out = capsys.readouterr()
    answer = json.loads(out.out)
    assert answer["ok"] is False and answer["code"] == "usage" and answer["message"]
    assert out.err == ""


def test_usage_errors_stay_text_without_json(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["audit", "--format", "xml"])
    assert info.value.code == 2
    out = capsys.readouterr()
    assert out.out == "" and "invalid choice: 'xml'" in out.err
