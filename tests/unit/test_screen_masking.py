"""hostd/masking/screen.py: secrets are matched on what the terminal shows (escape
sequences skipped), colours survive, and Masker's guarantees hold with sequences in
the stream: chunking-invariance, same length, bounded holding."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from test_masking import mask

from hostd.masking.screen import ScreenMasker, mask_screen

KEY = b"AKIAIOSFODNN7EXAMPLE"
SEQUENCES = [b"\x1b[01;31m\x1b[K", b"\x1b[m\x1b[K", b"\x1b[0m", b"\x1b[38;5;196m",
             b"\x1b]0;user@host: ~\x07", b"\x1b]8;;http://x/\x1b\\", b"\x1bP1$r0m\x1b\\",
             b"\x1b(B", b"\x1b7", b"\x1b[?2004h", b"\x1b", b"\x1b[", b"\x1b]0;t"]
STRIP = re.compile(rb"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]|\][^\x07\x1b]*(?:\x07|\x1b\\)"
                   rb"|P[^\x1b]*\x1b\\|[\x20-\x2f]*[\x30-\x7e])")


def chunked(data: bytes, cuts: list[int], **kw) -> bytes:
    m = ScreenMasker(**kw)
    out, prev = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(m.feed(data[prev:cut]))
        assert m.holding <= m.max_holding
        prev = cut
    return b"".join(out) + m.flush()


def test_grep_colour_inside_a_key_is_masked_and_keeps_its_colour():
    line = b"\x1b[01;31m\x1b[KAKIA\x1b[m\x1b[KIOSFODNN7EXAMPLE\n"
    assert mask_screen(line) == b"\x1b[01;31m\x1b[K****\x1b[m\x1b[K****************\n"


def test_every_sgr_position_inside_a_secret_is_masked():
    for i in range(len(KEY) + 1):
        line = b"key " + KEY[:i] + b"\x1b[1;32m" + KEY[i:] + b"\x1b[0m ok"
        out = mask_screen(line)
        assert out == b"key " + b"*" * i + b"\x1b[1;32m" + b"*" * (len(KEY) - i) \
            + b"\x1b[0m ok"


def test_a_sequence_split_across_reads_is_held_like_a_secret():
    line = b"\x1b[01;31mAKIA\x1b[0mIOSFODNN7EXAMPLE\n"
    for cut in range(len(line) + 1):
        assert chunked(line, [cut]) == mask_screen(line)


def test_a_secret_in_a_title_is_masked_on_its_own():
    title = b"\x1b]0;root@db: mysql -u root -pS3cret\x07$ "
    assert mask_screen(title) == b"\x1b]0;root@db: mysql -u root -p******\x07$ "
    osc8 = b"\x1b]8;;https://bob:pa55w0rd@git.example/\x1b\\link\x1b]8;;\x1b\\"
    assert b"pa55w0rd" not in mask_screen(osc8) and len(mask_screen(osc8)) == len(osc8)


def test_text_after_a_stray_esc_is_visible_text():
    assert mask_screen(b"\x1bZAKIAIOSFODNN7EXAMPLE") == b"\x1bZ" + b"*" * 20
    assert mask_screen(b"\x1b\x1b[1m" + KEY) == b"\x1b\x1b[1m" + b"*" * 20
    # an OSC string longer than the bound is not a sequence: its text is matched
    long = b"\x1b]0;" + b"x" * 5000 + b" " + KEY + b"\x07"
    assert KEY not in mask_screen(long)


def test_no_escape_at_all_is_the_plain_masker():
    text = b"export DB_PASSWORD=hunter2; key " + KEY + b"\n"
    assert mask_screen(text) == mask(text)


def test_sequences_alone_are_held_no_longer_than_text():
    m = ScreenMasker()
    assert m.feed(b"\x1b[31m") + m.feed(b"\x1b[0m\x1b[2J") == b""  # a batch forms
    assert m.flush(idle=True) == b"\x1b[31m\x1b[0m\x1b[2J" and m.holding == 0
    burst = b"\x1b[31mx\x1b[0m" * 20000  # escape-heavy: holding stays bounded
    out = b""
    for i in range(0, len(burst), 4096):
        out += m.feed(burst[i:i + 4096])
        assert m.holding <= m.max_holding
    assert out + m.flush() == burst


def test_colours_and_bytes_of_a_listing_survive():
    listing = (b"\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;32mrun.sh\x1b[0m  "
               b"caf\xc3\xa9.txt\r\n") * 50
    assert mask_screen(listing) == listing


PIECES = [b"AKIAIOSFODNN7EXAMPLE", b"AKIA", b"IOSFODNN7", b"password=", b"hunter2",
          b'"token": "s3\\"cr3t"', b"ghp_" + b"a1B2c3D4e5" * 4, b"\r\n", b" ", b"\xc3\xa9",
          b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", b"mysql -u root -phunter2"]
stream = st.lists(st.sampled_from(PIECES + SEQUENCES) | st.binary(max_size=8), max_size=30)


@settings(max_examples=300, deadline=None)
@given(stream, st.lists(st.integers(0, 2000), max_size=12))
def test_chunked_equals_whole(parts, cuts):
    data = b"".join(parts)
    whole = mask_screen(data)
    assert chunked(data, [c % (len(data) + 1) for c in cuts]) == whole
    assert len(whole) == len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES + SEQUENCES[:-3]), max_size=20))
def test_visible_text_is_masked_as_the_plain_masker_would(parts):
    data = b"".join(parts)
    out = mask_screen(data)
    assert STRIP.sub(b"", out) == mask(STRIP.sub(b"", data))
    assert STRIP.findall(out) == STRIP.findall(data)  # every sequence kept, in order
