"""The crash-consistency suite, short: about 50 kills of a sandbox hostd at random points
of activate, revoke, expire, approve and break-glass, with zero violations allowed.
`make crash` runs 500."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crash import crash, report

ITERATIONS = int(os.environ.get("JIT_CRASH_ITERATIONS", "50"))


def test_crash_consistency_after_kill_9():
    if os.geteuid() != 0:
        pytest.fail("the crash suite runs as root (real gpasswd, setuid to sandbox users)")
    seed = random.randrange(2**32)
    run, seconds = crash(ITERATIONS, seed)
    summary = report(run, ITERATIONS, seed, seconds)
    print(summary)
    assert sum(run.kills[p] for p in ("activate", "revoke", "expire", "approve",
                                      "breakglass")) == ITERATIONS
    assert not run.violations, summary
