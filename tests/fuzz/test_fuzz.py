"""Short runs of both fuzzers (`make test-fuzz`): each must report zero findings.

Fixed seeds keep the runs repeatable; `make fuzz` runs the full-size ones. The protocol
run needs root (a real daemon, real uids), as the integration tests do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_protocol
import fuzz_tokens

TOKEN_CASES = 3000
FRAMES = 2000
SEED = 20261130


def test_token_fuzzer_finds_no_crash_and_no_forgery(capsys):
    result = fuzz_tokens.run(TOKEN_CASES, SEED)
    fuzz_tokens.report(result, SEED)
    out = capsys.readouterr().out
    assert result.cases == TOKEN_CASES
    assert result.findings == [], out
    # the oracle was exercised: some mutated tokens verified and were judged
    assert result.accepted > TOKEN_CASES // 50, out
    assert len(result.codes) >= 8, out


def test_protocol_fuzzer_finds_no_internal_error_hang_or_bad_answer(capsys):
    if os.geteuid() != 0:
        pytest.fail("the protocol fuzzer runs as root (real daemon, setresuid workers)")
    result = fuzz_protocol.run(FRAMES, SEED)
    fuzz_protocol.report(result)
    out = capsys.readouterr().out
    assert result.frames == FRAMES
    assert result.findings == 0, out
    # the daemon did real work, not only refusals of garbage
    assert result.tally.codes["ok"] > FRAMES // 50, out
