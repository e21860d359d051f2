"""The built-in masking rules (DESIGN.md §13 "Masking on the visible text"), versioned.

Pure data and small builders: `masking.Masker` compiles them. Every rule is
(name, regex on bytes) plus, for the fast search, the lower-cased anchors its matches
start with (rules that start with letters in either case), and, for the idle-flush
hold, what a secret of that rule looks like while it is still forming (`Forming`).

Rules match the *visible* text: `screen.ScreenMasker` removes escape sequences before
matching, so no rule needs to allow colour codes.

RULES_VERSION changes whenever a default rule is added, removed or changes what it
matches; `jit mask test --json` reports it, and README's table lists the rules of
this version.
"""

from __future__ import annotations

import re

RULES_VERSION = 2

# Field names whose value is a secret, as regex fragments (case-insensitive); a name
# may carry a suffix (`password_file`, `secret_access_key`) and a prefix separated by
# `_`, `-`, `.` or a camelCase boundary (`DB_PASSWORD`, `clientSecret`, `x-api-key`).
FIELD_NAMES = (r"pass(?:word|wd|phrase)?", r"pwd", r"secret", r"token", r"api[_-]?key",
               r"access[_-]?key", r"private[_-]?key", r"credentials?")
FIELD_ANCHORS = (b"pass", b"pwd", b"secret", b"token", b"api", b"access", b"private",
                 b"credential")
OPTIONAL = ("email", "card")  # opt-in sets: [masking] optional = ["email", "card"]
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


class FieldNameError(ValueError):
    """A `[masking] fields` entry that is not a plain field name."""


class Forming:
    """How a secret of a rule looks before its last character: `prefixes` are the fixed
    starts (AKIA, ghp_: not secret, shown); `regex` matches a partial secret up to the
    end of what has arrived, with group `secret` for what is masked once the hold bound
    has passed (absent: shown as typed). (Plain classes: dataclasses imports inspect,
    milliseconds at every recorder start.)"""

    __slots__ = ("prefixes", "regex")

    def __init__(self, prefixes: tuple[bytes, ...], regex: bytes) -> None:
        self.prefixes, self.regex = prefixes, regex


class RuleSpec:
    """A built-in rule: name, regex, anchors, Forming, and a check(bytes) -> bool that
    confirms a match (Luhn)."""

    __slots__ = ("anchors", "check", "forming", "name", "regex")

    def __init__(self, name: str, regex: str, anchors: tuple[bytes, ...] = (),
                 forming: Forming | None = None, check=None) -> None:
        self.name, self.regex, self.anchors = name, regex, anchors
        self.forming, self.check = forming, check


_AWS = (b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"AIPA", b"ANPA", b"ANVA", b"APKA",
        b"ABIA", b"ACCA", b"A3T")
_B64URL = rb"[A-Za-z0-9_-]"


