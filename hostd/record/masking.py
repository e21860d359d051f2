"""Inline masking of secrets in a byte stream (DESIGN.md §9, §13 "Masking").

Pure and stdlib only: `jit-record` imports it and must start fast.

What is masked: every byte covered by a match of any rule (the union of all rules'
matches, each rule searched on its own, so overlapping rules never hide each other's
secrets). A masked match that starts or ends inside a UTF-8 sequence is widened to the
whole character, so masking never breaks UTF-8.

Replacement: each masked byte becomes `*`, except CR and LF, which stay. The output has
exactly the length of the input, so full-screen programs keep their layout and a masked
private key keeps its line structure; the secret's length is visible, its content not.
Escape sequences inside a match are masked too (no half sequence is left behind).

Streaming guarantee (exact): for any split of a stream into chunks,
``b"".join(m.feed(c) for c in chunks) + m.flush()`` equals
``Masker(...).feed(whole) + flush()`` — provided flush() is called only at the end.
This holds because every rule has a bounded reach (its longest match plus what it looks
at around it, computed from the regex and checked when the rule is made): the masker
holds back the last `hold_back` bytes of the stream, and a byte is emitted only once
every match that could cover it has been decided. At most `max_holding` bytes are held:
`hold_back`, a batch of up to BATCH bytes gathered before searching, and 3 more so that
no output ends inside a UTF-8 character.

An idle flush in the middle (so a prompt appears) emits everything held, masked as if
the stream ended there (so a rule that matches what has arrived — `password=hun` —
masks it), and searching then goes on as if there had been no flush: a match that began
before the cut still masks its later part, and every byte emitted after the cut is
masked exactly as in whole-stream masking. The cost is only in the bytes emitted by the
flush itself: part of a secret that no rule matches until more of it arrives (`AKIA`
of an AWS key id cut after four characters) goes out unmasked. Text typed with echo
(`password=hunter2`, one flush per key) is masked character by character.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hostd.policy.maskrules import analyse

try:  # the regex parser is private; reach and cost checks need it (3.11: re._parser)
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

_UTF8_SLACK = 4            # widening a match to whole UTF-8 characters looks 3 bytes away
_MASK_TABLE = bytes(b if b in (0x0A, 0x0D) else 0x2A for b in range(256))


# Where a built-in rule's matches can start, lower-cased: rules whose first bytes are
# letters in either case are not searched by the regex engine (which would try them at
# every letter, ~20 MB/s) but by bytes.find() on the lower-cased text, then matched at
# each hit. Every match of the rule starts with one of these (case-insensitively).
_ANCHORS: dict[str, tuple[bytes, ...]] = {
    "assignment": (b"pass", b"secret", b"token", b"api", b"pwd"),
    "authorization": (b"bearer", b"authorization"),
}


def builtin_rules() -> list[tuple[str, str]]:
    """Rules always applied unless `builtins=False`: (name, regex), regexes on bytes.

    Each starts with a rare literal (or has anchors, above) so text that holds no secret
    is searched at C speed, and each has bounded repeats (see Masker). A named group
    `secret` (or `secret2`, ...) marks the part to mask; without one the whole match is."""
    sgr = r"(?:\x1b\[[0-9;]{0,12}[mK]){0,4}"  # colours around a match (grep --color)
    value = r"""(?:"(?P<secret>[^"\r\n]{1,512})"|'(?P<secret2>[^'\r\n]{1,512})'""" \
            r"""|(?P<secret3>(?:[^\s"',;&<>\x1b]|\x1b\[[0-9;]{0,12}[mK]){1,512}))"""
    key = r"(?i:pass(?:word|wd|phrase)?|secret|token|api[_-]?key|pwd)" \
          r"(?:[_.-][A-Za-z0-9_.-]{0,32})?" + sgr
    return [
        ("private_key",
         r"-----BEGIN[ A-Z0-9]{0,32} PRIVATE KEY(?: BLOCK)?-----"
         r"(?:[\s\S]{1,12288}?-----END[ A-Z0-9]{0,32} PRIVATE KEY(?: BLOCK)?-----"
         r"|[A-Za-z0-9+/=:,. \t\r\n-]{0,12288})"),
        ("aws_access_key_id",
         r"(?:A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA|ABIA|ACCA)[A-Z0-9]{16}"),
        ("jwt", r"eyJ[A-Za-z0-9_-]{4,4096}\.eyJ[A-Za-z0-9_-]{4,4096}\.[A-Za-z0-9_-]{0,4096}"),
        ("authorization",  # Bearer TOKEN anywhere; Authorization: Basic/Digest/... CREDENTIALS
         r"(?:(?i:bearer)[ \t]{1,4}(?P<secret>[A-Za-z0-9._~+/-]{8,2048}={0,2})"
         r"|(?i:authorization)[\"']?[ \t]{0,4}[:=][ \t]{0,4}[\"']?[A-Za-z]{2,16}[ \t]{1,4}"
         r"(?P<secret2>[^\s\"']{4,2048}))"),
        ("assignment",  # password=..., DB_PASSWORD: ..., "apiKey": "...", --token=...,
         # --password VALUE, aws_secret_access_key = ... (found at "secret")
         r"(?:(?<=--)" + key + r"[ \t]{1,4}(?P<secret4>[^\s\"'-][^\s\"']{0,511})"
         r"|(?:(?<![A-Za-z])|(?<=[a-z])(?=[A-Z])|(?<=\x1b\[[mK])|(?<=[0-9;]m))" + key
         + r"[\"']?[ \t]{0,4}[=:][ \t]{0,4}" + sgr + value + ")"),
        ("url_credentials", r"://[^\s/:@]{1,128}:(?P<secret>[^\s/@]{1,256})@"),
        ("github_token", r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})"),
        ("slack_token", r"xox[abposr]-[A-Za-z0-9-]{10,255}"),
        ("google_api_key", r"AIza[0-9A-Za-z_-]{35}"),
        ("stripe_key", r"_live_(?<=[rs]k_live_)[0-9A-Za-z]{16,247}"),
    ]


