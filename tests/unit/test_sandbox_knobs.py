"""The sandbox daemon's test knobs (hostd/state/sandbox.py): a clock tests can move and
an idle timeout they can shorten, honoured under --root only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hostd.paths import Paths
from hostd.state import sandbox
from hostd.state.sandbox import KNOBS, Knobs, knobs


def write(root: Path, **values: object) -> None:
    path = root / KNOBS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values))
    tmp.replace(path)


def test_a_real_host_never_reads_the_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production (no --root) gets the wall clock and the server's idle timeout, and the
    knob file is not even looked for."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a knob file was read on a real host")

    monkeypatch.setattr(sandbox, "_read", refuse)
    monkeypatch.setattr(sandbox, "OffsetClock", refuse)
    got = knobs(Paths.for_root(None))
    assert got == Knobs() and got.clock is time.time and got.idle_timeout is None


def test_sandbox_clock_follows_the_file_while_running(tmp_path: Path) -> None:
    write(tmp_path, clock_offset=0)
    clock = knobs(Paths.for_root(tmp_path)).clock
    assert abs(clock() - time.time()) < 5
    write(tmp_path, clock_offset=3600)
    assert 3595 < clock() - time.time() < 3605  # read again: the file changed
    (tmp_path / KNOBS).unlink()
    assert abs(clock() - time.time()) < 5  # no file: no offset


@pytest.mark.parametrize(("value", "expected"), [(0.5, 0.5), (2, 2.0), (0, None), (-1, None),
                                                 ("1", None), (None, None)])
def test_idle_timeout_only_when_a_positive_number(tmp_path: Path, value: object,
                                                  expected: float | None) -> None:
    write(tmp_path, idle_timeout=value)
    assert knobs(Paths.for_root(tmp_path)).idle_timeout == expected


def test_garbled_or_missing_file_means_defaults(tmp_path: Path) -> None:
    assert knobs(Paths.for_root(tmp_path)).idle_timeout is None
    (tmp_path / KNOBS).parent.mkdir(parents=True)
    (tmp_path / KNOBS).write_text("{not json")
    k = knobs(Paths.for_root(tmp_path))
    assert k.idle_timeout is None and abs(k.clock() - time.time()) < 5


def test_no_shipped_unit_starts_hostd_with_a_root() -> None:
    """The knobs need --root; no unit hostd ships (nor the expiry timers it creates)
    passes one."""
    repo = Path(__file__).resolve().parents[2]
    units = sorted((repo / "systemd").glob("*.service"))
    assert units
    for unit in units:
        starts = [line for line in unit.read_text().splitlines() if line.startswith("Exec")]
        assert not [line for line in starts if "--root" in line], unit.name
    timers = (repo / "hostd" / "state" / "systemd_timers.py").read_text()
    assert "--expire" in timers and "--root" not in timers