def check_field_names(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Configured field names: letters, digits, `_.-`, starting with a letter."""
    for name in names:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise FieldNameError(f"field name {str(name)[:64]!r}: use letters, digits, "
                                 "_ . - (starting with a letter, at most 64)")
    return tuple(names)


def _field_rules(extra: tuple[str, ...]) -> list[RuleSpec]:
    """The field family: values of fields named like secrets, wherever they are written."""
    names = "|".join((*FIELD_NAMES, *(re.escape(n) for n in extra)))
    key = r"(?i:" + names + r")(?:[_.-][A-Za-z0-9_.-]{0,32})?"
    start = r"(?:(?<![A-Za-z])|(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=PASS|PWD|SECRET|TOKEN))"
    quote_end = r"""(?:\\?["'])?"""  # the key's closing quote, maybe escaped (JSON in JSON)
    sep = r"[ \t]{0,4}[=:][ \t]{0,4}"
    value = (r'(?:\\"(?P<secret>(?:[^"\\\r\n]|\\[^"\r\n]){1,512})\\"'
             r'|"(?P<secret2>(?:[^"\\\r\n]|\\[^\r\n]){1,512})"'
             r"|'(?P<secret3>[^'\r\n]{1,512})'"
             r"""|(?P<secret4>[^\s"',;&<>\\]{1,512}))""")
    assignment = (r"(?:(?<=--)" + key + r"[ \t]{1,4}(?P<secret5>[^\s\"'-][^\s\"']{0,511})"
                  r"|" + start + key + quote_end + sep + value + ")")
    extra_anchors = tuple(n.lower().encode() for n in extra)
    auth = (r"(?<![A-Za-z])(?i:authorization)\\?[\"']?[ \t]{0,4}[:=][ \t]{0,4}\\?[\"']?"
            r"[A-Za-z]{2,16}[ \t]{1,4}")
    open_value = (r"""(?:\\?["'])(?P<secret>(?:[^"'\\\r\n]|\\[^\r\n]){1,512})""")
    return [
        RuleSpec("field", assignment, FIELD_ANCHORS + extra_anchors,
                 Forming((), (start + key + quote_end + sep + open_value).encode())),
        RuleSpec("http_authorization",
                 r"(?:(?i:bearer)[ \t]{1,4}(?P<secret>[A-Za-z0-9._~+/-]{8,2048}={0,2})"
                 r"|" + auth + r"(?P<secret2>[^\s\"'\\]{4,2048}))",
                 (b"bearer", b"authorization"),
                 Forming((), (r"(?:(?i:bearer)[ \t]{1,4}(?P<secret>[A-Za-z0-9._~+/-]{1,2048})"
                              r"|" + auth + r"(?P<secret2>[^\s\"'\\]{1,2048}))").encode())),
        RuleSpec("http_cookie",
                 r"(?<![A-Za-z])(?i:cookie)[ \t]{0,4}:[ \t]{0,4}(?P<secret>[^\s][^\r\n]{0,4095})",
                 (b"cookie",)),
        RuleSpec("command_password",  # mysql -pSECRET, mariadb-dump -pX, sshpass -p X
                 r"(?:(?<![A-Za-z])(?:mysql|mariadb)[a-z-]{0,16}[ \t](?:[^\r\n;|&]{0,256}?"
                 r"[ \t])?-p(?P<secret>[^\s'\"]{1,512})"
                 r"|(?<![A-Za-z])sshpass[ \t](?:[^\r\n;|&]{0,128}?[ \t])?-p[ \t]{0,4}"
                 r"(?P<secret2>[^\s'\"]{1,512}))",
                 (b"mysql", b"mariadb", b"sshpass")),
    ]


def _luhn(digits: bytes) -> bool:
    """A card number's check digit (ISO/IEC 7812): cuts false positives by 90%."""
    nums = [c - 48 for c in digits if 48 <= c <= 57]
    if not 13 <= len(nums) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(nums)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _optional_rules(optional: tuple[str, ...]) -> list[RuleSpec]:
    out = []
    if "email" in optional:
        out.append(RuleSpec(
            "email", r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
                     r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])"))
    if "card" in optional:
        out.append(RuleSpec("card", r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])",
                            check=_luhn))
    return out


def builtin_specs(fields: tuple[str, ...] = (), optional: tuple[str, ...] = ()) -> list[RuleSpec]:
    """The default rules, the field family with `fields` added, and the opt-in sets.

    Each starts with a rare literal or has anchors, so text without secrets is searched
    at C speed, and each has bounded repeats (see masking.analyse)."""
    unknown = set(optional) - set(OPTIONAL)
    if unknown:
        raise FieldNameError(f"unknown optional rule set {sorted(unknown)[0][:32]!r}; "
                             f"known: {', '.join(OPTIONAL)}")
    aws = b"|".join(_AWS[:-1]) + rb"|A3T[A-Z0-9]"
    return [
        RuleSpec("private_key",
                 r"-----BEGIN[ A-Z0-9]{0,32} PRIVATE KEY(?: BLOCK)?-----"
                 r"(?:[\s\S]{1,12288}?-----END[ A-Z0-9]{0,32} PRIVATE KEY(?: BLOCK)?-----"
                 r"|[A-Za-z0-9+/=:,. \t\r\n-]{0,12288})",
                 forming=Forming((b"-----BEGIN",), rb"-----BEGIN[ A-Z0-9]{1,40}-{0,5}")),
        RuleSpec("aws_access_key_id", "(?:" + aws.decode() + ")[A-Z0-9]{16}",
                 forming=Forming(_AWS, b"(?:" + aws + rb")(?P<secret>[A-Z0-9]{1,15})")),
        RuleSpec("jwt", r"eyJ[A-Za-z0-9_-]{4,4096}\.eyJ[A-Za-z0-9_-]{4,4096}"
                        r"\.[A-Za-z0-9_-]{0,4096}",
                 forming=Forming((b"eyJ",), b"eyJ(?P<secret>" + _B64URL + b"{1,4096}(?:\\.(?:e(?:y"
                                 b"(?:J" + _B64URL + b"{0,4096}(?:\\." + _B64URL
                                 + b"{0,4096})?)?)?)?)?)")),
        *_field_rules(fields),
        RuleSpec("url_credentials", r"://[^\s/:@]{1,128}:(?P<secret>[^\s/@]{1,256})@",
                 forming=Forming((b"://",), rb"://[^\s/:@]{1,128}:(?P<secret>[^\s/@]{1,256})")),
        RuleSpec("github_token",
                 r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})",
                 forming=Forming((b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_", b"github_pat_"),
                                 rb"(?:gh[pousr]_|github_pat_)(?P<secret>[A-Za-z0-9_]{1,255})")),
        RuleSpec("slack_token", r"xox[abposr]-[A-Za-z0-9-]{10,255}",
                 forming=Forming((b"xoxb-", b"xoxp-", b"xoxa-", b"xoxo-", b"xoxs-", b"xoxr-"),
                                 rb"xox[abposr]-(?P<secret>[A-Za-z0-9-]{1,255})")),
        RuleSpec("google_api_key", r"AIza[0-9A-Za-z_-]{35}",
                 forming=Forming((b"AIza",), rb"AIza(?P<secret>[0-9A-Za-z_-]{1,34})")),
        RuleSpec("stripe_key", r"_live_(?<=[rs]k_live_)[0-9A-Za-z]{16,247}",
                 forming=Forming((b"sk_live_", b"rk_live_"),
                                 rb"[rs]k_live_(?P<secret>[0-9A-Za-z]{1,247})")),
        *_optional_rules(optional),
    ]


def builtin_rules() -> list[tuple[str, str]]:
    """(name, regex) of the default rules (docs, tests)."""
    return [(s.name, s.regex) for s in builtin_specs()]
