"""The recorder's idle flush and its stream to hostd (DESIGN §13 "Live watching, the
rest"): what the masker holds is shown at once when the read that brought it drained
the command's stream, a secret still forming stays held all the same, and a recorder
talking to a hostd older than raw frames falls back to JSON lines."""

from __future__ import annotations

import os
import time

import pytest

from hostd.errors import JitError
from hostd.record import proxy, sinks
from hostd.record.options import Options
from hostd.record.sinks import make_masker


@pytest.fixture
def rec(capfdbinary):
    """A recorder with a masker; what it shows goes to fd 1, captured (`shown`)."""
    r = proxy.Recorder(Options())
    r.out_masker = make_masker([], True)
    yield r, capfdbinary, 1
    for fd in (r.sig_r, r.sig_w):
        os.close(fd)


def _shown(cap) -> bytes:
    return cap.readouterr().out


def test_a_drained_read_is_due_at_once_and_shown_on_the_next_wait(rec):
    r, read, write = rec
    before = time.monotonic()
    assert r.emit(write, r.out_masker, b"$ ls\r\nfile\r\n$ ")
    shown = _shown(read)
    assert r.holding(), "the masker holds a batch back (the case this is about)"
    assert r.due is not None and r.due <= time.monotonic()  # due now, not IDLE_FLUSH later
    r.flush_due()
    shown += _shown(read)
    assert shown == b"$ ls\r\nfile\r\n$ "
    assert not r.holding() and r.due is None and before <= time.monotonic()


def test_a_full_read_keeps_the_idle_flush_delay(rec):
    r, read, write = rec
    data = b"x" * (proxy.CHUNK - 3) + b"abc"  # a read of CHUNK: more is waiting
    assert r.emit(write, r.out_masker, data)
    assert r.holding(), "the masker keeps the tail of a full read for the next one"
    assert r.due is not None and r.due > time.monotonic() + proxy.IDLE_FLUSH / 2
    r.flush_maskers()
    shown = _shown(read)
    assert len(shown) == len(data) and shown.endswith(b"abc")


def test_a_secret_still_forming_stays_held_after_a_drained_read(rec):
    r, read, write = rec
    assert r.emit(write, r.out_masker, b"key AKIAIOSF")
    r.flush_due()  # due at once: everything but the forming secret is shown
    shown = _shown(read)
    assert b"IOSF" not in shown and shown.startswith(b"key ")
    assert r.holding() and r.due == r.held_since + r.hold_max
    assert r.emit(write, r.out_masker, b"ODNN7EXAMPLE ok\r\n")
    r.flush_due()
    rest = _shown(read)
    assert b"IOSFODNN7EXAMPLE" not in shown + rest and rest.endswith(b" ok\r\n")


class _Stream:
    def __init__(self, opened: dict) -> None:
        self.opened = opened
        self.client = self
        self._sock = self

    def settimeout(self, _t: float) -> None:
        pass


def test_an_old_hostd_that_refuses_raw_gets_json_lines(monkeypatch):
    asked: list[dict] = []

    class OldHostd:
        def __init__(self, *_a, **_k) -> None:
            pass

        def stream(self, op: str, **fields) -> _Stream:
            asked.append(fields)
            if "raw" in fields:
                raise JitError("bad_request", "unknown field 'raw' for record.open")
            return _Stream({"ok": True, "id": "0123456789abcdef"})

    monkeypatch.setattr("hostd.client.Client", OldHostd)
    opts = Options()
    opts.token = "t" * 32
    sink, answer = sinks.open_hostd(opts, 80, 24, False)
    assert [("raw" in f) for f in asked] == [True, False]
    assert sink.raw is False and answer["id"] == "0123456789abcdef"


def test_other_refusals_are_not_retried(monkeypatch):
    class Refusing:
        def __init__(self, *_a, **_k) -> None:
            pass

        def stream(self, op: str, **fields) -> _Stream:
            raise JitError("not_found", "unknown, used or expired recording token")

    monkeypatch.setattr("hostd.client.Client", Refusing)
    opts = Options()
    opts.token = "t" * 32
    with pytest.raises(JitError, match="expired"):
        sinks.open_hostd(opts, 80, 24, False)


def test_a_short_read_with_more_already_waiting_keeps_the_delay(rec):
    """A busy pty gives reads far short of CHUNK: more waiting means not drained."""
    r, _, write = rec
    src_r, src_w = os.pipe()
    try:
        os.write(src_w, b"more output already waiting")
        assert r.emit(write, r.out_masker, b"$ ls\r\nfile\r\n$ ", src=src_r)
        assert r.holding() and r.due is not None
        assert r.due > time.monotonic() + proxy.IDLE_FLUSH / 2
        os.read(src_r, 100)
        assert r.emit(write, r.out_masker, b"more\r\n", src=src_r)  # now drained
        assert r.due <= time.monotonic()
    finally:
        os.close(src_r)
        os.close(src_w)