class _Rule:
    """One compiled rule and how to find its matches fast."""

    __slots__ = ("anchors", "behind", "name", "pattern", "prefix", "rare", "reach")

    def __init__(self, name: str, pattern: str | bytes | re.Pattern, *, trusted: bool = False,
                 anchors: tuple[bytes, ...] = ()) -> None:
        self.name = name
        self.pattern, reach, self.behind = analyse(name, pattern, check_cost=not trusted)
        self.reach = reach + _UTF8_SLACK
        self.anchors = anchors
        self.prefix = _literal_prefix(self.pattern)
        # the prefix's least common byte: `in` (memchr, ~10 GB/s) rules a batch out
        self.rare = bytes([min(self.prefix, key=_commonness)]) if self.prefix else b""


# Bytes from least to most common in terminal text (a rough guess: only speed depends
# on it). Bytes not listed count as rarest.
_COMMON = (b"e tarionslcdhumpfgwybvkTSACIEMNxPR0D1OLF2BWHUG3j45986z7qVKYJXQZ"[::-1]
           + b"-_.,:/=\n")


def _commonness(byte: int) -> int:
    return _COMMON.find(bytes([byte]))


def _literal_prefix(pattern: re.Pattern) -> bytes:
    """The bytes every match starts with (case-sensitive patterns only), else b""."""
    if pattern.flags & re.IGNORECASE:
        return b""
    out = bytearray()
    for op, av in _p.parse(pattern.pattern, pattern.flags).data:
        if op is not _c.LITERAL:
            break
        out.append(av)
    return bytes(out)


_BUILTINS: list[_Rule] | None = None


def _builtins() -> list[_Rule]:
    global _BUILTINS
    if _BUILTINS is None:
        _BUILTINS = [_Rule(n, r, trusted=True, anchors=_ANCHORS.get(n, ()))
                     for n, r in builtin_rules()]
    return _BUILTINS


BATCH = 16 * 1024  # bytes gathered before searching: a pty gives ~4 KiB per read


