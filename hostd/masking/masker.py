"""Inline masking of secrets in a byte stream (DESIGN.md §9, §13 "Masking").

Pure and stdlib only: `jit-record` imports it and must start fast.

What is masked: every byte covered by a match of any rule (the union of all rules'
matches, each rule searched on its own, so overlapping rules never hide each other's
secrets). A masked match that starts or ends inside a UTF-8 sequence is widened to the
whole character, so masking never breaks UTF-8.

Replacement: each masked byte becomes `*`, except CR and LF, which stay. The output has
exactly the length of the input, so full-screen programs keep their layout and a masked
private key keeps its line structure; the secret's length is visible, its content not.
This module matches raw bytes; the recorder wraps it in screen.ScreenMasker, which
takes escape sequences out before matching and puts them back (colours survive).

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

from hostd.masking.analysis import (
    MaskingRuleError,
    _c,
    _p,
    _to_bytes_pattern,
    analyse,
)
from hostd.masking.hsscan import AFTER, matches_at

_UTF8_SLACK = 4            # widening a match to whole UTF-8 characters looks 3 bytes away
_MASK_TABLE = bytes(b if b in (0x0A, 0x0D) else 0x2A for b in range(256))



def builtin_rules() -> list[tuple[str, str]]:
    """(name, regex) of the default rules (hostd.masking.rules)."""
    from hostd.masking.rules import builtin_rules as rules

    return rules()


class _Rule:
    """One compiled rule and how to find its matches fast."""

    __slots__ = ("anchors", "behind", "check", "forming", "name", "pattern", "prefix",
                 "prefixes", "rare", "reach")

    def __init__(self, name: str, pattern: str | bytes | re.Pattern, *, trusted: bool = False,
                 anchors: tuple[bytes, ...] = (), forming=None, check=None) -> None:
        self.name = name
        self.pattern, reach, self.behind = analyse(name, pattern, check_cost=not trusted)
        self.reach = reach + _UTF8_SLACK
        self.anchors = anchors
        self.check = check
        self.prefix = _literal_prefix(self.pattern)
        # the prefix's least common byte: `in` (memchr, ~10 GB/s) rules a batch out
        self.rare = bytes([min(self.prefix, key=_commonness)]) if self.prefix else b""
        # a secret still forming (the idle-flush hold): its fixed starts and a regex
        # matching a partial one up to the end of what arrived
        self.prefixes: tuple[bytes, ...] = forming.prefixes if forming else ()
        self.forming = re.compile(forming.regex + rb"\Z") if forming else None


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


_BUILTINS: dict[tuple, list[_Rule]] = {}


def _builtins(fields: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> list[_Rule]:
    """The built-in rules compiled once per (fields, optional) set."""
    key = (tuple(fields), tuple(sorted(optional)))
    if key not in _BUILTINS:
        from hostd.masking.rules import FieldNameError, builtin_specs, check_field_names

        try:
            specs = builtin_specs(check_field_names(key[0]), key[1])
        except FieldNameError as exc:
            raise MaskingRuleError(str(exc)) from None
        _BUILTINS[key] = [_Rule(s.name, s.regex, trusted=True, anchors=s.anchors,
                                forming=s.forming, check=s.check) for s in specs]
    return _BUILTINS[key]


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
                 builtins: bool = True, fields: Sequence[str] = (),
                 optional: Sequence[str] = (), only: Sequence[str] | None = None) -> None:
        self._rules = list(_builtins(tuple(fields), tuple(optional))) if builtins else []
        self._rules += [_Rule(name, pattern, forming=_forming_of(name, pattern))
                        for name, pattern in rules]
        if only is not None:  # `jit mask test --explain`: one rule at a time
            self._rules = [r for r in self._rules if r.name in only]
        self._lits, self._lit_owner, self._longest = None, [], {}
        self._searched = 0  # bytes fed to searches: Hyperscan comes after hsscan.AFTER
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

    def flush(self, idle: bool = False, hold: bool = False) -> bytes:
        """Return what is held, masked as if the stream ended here; searching goes on as
        if it had not (a match that began before the flush still masks the rest).

        An `idle` flush (the stream goes on later) also looks for a secret still forming
        at the end (a rule's fixed start, or a partial match: see rules.Forming): with
        `hold` it is kept back when none of it was shown yet (the recorder's idle flush,
        up to its bound); otherwise it goes out with its part past the fixed start
        masked (`AKIA****`), a bare fixed start as typed."""
        if not self.holding:
            return b""
        buf = self._take()
        n = len(buf)
        self._search(buf, n, final=False)  # where undecided matches may start: kept
        resume, decided = list(self._resume), list(self._spans)
        self._search(buf, n, final=True)   # everything that matches if the stream ended
        self._resume = resume
        cut, spans = self._forming(buf, n, hold) if idle else (n, [])
        self._spans.extend(spans)
        out = self._emit(buf, cut)
        if cut < n:  # what was held stays undecided: only the real matches' spans remain
            self._spans = [s for s in decided if s[1] > self._emitted]
        return out

    def _forming(self, buf: bytes, n: int, hold: bool) -> tuple[int, list[tuple[int, int]]]:
        """Where a flush stops (n: nowhere) and the spans of partial secrets it masks."""
        cut, spans, off = n, [], self._off
        shown = self._emitted - off  # buf[:shown] is already on the screen
        for rule in self._rules:
            if rule.forming is None:
                continue
            lo = max(0, n - rule.reach)
            m = rule.forming.search(buf, lo)
            if m is not None:
                if hold and m.start() >= shown:
                    cut = min(cut, m.start())
                else:
                    s, e = _secret_span(m)
                    if s < e:
                        spans.append((off + max(s, shown), off + n))
                continue
            if hold:  # a fixed start arriving (AK, ghp): held, then shown as typed
                for prefix in rule.prefixes:
                    for k in range(min(len(prefix), n - shown), 1, -1):
                        if buf.endswith(prefix[:k]):
                            cut = min(cut, n - k)
                            break
        return cut, spans

    def _search(self, buf: bytes, n: int, final: bool) -> None:
        off = self._off
        spans = self._spans
        low: list = [None, 0]  # the lower-cased tail of buf (for anchors) and its start
        if self._searched < AFTER:
            self._searched += n
            if self._searched >= AFTER:  # a long stream: one pass finds every literal
                self._lits, self._lit_owner, self._longest = _literals(self._rules)
        hits = self._literal_hits(buf, n, final) if self._lits is not None else None
        for i, rule in enumerate(self._rules):
            limit = n if final else n - rule.reach
            pos = self._resume[i] - off
            if pos >= limit:
                continue
            found: list[re.Match] = []
            if hits is not None and i in self._longest:
                pos = matches_at(rule.pattern, hits.get(i, ()), buf, n, pos, limit, found,
                                 self._longest[i])
            elif rule.anchors:
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
            if rule.check is not None:
                found = [m for m in found if rule.check(m.group())]
            for m in found:
                s, e = _secret_span(m)
                spans.append((off + _widen_start(buf, s), off + _widen_end(buf, e, n)))
            self.counts[i] += len(found)
            self._resume[i] = off + pos

    def _literal_hits(self, buf: bytes, n: int, final: bool) -> dict[int, list[int]] | None:
        """Candidate starts per rule (index) from one Hyperscan pass (hsscan)."""
        off = self._off
        todo = [self._resume[i] - off for i in self._longest
                if self._resume[i] - off < (n if final else n - self._rules[i].reach)]
        if not todo:
            return {}
        per_rule: dict[int, list[int]] = {}
        owner = self._lit_owner
        try:
            found = self._lits.scan(buf, max(0, min(todo)))
        except RuntimeError:  # hs_scan failed: bytes.find from now on (same masking)
            self._lits, self._lit_owner, self._longest = None, [], {}
            self._searched = float("-inf")
            return None
        for lit, k in found:
            per_rule.setdefault(owner[lit], []).append(k)
        for ks in per_rule.values():
            ks.sort()
        return per_rule

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


def _literals(rules: list[_Rule]):
    """Hyperscan over every rule's anchors (caseless) and literal prefix: the scanner,
    which rule each literal belongs to, the longest literal per rule (or None, {}, {})."""
    lits: list[tuple[bytes, bool]] = []
    owner: list[int] = []
    longest: dict[int, int] = {}
    for i, rule in enumerate(rules):
        starts = rule.prefixes if rule.prefix and all(
            p.startswith(rule.prefix) for p in rule.prefixes) else ()
        mine = [(a, True) for a in rule.anchors] or [(p, False) for p in starts] or (
            [(rule.prefix, False)] if rule.prefix else [])
        for lit in mine:
            lits.append(lit)
            owner.append(i)
        if mine:
            longest[i] = max(len(lit) for lit, _ in mine)
    from hostd.masking.hsscan import Literals

    scanner = Literals.load(lits) if lits else None
    return (scanner, owner, longest) if scanner is not None else (None, [], {})


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


def _forming_of(name: str, pattern: str | bytes | re.Pattern):
    """A configured rule with a literal start (`ACC-SECRET-`): while forming, that start
    and then anything but white space."""
    from hostd.masking.rules import Forming

    prefix = _literal_prefix(_to_bytes_pattern(name, pattern))
    if len(prefix) < 2:
        return None
    return Forming((prefix,), re.escape(prefix) + rb"(?P<secret>[^\s]{1,256})")

