"""Whether a masking rule (`[masking] rules`) can be streamed: bounded reach, no empty
match, no exponential backtracking (DESIGN.md §9, §13 "Masking").

The policy checks each configured rule with `check_rule` when the configuration loads;
the recorder's Masker (hostd/masking/masker.py) compiles its rules with `analyse`. Pure
and stdlib only: jit-record imports it and must start fast.
"""

from __future__ import annotations

import re

try:  # the regex parser is private; reach and cost checks need it (3.11: re._parser)
    from re import _constants as _c  # type: ignore[attr-defined]
    from re import _parser as _p  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - Python < 3.11
    import sre_constants as _c  # type: ignore[no-redef]
    import sre_parse as _p  # type: ignore[no-redef]

MAX_REACH = 32768          # longest reach a rule may have (bytes): bounds the hold-back
MAX_COST = 1_000_000       # backtracking estimate above which a configured rule is refused
_INF = float("inf")


class MaskingRuleError(ValueError):
    """A rule that cannot be used: bad syntax, unbounded, can match nothing, too costly."""


def _to_bytes_pattern(name: str, pattern: str | bytes | re.Pattern) -> re.Pattern:
    """A str rule (from the config) is matched against UTF-8 bytes: \\w \\d \\s are ASCII."""
    flags = 0
    if isinstance(pattern, re.Pattern):
        flags = pattern.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE)
        pattern = pattern.pattern
    if isinstance(pattern, str):
        try:
            pattern = pattern.encode("utf-8")
        except UnicodeEncodeError:
            raise MaskingRuleError(f"rule {name!r}: not valid UTF-8") from None
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise MaskingRuleError(f"rule {name!r}: bad regular expression: {exc}") from None
    except (TypeError, ValueError) as exc:  # e.g. (?u) or (?L) on bytes
        raise MaskingRuleError(f"rule {name!r}: {exc}") from None


def _walk(items, flags: int) -> tuple[float, float, float, int]:
    """(min width, reach, cost, look-behind) of parsed regex items. Reach counts
    look-ahead contents as if consumed (an upper bound); cost is a rough count of the
    ways backtracking may try (products over sequences and repeats)."""
    lo = hi = 0.0
    cost = 1.0
    behind = 0
    for op, av in items:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.IN, _c.ANY):
            lo += 1
            hi += 1
        elif op is _c.AT:
            hi += 1  # \b, $, \Z look at the next byte (and the previous one)
            behind = max(behind, 1)
        elif op is _c.BRANCH:
            parts = [_walk(alt, flags) for alt in av[1]]
            lo += min(p[0] for p in parts)
            hi += max(p[1] for p in parts)
            cost *= sum(p[2] for p in parts)
            behind = max(behind, *(p[3] for p in parts))
        elif op is _c.SUBPATTERN:
            sub = _walk(av[-1], flags)
            lo, hi, cost, behind = lo + sub[0], hi + sub[1], cost * sub[2], max(behind, sub[3])
        elif op is getattr(_c, "ATOMIC_GROUP", None):
            sub = _walk(av, flags)
            lo, hi, cost, behind = lo + sub[0], hi + sub[1], cost * sub[2], max(behind, sub[3])
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
            low, high, body = av
            sub = _walk(body, flags)
            if high == _c.MAXREPEAT:
                return lo, _INF, cost, behind
            lo += sub[0] * low
            hi += sub[1] * high
            ways = (high - low + 1) if sub[2] <= 1 else sub[2] ** min(high, 64) * (high - low + 1)
            cost *= ways
            behind = max(behind, sub[3])
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            direction, body = av
            sub = _walk(body, flags)
            if direction < 0:
                behind = max(behind, int(sub[1]) + 1 if sub[1] != _INF else 1 << 30)
            else:
                hi += sub[1]
            cost *= sub[2]
        elif op in (_c.GROUPREF, _c.GROUPREF_EXISTS, getattr(_c, "GROUPREF_IGNORE", None)):
            raise MaskingRuleError("back-references are not supported")
        elif op in (_c.FAILURE, _c.SUCCESS):
            pass
        else:  # pragma: no cover - an opcode this version does not know
            raise MaskingRuleError(f"unsupported construct {op}")
    return lo, hi, cost, behind


def analyse(name: str, pattern: str | bytes | re.Pattern, *,
            check_cost: bool = True) -> tuple[re.Pattern, int, int]:
    """Compile one rule and check it can be streamed: (bytes pattern, reach, look-behind).

    Refused with MaskingRuleError: bad syntax, a rule that can match the empty string (it
    would match everywhere), an unbounded repeat (`+`, `*`, `{n,}`: write `{1,512}`), a
    reach over MAX_REACH, back-references, and — for configured rules — nested repeats
    whose backtracking estimate exceeds MAX_COST (`(a+)+`, `(a{1,10}){10}`)."""
    compiled = _to_bytes_pattern(name, pattern)
    try:
        parsed = _p.parse(compiled.pattern, compiled.flags)
    except (re.error, ValueError, TypeError) as exc:  # compiled already: should not happen
        raise MaskingRuleError(f"rule {name!r}: {exc}") from None
    try:
        lo, hi, cost, behind = _walk(parsed.data, compiled.flags)
    except MaskingRuleError as exc:
        raise MaskingRuleError(f"rule {name!r}: {exc}") from None
    except RecursionError:
        raise MaskingRuleError(f"rule {name!r}: nested too deeply") from None
    if hi == _INF:
        raise MaskingRuleError(f"rule {name!r}: unbounded repeat (+, *, {{n,}}); "
                               f"use a bounded one such as {{1,512}}")
    if lo == 0:
        raise MaskingRuleError(f"rule {name!r}: can match the empty string")
    if hi > MAX_REACH or behind > MAX_REACH:
        raise MaskingRuleError(f"rule {name!r}: can match more than {MAX_REACH} bytes")
    if check_cost and cost > MAX_COST:
        raise MaskingRuleError(f"rule {name!r}: nested or repeated variable repeats could "
                               f"take exponential time (like (a+)+); simplify it")
    return compiled, int(hi) + 1, behind + 1


def check_rule(name: str, pattern: str | bytes | re.Pattern) -> None:
    """Raise MaskingRuleError if a configured rule cannot be used (config.py calls this)."""
    analyse(name, pattern)