class Masker:
    """Masks secrets in a stream: feed() chunks in, write out what it returns, flush()
    at the end (or after a short idle time, at a cost: see the module docstring).

    Rules are (name, regex) pairs, the regex a str (matched against UTF-8), bytes or a
    compiled pattern; they are checked like configured rules (MaskingRuleError).

    Speed: text is searched in batches of at least BATCH bytes, each rule once over the
    new bytes (bytes.find for a literal prefix or an anchor, else the regex engine), all
    at C speed; Python runs per batch and per match, never per byte. At most
    `max_holding` (= hold_back + BATCH + 3) bytes are held back."""

    def __init__(self, rules: Sequence[tuple[str, str | bytes | re.Pattern]] = (), *,
                 builtins: bool = True) -> None:
        self._rules = list(_builtins()) if builtins else []
        self._rules += [_Rule(name, pattern) for name, pattern in rules]
        self.names = [r.name for r in self._rules]
        self.hold_back = max((r.reach for r in self._rules), default=0) + _UTF8_SLACK \
            if self._rules else 0
        self.max_holding = self.hold_back + BATCH + 3 if self._rules else 0
        self._behind = max((r.behind for r in self._rules), default=1) + _UTF8_SLACK
        # matches masked per rule (order of names); one cut by an idle flush counts twice
        self.counts = [0] * len(self._rules)
        self._buf = b""        # context (already emitted) + held bytes, searched
        self._pending: list[bytes] = []  # fed, not searched yet
        self._npending = 0
        self._off = 0          # stream offset of _buf[0]
        self._emitted = 0      # stream offset up to which output was returned
        self._resume = [0] * len(self._rules)  # per rule: where its next search starts
        self._spans: list[tuple[int, int]] = []  # decided matches not yet fully emitted

    @property
    def holding(self) -> int:
        """Bytes fed but not yet returned (at most max_holding)."""
        return self._off + len(self._buf) - self._emitted + self._npending

    def _take(self) -> bytes:
        buf = b"".join([self._buf, *self._pending])
        self._pending.clear()
        self._npending = 0
        return buf

    def feed(self, data: bytes) -> bytes:
        """Take a chunk; return the masked bytes that are now decided (maybe none)."""
        if not data:
            return b""
        if not self._rules:
            return bytes(data)
        self._pending.append(bytes(data))
        self._npending += len(data)
        if self._npending < BATCH:
            return b""
        buf = self._take()
        n = len(buf)
        self._search(buf, n, final=False)
        end = n - self.hold_back - 3
        k = 0  # never end an output inside a UTF-8 character (prettier idle flushes)
        while k < 3 and end > 0 and 0x80 <= buf[end] < 0xC0:
            end -= 1
            k += 1
        if end <= self._emitted - self._off:
            self._buf = buf
            return b""
        return self._emit(buf, end)

    def flush(self) -> bytes:
        """Return everything held, masked as if the stream ended here; searching goes on
        as if it had not (a match that began before the flush still masks the rest)."""
        if not self.holding:
            return b""
        buf = self._take()
        n = len(buf)
        self._search(buf, n, final=False)  # where undecided matches may start: kept
        resume = list(self._resume)
        self._search(buf, n, final=True)   # everything that matches if the stream ended
        self._resume = resume
        return self._emit(buf, n)

    def _search(self, buf: bytes, n: int, final: bool) -> None:
        off = self._off
        spans = self._spans
        low: list = [None, 0]  # the lower-cased tail of buf (for anchors) and its start
        for i, rule in enumerate(self._rules):
            limit = n if final else n - rule.reach
            pos = self._resume[i] - off
            if pos >= limit:
                continue
            found: list[re.Match] = []
            if rule.anchors:
                if low[0] is None or low[1] > pos:
                    start = min(r - off for r, x in zip(self._resume, self._rules, strict=True)
                                if x.anchors)
                    low[:] = [buf[start:].lower(), start]
                pos = _anchored(rule.pattern, rule.anchors, buf, low[0], low[1], n, pos,
                                limit, found)
            elif rule.prefix:
                if buf.find(rule.rare, pos) < 0:
                    pos = max(pos, n - len(rule.prefix) + 1)
                else:
                    pos = _prefixed(rule.pattern, rule.prefix, buf, n, pos, limit, found)
            else:
                search = rule.pattern.search
                while True:
                    m = search(buf, pos)
                    if m is None or m.start() >= limit:
                        pos = max(pos, limit)
                        break
                    found.append(m)
                    pos = m.end()
            for m in found:
                s, e = _secret_span(m)
                spans.append((off + _widen_start(buf, s), off + _widen_end(buf, e, n)))
            self.counts[i] += len(found)
            self._resume[i] = off + pos

    def _emit(self, buf: bytes, end: int) -> bytes:
        """Return buf[emitted:end] masked; keep look-behind context and what is held."""
        off = self._off
        start = self._emitted - off
        if self._spans:
            out = bytearray(buf[start:end])
            a, b = off + start, off + end
            keep = []
            for s, e in self._spans:
                lo, hi = max(s, a), min(e, b)
                if lo < hi:
                    out[lo - a:hi - a] = out[lo - a:hi - a].translate(_MASK_TABLE)
                if e > b:
                    keep.append((s, e))
            self._spans = keep
            result = bytes(out)
        else:
            result = buf[start:end]
        # keep look-behind context, and after a flush what undecided matches may need
        cut = max(0, min(end, min(self._resume, default=off + end) - off) - self._behind)
        self._buf = buf[cut:]
        self._off = off + cut
        self._emitted = off + end
        return result


