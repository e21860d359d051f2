"""`jit-record --help` explains every option it parses (issue 20)."""

from __future__ import annotations

import re

from hostd.record import main as recorder


def test_help_lists_every_option_of_the_usage_line(capsys) -> None:
    assert recorder.main(["--help"]) == 0
    out = capsys.readouterr().out
    options = set(re.findall(r"--[a-z-]+", recorder.USAGE))
    assert options and all(re.search(rf"^  {o}\b", out, re.M) or f" {o} " in out
                           for o in options), out
    assert recorder.main(["-h"]) == 0


def test_an_unknown_option_is_still_a_usage_error(capsys) -> None:
    assert recorder.main(["--bogus"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
