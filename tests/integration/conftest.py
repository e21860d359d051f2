from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the shared fakes (tests/fakes.py)
from sandbox import POLICY, Sandbox


@pytest.fixture
def sandbox():
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    box = Sandbox(POLICY, extra_groups={"docker": ["bob"]})
    box.start()
    yield box
    box.cleanup()
