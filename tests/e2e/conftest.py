"""Fixtures: booted Debian 12 containers with the built jitaccess .deb installed.

One shared, configured host for the session; scenarios that change the host for good
(a reboot, removing the package) get one of their own per module. The .deb missing is a
failure, not a skip: a CI run that skipped the e2e tier would be green and prove nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))  # the repo: hostd.events for the MESSAGE_IDs

from container import Container  # noqa: E402
from jithost import Host, configure, find_deb, prepare  # noqa: E402


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the e2e tests boot containers with systemd-nspawn: run them as root")


@pytest.fixture(scope="session")
def deb() -> Path:
    _need_root()
    try:
        return find_deb()
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)


def _host(deb: Path, prefix: str) -> Iterator[Host]:
    box = Container.create(prefix)
    try:
        state = prepare(box, deb)
        configure(box)
        yield Host(box, state)
    finally:
        box.close()


@pytest.fixture(scope="session")
def host(deb: Path) -> Iterator[Host]:
    """The shared host: installed, users added, corp issuer and docker role configured."""
    yield from _host(deb, "jit-e2e")


@pytest.fixture(scope="module")
def own_host(deb: Path) -> Iterator[Host]:
    """A host for one module alone (reboots it, or removes the package)."""
    yield from _host(deb, "jit-e2e-own")
