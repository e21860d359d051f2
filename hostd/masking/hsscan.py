"""Where rules' matches can start, found by Hyperscan (Debian's libhyperscan5) in one
pass over a batch, through ctypes (DESIGN.md §13 "Masking on the visible text": the
figures behind the choice).

The masker finds candidate starts of a rule by a literal: a rule's fixed prefix
(`AKIA`, `-----BEGIN`; case-sensitive) or its anchors (`password`, `token`;
case-insensitive). In pure Python that is one bytes.find per literal over each batch,
and with the field family's dozen anchors the finds are the masker's whole cost
(~58 MB/s for 24 literals here, against 1,486 MB/s for one Hyperscan pass over the
same literals). Hyperscan only finds literals; the rules themselves are still matched
by Python's `re` at each hit, so the masking is the same with or without it.

Optional: without libhs.so.5 (another architecture, not installed) or with
JIT_MASK_ENGINE=python in the environment, `Literals.load` returns None and the masker
uses bytes.find.
"""

from __future__ import annotations

import os
import threading

HS_MODE_BLOCK = 1
HS_FLAG_CASELESS = 1
# Hyperscan is compiled only once a stream has had this much text searched: a short
# command never pays the import of ctypes and the compile (~30 ms).
AFTER = 256 * 1024
ctypes = None  # imported on first use
_CALLBACK = None

_lib = None
_lib_lock = threading.Lock()
_tried = False


def _load():
    """libhs.so.5 with its prototypes, or None."""
    global _lib, _tried, ctypes, _CALLBACK
    with _lib_lock:
        if _tried:
            return _lib
        _tried = True
        if os.environ.get("JIT_MASK_ENGINE") == "python":  # benchmarks, tests
            return None
        import ctypes as _ctypes

        ctypes = _ctypes
        _CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_ulonglong,
                                     ctypes.c_ulonglong, ctypes.c_uint, ctypes.c_void_p)
        try:
            lib = ctypes.CDLL("libhs.so.5")
        except OSError:
            return None
        vp, pp = ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)
        lib.hs_compile_multi.argtypes = [ctypes.POINTER(ctypes.c_char_p),
                                         ctypes.POINTER(ctypes.c_uint),
                                         ctypes.POINTER(ctypes.c_uint), ctypes.c_uint,
                                         ctypes.c_uint, vp, pp, pp]
        lib.hs_alloc_scratch.argtypes = [vp, pp]
        lib.hs_scan.argtypes = [vp, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, vp,
                                _CALLBACK, vp]
        lib.hs_free_scratch.argtypes = [vp]
        lib.hs_free_database.argtypes = [vp]
        lib.hs_free_compile_error.argtypes = [vp]
        _lib = lib
        return lib


def _escape(literal: bytes) -> bytes:
    """A literal as a Hyperscan expression: every byte as \\xHH."""
    return b"".join(b"\\x%02x" % c for c in literal)


class Literals:
    """A compiled set of literals: scan(buf, start) -> [(literal index, start offset)]."""

    _cache: dict[tuple, object] = {}

    def __init__(self, lib, db, lengths: list[int]) -> None:
        self._lib, self._db, self._lengths = lib, db, lengths
        self._scratch = ctypes.c_void_p()
        if lib.hs_alloc_scratch(db, ctypes.byref(self._scratch)) != 0:
            raise MemoryError("hs_alloc_scratch failed")
        self._hits: list[tuple[int, int]] = []
        hits, lengths_ = self._hits, lengths

        def on_match(ident: int, _from: int, to: int, _flags: int, _ctx) -> int:
            hits.append((ident, to - lengths_[ident]))
            return 0

        self._on_match = _CALLBACK(on_match)  # kept alive with the object

    @classmethod
    def load(cls, literals: list[tuple[bytes, bool]]) -> Literals | None:
        """literals: (bytes, caseless). None without libhs or on a compile error."""
        lib = _load()
        if lib is None or not literals:
            return None
        key = tuple(literals)
        db = cls._cache.get(key)
        if db is None:
            n = len(literals)
            exprs = (ctypes.c_char_p * n)(*[_escape(lit) for lit, _ in literals])
            flags = (ctypes.c_uint * n)(*[HS_FLAG_CASELESS if c else 0 for _, c in literals])
            ids = (ctypes.c_uint * n)(*range(n))
            db, err = ctypes.c_void_p(), ctypes.c_void_p()
            if lib.hs_compile_multi(exprs, flags, ids, n, HS_MODE_BLOCK, None,
                                    ctypes.byref(db), ctypes.byref(err)) != 0:
                lib.hs_free_compile_error(err)
                return None
            cls._cache[key] = db  # one per distinct set, for the process's life
        try:
            return cls(lib, db, [len(lit) for lit, _ in literals])
        except MemoryError:
            return None

    def scan(self, buf: bytes, start: int) -> list[tuple[int, int]]:
        """Every occurrence of every literal wholly in buf[start:], in order of its end;
        offsets are into buf."""
        self._hits.clear()
        if start >= len(buf):
            return []
        base = ctypes.cast(ctypes.c_char_p(buf), ctypes.c_void_p).value + start
        if self._lib.hs_scan(self._db, base, len(buf) - start, 0, self._scratch,
                             self._on_match, None) != 0:
            raise RuntimeError("hs_scan failed")
        if start:
            return [(i, k + start) for i, k in self._hits]
        return list(self._hits)

    def __del__(self) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch:
            self._lib.hs_free_scratch(scratch)


def matches_at(pat, hits, buf: bytes, n: int, pos: int, limit: int, found: list,
               longest: int) -> int:
    """The rule's matches at the candidate starts `hits` (sorted), as a search from
    `pos` would find them (each starts at a literal); returns where its next search
    starts: after its last match, or the first candidate it could not decide yet (at or
    past `limit`), or where a literal cut by the end of buf could begin."""
    nxt = n - longest + 1
    match = pat.match
    for k in hits:
        if k < pos:
            continue  # inside the previous match
        if k >= limit:
            nxt = min(nxt, k)
            break
        m = match(buf, k)
        if m is not None:
            found.append(m)
            pos = m.end()
    return max(pos, nxt)