def _prefixed(pat: re.Pattern, prefix: bytes, buf: bytes, n: int, pos: int, limit: int,
              found: list[re.Match]) -> int:
    """search() for a rule whose matches all start with `prefix`: bytes.find skips to
    each occurrence. Returns where the rule's next search starts: after its last match,
    or the first place a match could still start (a prefix cut by the end of buf)."""
    find, search = buf.find, pat.search
    while True:
        k = find(prefix, pos)
        if k < 0:
            return max(pos, n - len(prefix) + 1)
        if k >= limit:
            return k
        m = search(buf, k)
        if m is None or m.start() >= limit:
            return max(k + 1, limit)
        found.append(m)
        pos = m.end()


def _anchored(pat: re.Pattern, anchors: tuple[bytes, ...], buf: bytes, low: bytes,
              low_at: int, n: int, pos: int, limit: int, found: list[re.Match]) -> int:
    """search() for a rule whose matches start at an anchor (case-insensitively): the
    same matches, found by bytes.find over the lower-cased text and a match() at each
    hit. Returns where the rule's next search starts, as _prefixed does."""
    hits = []
    nxt = n
    find = low.find
    for a in anchors:
        k = find(a, pos - low_at)
        while k >= 0 and k + low_at < limit:
            hits.append(k + low_at)
            k = find(a, k + 1)
        nxt = min(nxt, k + low_at if k >= 0 else max(pos, n - len(a) + 1))
    match = pat.match
    for k in sorted(set(hits)):
        if k < pos:
            continue  # inside the previous match
        m = match(buf, k)
        if m is not None:
            found.append(m)
            pos = m.end()
    return max(pos, nxt)


def _secret_span(m: re.Match) -> tuple[int, int]:
    """The part of a match to mask: the group(s) named `secret`, `secret2`, ... that took
    part (the first one), else the whole match."""
    for name in m.re.groupindex:
        if name.startswith("secret") and m.start(name) >= 0:
            return m.span(name)
    return m.span()


def _widen_start(buf: bytes, s: int) -> int:
    """Move a match start back to the lead byte of the UTF-8 character it is inside."""
    k = s
    while k > 0 and s - k < 3 and 0x80 <= buf[k] < 0xC0:
        k -= 1
    return k if k != s and buf[k] >= 0xC0 else s


def _widen_end(buf: bytes, e: int, n: int) -> int:
    """Move a match end past the continuation bytes of the character it cuts."""
    k = e
    while k < n and k - e < 3 and 0x80 <= buf[k] < 0xC0:
        k += 1
    return k
