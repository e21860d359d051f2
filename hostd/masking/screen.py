"""Masking what the terminal shows (DESIGN.md §13 "Masking on the visible text").

Programs colour their output: `grep --color` prints `ESC[01;31mESC[KAKIA ESC[mESC[K
IOSFODNN7...`, and a rule matched on the raw bytes sees no key there. ScreenMasker
takes the escape sequences out of the stream before matching (CSI, including SGR; OSC
and DCS/SOS/PM/APC strings; two-byte and nF escapes), hands the visible text to a
masking.Masker, and puts the sequences back around the masked text at the offsets they
came from: the masked characters become `*`, the colours stay. A sequence split across
reads is held until it is complete, as a secret split across reads is.

What counts as a sequence (ECMA-48, 7-bit only: in UTF-8 the 8-bit C1 forms are
continuation bytes), each with a bounded length so that holding stays bounded:
  CSI  ESC [ params{0,64} intermediates{0,16} final
  OSC  ESC ] text{0,4096} (BEL | ESC \\)
  DCS, SOS, PM, APC  ESC P|X|^|_ text{0,4096} ESC \\
  other  ESC intermediates{0,4} final
An ESC that starts none of these (or whose string runs past 4,096 bytes) is a sequence
of its own one byte long, and what follows it is text. Not handled: overprinting with
backspace or carriage return (`AKIA\\b\\bIA...`): the screen shows what the masker
cannot see; that stays out of scope (DESIGN).

Guarantees kept from Masker: chunking-invariance (feed in any chunks then flush equals
the whole stream masked at once), the same length as the input, bounded holding
(`max_holding`), never a cut inside a UTF-8 character.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from itertools import accumulate

from hostd.masking.masker import BATCH, Masker

ESC = 0x1B
MAX_STRING = 4096
MAX_SEQUENCE = MAX_STRING + 3  # the longest sequence: ESC ] text{4096} ESC \
MAX_HELD_ESCAPES = 64 * 1024   # escape bytes held among held text before a forced flush

_SEQ = (rb"\x1b(?:\[[\x30-\x3f]{0,64}[\x20-\x2f]{0,16}[\x40-\x7e]"
        rb"|\][^\x07\x1b]{0,4096}(?:\x07|\x1b\\)"
        rb"|[PX^_][^\x1b]{0,4096}\x1b\\"
        rb"|[\x20-\x2f]{0,4}[\x30-\x4f\x51-\x57\x59-\x5a\x5c\x60-\x7e]"
        rb"|)")
_SPLIT = re.compile(b"(" + _SEQ + b")")
_STARS = re.compile(rb"\*+")
_STRINGS = (b"\x1b]", b"\x1bP", b"\x1b_", b"\x1b^", b"\x1bX")

# every proper beginning of a sequence, up to the end of the buffer
_PARTIAL = re.compile(rb"\x1b(?:\[[\x30-\x3f]{0,64}[\x20-\x2f]{0,16}|\][^\x07\x1b]{0,4096}"
                      rb"\x1b?|[PX^_][^\x1b]{0,4096}\x1b?|[\x20-\x2f]{0,4})\Z")


def _has_string(raw: bytes) -> bool:
    """An OSC, DCS, APC, PM or SOS introducer in raw (five memmem: faster than a regex)."""
    return any(s in raw for s in _STRINGS)


class _Segment:
    """A run of classified bytes: plain text (raw is None: the raw bytes are the visible
    ones), or one feed's bytes with sequences (their positions as cumulative visible
    offsets and cumulative lengths)."""

    __slots__ = ("done", "esc_at", "escapes", "raw", "raw_len", "vis", "vis_at", "vis_len")

    def __init__(self, vis_start: int, size: int, raw: bytes | None = None,
                 parts: list[bytes] | None = None) -> None:
        self.vis = vis_start  # stream offset (visible) of this segment's first visible byte
        self.done = 0         # raw bytes of it already returned
        self.raw = raw
        self.raw_len = size
        self.escapes: list[bytes] = []
        self.vis_at: list[int] = []
        self.esc_at: list[int] = []
        self.vis_len = size
        if parts is not None:
            texts = parts[0::2]
            self.escapes = parts[1::2]
            self.vis_at = list(accumulate(map(len, texts[:-1])))
            self.esc_at = list(accumulate(map(len, self.escapes)))
            self.vis_len = size - self.esc_at[-1]

    def raw_at(self, v: int) -> int:
        """Raw offset just after visible offset v (relative) and every sequence at v."""
        if not self.escapes:
            return v
        k = bisect_right(self.vis_at, v)
        return v + (self.esc_at[k - 1] if k else 0)

    def piece(self, r0: int, r1: int, masked: bytes, start: int) -> bytes:
        """Raw bytes r0:r1 with the visible ones replaced by their masked form (`masked`
        holds the visible bytes from stream offset `start`): the runs of `*` in it are
        copied over the visible bytes they stand for, around the sequences."""
        if not self.escapes:
            v0 = r0 + self.vis - start
            return masked[v0:v0 + r1 - r0]
        v0 = max(0, start - self.vis)  # the first visible byte (relative) of the piece
        v1 = min(self.vis_len, start + len(masked) - self.vis)
        part = masked[v0 + self.vis - start:v1 + self.vis - start]
        if b"*" not in part:
            return self.raw[r0:r1]
        out = bytearray(self.raw[r0:r1])
        vis_at = self.vis_at
        for run in _STARS.finditer(part):
            va, vb = v0 + run.start(), v0 + run.end()
            while va < vb:
                k = bisect_right(vis_at, va)
                stop = min(vb, vis_at[k]) if k < len(vis_at) else vb
                ra = self.raw_at(va) - r0
                out[ra:ra + stop - va] = b"*" * (stop - va)
                va = stop
        return bytes(out)


class ScreenMasker:
    """A Masker that matches the visible text and keeps escape sequences (module doc).
    Same interface as Masker: feed(), flush(hold), holding, counts, names."""

    def __init__(self, *args, **kwargs) -> None:
        self.inner = Masker(*args, **kwargs)
        self._args, self._kwargs = args, kwargs  # for strings' maskers
        self.names = self.inner.names
        self.hold_back = self.inner.hold_back
        self.max_holding = self.inner.max_holding + MAX_HELD_ESCAPES + 2 * MAX_SEQUENCE \
            + BATCH \
            if self.inner.hold_back else 0
        self._carry = b""          # raw bytes that may still be a sequence's beginning
        self._segs: deque[_Segment] = deque()
        self._vis = 0              # visible bytes classified so far
        self._out = 0              # visible bytes returned so far
        self._raw_held = 0         # raw bytes in _segs not returned yet
        self._pending: list[bytes] = []  # fed, not classified yet
        self._npending = 0

    @property
    def counts(self) -> list[int]:
        return self.inner.counts

    @property
    def holding(self) -> int:
        """Bytes fed but not yet returned."""
        return self._raw_held + len(self._carry) + self._npending

    def feed(self, data: bytes) -> bytes:
        """Take a chunk; return the masked bytes that are now decided (maybe none).
        Chunks are gathered up to a batch first (the inner masker would hold them
        anyway): the per-chunk work is then paid once per batch."""
        if not data:
            return b""
        if not self.inner.hold_back:
            return bytes(data)
        self._pending.append(bytes(data))
        self._npending += len(data)
        if self._npending < BATCH:
            return b""
        return self._classify()

    def _classify(self) -> bytes:
        """Split what was gathered into text and sequences, and feed the text."""
        raw = b"".join([self._carry, *self._pending])
        self._pending.clear()
        self._npending = 0
        self._carry = b""
        if ESC in raw:
            raw, parts = self._cut_partial(raw, _SPLIT.split(raw))
            if len(parts) > 1:
                if _has_string(raw):  # a title or other string: its text masked too
                    raw, parts = self._mask_strings(parts)
                seg = _Segment(self._vis, len(raw), raw, parts)
                self._segs.append(seg)
                self._vis += seg.vis_len
                self._raw_held += len(raw)
                out = self._rebuild(self.inner.feed(b"".join(parts[0::2])))
                if self._raw_held - self.inner.holding > MAX_HELD_ESCAPES:
                    out += self.flush()  # a stream of sequences among held text
                return out
            if not raw:
                return b""
        segs = self._segs
        if segs and segs[-1].raw is None:  # more plain text: the same segment
            segs[-1].vis_len += len(raw)
            segs[-1].raw_len += len(raw)
        else:
            segs.append(_Segment(self._vis, len(raw)))
        self._vis += len(raw)
        self._raw_held += len(raw)
        return self._rebuild(self.inner.feed(raw))

    def flush(self, idle: bool = False, hold: bool = False) -> bytes:
        """Masker.flush on the visible text; a sequence still incomplete is held with
        `hold`, else returned as it is (and what follows it is parsed afresh)."""
        out = self._classify() if self._npending else b""
        out += self._rebuild(self.inner.flush(idle, hold))
        if self._carry and not hold and not self._segs:
            carry, self._carry = self._carry, b""
            out += carry
        return out

    def _mask_strings(self, parts: list[bytes]) -> tuple[bytes, list[bytes]]:
        """OSC, DCS, SOS, PM and APC strings are not visible text, but a title can hold
        a command line (`ESC ]0;mysql -pSECRET BEL`): each string's text is masked on
        its own with the same rules (its length and terminator kept)."""
        for i in range(1, len(parts), 2):
            seq = parts[i]
            if len(seq) > 3 and seq[1] in b"]PX^_":
                end = len(seq) - (1 if seq[-1] == 0x07 else 2)
                m = Masker(*self._args, **self._kwargs)
                body = m.feed(seq[2:end]) + m.flush()
                if body != seq[2:end]:
                    parts[i] = seq[:2] + body + seq[end:]
        return b"".join(parts), parts

    def _cut_partial(self, raw: bytes, parts: list[bytes]) -> tuple[bytes, list[bytes]]:
        """An ESC that matched no complete sequence but near the end may still begin one
        when more bytes come: it and what follows become the carry. Only the parts in
        the last MAX_SEQUENCE bytes are looked at."""
        if b"\x1b" not in parts[1::2]:  # every ESC began a complete sequence
            return raw, parts
        n = len(raw)
        pos, cut = n, -1
        for i in range(len(parts) - 1, -1, -1):
            pos -= len(parts[i])
            if i % 2 and parts[i] == b"\x1b" and _PARTIAL.match(raw, pos):
                cut = i  # the leftmost one wins: keep looking
            if pos < n - MAX_SEQUENCE:
                break
        if cut < 0:
            return raw, parts
        at = sum(map(len, parts[:cut]))
        self._carry = raw[at:]
        return raw[:at], parts[:cut]  # ends with the text before the ESC

    def _rebuild(self, masked: bytes) -> bytes:
        """The raw bytes up to the end of `masked` (the next visible bytes, masked), with
        every sequence up to the next visible byte that is still held."""
        start = self._out
        end = start + len(masked)
        self._out = end
        out = []
        segs = self._segs
        while segs:
            seg = segs[0]
            r_end = seg.raw_at(min(end - seg.vis, seg.vis_len))
            if r_end > seg.done:
                out.append(seg.piece(seg.done, r_end, masked, start))
                self._raw_held -= r_end - seg.done
                seg.done = r_end
            if seg.done < seg.raw_len:
                break
            segs.popleft()
        return out[0] if len(out) == 1 else b"".join(out)


def mask_screen(data: bytes, *args, **kwargs) -> bytes:
    """Mask a whole buffer on its visible text (the reference for the guarantee)."""
    m = ScreenMasker(*args, **kwargs)
    return m.feed(data) + m.flush()
