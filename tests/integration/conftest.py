from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sandbox import Sandbox

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host"]

[roles.ops]
groups = ["docker", "adm"]
max_ttl = "1h"
issuers = ["corp"]

[daemon]
sweep_interval = "1s"
"""


@pytest.fixture
def sandbox():
    if os.geteuid() != 0:
        pytest.fail("integration tests run as root (real gpasswd, setpriv)")
    box = Sandbox(POLICY, extra_groups={"docker": ["bob"]})
    box.start()
    yield box
    box.cleanup()
