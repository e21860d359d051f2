"""hostd/masking/hsscan.py: Hyperscan only finds where matches may start; the masking
is the same as with bytes.find (the fallback when libhs.so.5 is missing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostd.masking import hsscan
from hostd.masking import masker as masking
from hostd.masking.masker import Masker

pytestmark = pytest.mark.skipif(hsscan._load() is None, reason="libhs.so.5 not installed")

PIECES = [b"AKIAIOSFODNN7EXAMPLE", b"AKIA", b"password=", b"PASSWORD: ", b"hunter2",
          b'"apiKey": "k"', b"ghp_" + b"a1B2c3D4e5" * 4, b"\r\n", b" ", b"\xc3\xa9",
          b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", b"mysql -u r -phunter2",
          b"Cookie: a=b", b"Bearer abcdefgh12345", b"sk_live_4eC39HqLyjWDarjtT1zdp7dc",
          b"https://u:p@h", b"xoxb-1234567890-abc", b"TICKET-123456"]


def python_engine(m: Masker) -> Masker:
    m._lits, m._lit_owner, m._longest = None, [], {}
    m._searched = float("-inf")  # never switches to Hyperscan
    return m


def hyperscan_engine(m: Masker) -> Masker:
    m._lits, m._lit_owner, m._longest = masking._literals(m._rules)
    m._searched = hsscan.AFTER
    return m


def run(m: Masker, data: bytes, cuts: list[int]) -> bytes:
    out, prev = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(m.feed(data[prev:cut]))
        prev = cut
    return b"".join(out) + m.flush()


def test_the_scanner_comes_once_a_stream_is_long():
    m = Masker()
    m.feed(b"x" * 1000)
    assert m._lits is None  # a short command never pays for the compile
    for _ in range(hsscan.AFTER // 16384 + 2):
        m.feed(b"y" * 16384)
    assert m._lits is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.binary(max_size=6), max_size=40),
       st.lists(st.integers(0, 3000), max_size=8))
def test_same_masking_with_and_without_hyperscan(parts, cuts):
    data = b"".join(parts) * 30  # past a batch (16 KiB): searches between feeds too
    cuts = [c * 17 % (len(data) + 1) for c in cuts]
    rules = [("ticket", r"TICKET-[0-9]{6}")]
    assert run(hyperscan_engine(Masker(rules)), data, cuts) == \
        run(python_engine(Masker(rules)), data, cuts)


def test_a_failing_scan_falls_back_to_find_with_the_same_masking():
    data = (b"x" * 20000 + b" AKIAIOSFODNN7EXAMPLE password=hunter2 ") * 3
    m = hyperscan_engine(Masker())

    def broken(buf, start):
        raise RuntimeError("hs_scan failed")

    m._lits.scan = broken
    assert run(m, data, [5000, 30000]) == run(python_engine(Masker()), data, [])
    assert m._lits is None
