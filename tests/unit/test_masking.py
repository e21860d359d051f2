"""hostd/masking/masker.py: secrets are masked whatever the chunking, hold-back stays bounded,
UTF-8 and binary survive, and rules that cannot be streamed are refused by name."""

from __future__ import annotations

import re
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostd.errors import ConfigError
from hostd.masking import analysis as maskrules
from hostd.masking.analysis import MaskingRuleError
from hostd.masking.masker import Masker, builtin_rules
from hostd.masking.screen import mask_screen
from hostd.policy import config as cfg


def mask(data: bytes, rules=(), *, builtins: bool = True) -> bytes:
    """Mask a whole buffer at once: the reference the streaming guarantee is stated
    against (hostd only ever streams, through Masker)."""
    m = Masker(rules, builtins=builtins)
    return m.feed(data) + m.flush()

# Fake secrets, one per built-in rule (none of them is real).
KEY_BODY = "MIIEowIBAAKCAQEAq7BFUpkGp3+LQmlQ\nYx5ZL0q8xV4aUj2hQ4qWJt9NfC1pW0mEzA==\n"
SECRETS = {
    "aws_access_key_id": ("key AKIAIOSFODNN7EXAMPLE ok", "AKIAIOSFODNN7EXAMPLE"),
    "private_key": ("-----BEGIN RSA PRIVATE KEY-----\n" + KEY_BODY
                    + "-----END RSA PRIVATE KEY-----\n$ ", KEY_BODY.split("\n")[0]),
    "openssh_key": ("x\n-----BEGIN OPENSSH PRIVATE KEY-----\n" + KEY_BODY
                    + "-----END OPENSSH PRIVATE KEY-----\n", KEY_BODY.split("\n")[1]),
    "jwt": ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlMTIz end",
            "eyJzdWIiOiJhbGljZSJ9"),
    "bearer_token": ("Authorization: Bearer abcdef0123456789xyz\r\n", "abcdef0123456789xyz"),
    "assignment": ("export DB_PASSWORD=hunter2hunter2; ls", "hunter2hunter2"),
    "assignment_json": ('{"apiKey": "k3y with spaces", "n": 1}', "k3y with spaces"),
    "assignment_secret": ("aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n",
                          "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"),
    "option_value": ("mysql --password hunter2hunter2 -h db", "hunter2hunter2"),
    "basic_auth": ("Authorization: Basic dXNlcjpwYXNzd29yZA==\r\n", "dXNlcjpwYXNzd29yZA=="),
    "url_credentials": ("git clone https://bob:pa55w0rd@git.example/repo", "pa55w0rd"),
    "github_token": ("GH=ghp_" + "a1B2c3D4e5" * 4 + " done", "a1B2c3D4e5" * 3),
    "slack_token": ("xoxb-1234567890-abcdefghij", "1234567890-abcdefghij"),
    "google_api_key": ("AIzaSyA1234567890abcdefghijklmnopqrstuvw", "SyA1234567890abcdefgh"),
}


def chunked(m: Masker, data: bytes, cuts: list[int]) -> bytes:
    out, prev = [], 0
    for cut in [*sorted(cuts), len(data)]:
        out.append(m.feed(data[prev:cut]))
        prev = cut
    out.append(m.flush())
    return b"".join(out)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_builtin_masks_its_secret(name):
    text, secret = SECRETS[name]
    out = mask(text.encode())
    assert secret.encode() not in out
    assert len(out) == len(text.encode())  # same length: layouts survive
    assert b"*" in out


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_every_split_point_of_a_secret_gives_the_same_bytes(name):
    data = ("pre " + SECRETS[name][0] + " post").encode()
    whole = mask(data)
    for i in range(len(data) + 1):
        assert chunked(Masker(), data, [i]) == whole, i
    assert chunked(Masker(), data, list(range(1, len(data)))) == whole  # a byte at a time


def test_only_the_value_of_an_assignment_is_masked():
    assert mask(b"password=hunter2 user=bob") == b"password=******* user=bob"
    assert mask(b"Authorization: Bearer abcdefghijkl") == b"Authorization: Bearer ************"
    assert mask(b"https://bob:pw@host/") == b"https://bob:**@host/"


@pytest.mark.parametrize("text", [
    "compass: north", "secretary: bob", "5 passed, 1 failed", "Password: ",
    "The token is not shown", "bypass=3", "basic information", "pass --help",
])
def test_ordinary_text_is_left_alone(text):
    assert mask(text.encode()) == text.encode()


def test_grep_colours_around_an_assignment_do_not_hide_it():
    # grep --color=always -E 'PASSWORD' and -E 'hunter'
    # matched on the visible text (hostd.masking.screen): the colours stay
    assert mask_screen(b"DB_\x1b[01;31m\x1b[KPASSWORD\x1b[m\x1b[K=hunter2\n") == \
        b"DB_\x1b[01;31m\x1b[KPASSWORD\x1b[m\x1b[K=*******\n"
    out = mask_screen(b"DB_PASSWORD=\x1b[01;31m\x1b[Khunter\x1b[m\x1b[K2\n")
    assert out.startswith(b"DB_PASSWORD=\x1b[01;31m\x1b[K") and b"hunter" not in out
    assert out == b"DB_PASSWORD=\x1b[01;31m\x1b[K******\x1b[m\x1b[K*\n"


def test_a_private_key_keeps_its_line_structure():
    text, _ = SECRETS["private_key"]
    out = mask(text.encode()).decode()
    assert out.count("\n") == text.count("\n")
    assert set(out.replace("\n", "")[:-2]) == {"*"} and out.endswith("\n$ ")


def test_a_private_key_without_its_end_is_masked_as_far_as_it_goes():
    text = "-----BEGIN PRIVATE KEY-----\n" + KEY_BODY + "$ "
    out = mask(text.encode()).decode()
    assert KEY_BODY.split("\n")[0] not in out and KEY_BODY.split("\n")[1] not in out


def test_overlapping_rules_mask_the_union():
    rules = [("a", r"abc123"), ("b", r"123xyz"), ("inner", r"c1")]
    assert mask(b"..abc123xyz..", rules, builtins=False) == b"..*********.."
    # a rule's match inside another's, and a builtin overlapping a configured one
    rules = [("long", r"token=[a-z]{1,40}"), ("short", r"ken=ab")]
    assert mask(b"token=abcdef", rules, builtins=False) == b"************"
    assert mask(b"x AKIAIOSFODNN7EXAMPLE", [("tail", r"EXAMPLE x{0,3}")]) == \
        b"x ********************"


def test_named_secret_group_limits_what_is_masked():
    rules = [("pin", r"PIN (?P<secret>[0-9]{4})")]
    assert mask(b"PIN 1234 ok", rules, builtins=False) == b"PIN **** ok"


def test_binary_output_survives():
    data = bytes(range(256)) * 64
    assert mask(data) == data
    m = Masker()
    assert chunked(m, data, list(range(0, len(data), 97))) == data
    secret = b"\x00\xff\x1b[0mAKIAIOSFODNN7EXAMPLE\xfe\x80"
    assert mask(secret) == b"\x00\xff\x1b[0m" + b"*" * 20 + b"\xfe\x80"


def test_a_match_inside_a_utf8_character_is_widened_to_the_whole_character():
    rules = [("cut", rb"\xa9x")]  # the last byte of "é" and an x
    out = mask("aéxb".encode(), rules, builtins=False)
    assert out == b"a***b"
    out.decode("utf-8")


def test_split_utf8_is_never_broken_between_outputs():
    text = ("héllo wörld € 𝄞 " * 4000).encode()
    m = Masker()
    for i in range(0, len(text), 1000):  # 1000 cuts characters often
        out = m.feed(text[i:i + 1000])
        out.decode("utf-8")  # each output ends on a character boundary
    m.flush().decode("utf-8")


def test_hold_back_is_bounded_whatever_the_input():
    m = Masker()
    data = (SECRETS["private_key"][0] + "x" * 5000 + "-----BEGIN RSA PRIVATE KEY-----\n"
            + "A" * 50000).encode()
    emitted = 0
    for i in range(0, len(data), 4096):
        emitted += len(m.feed(data[i:i + 4096]))
        assert m.holding <= m.max_holding
        assert emitted + m.holding == min(i + 4096, len(data))
    held = m.holding
    assert len(m.flush()) == held and emitted + held == len(data)
    assert m.holding == 0


def test_no_rules_no_hold_back():
    m = Masker(builtins=False)
    assert m.feed(b"abc\xc3") == b"abc\xc3" and m.holding == 0
    assert m.flush() == b""


def test_an_idle_flush_masks_what_has_arrived_and_the_rest_later():
    m = Masker()
    out = m.feed(b"password=hun") + m.flush()
    assert out == b"password=***"
    # the match that began before the flush goes on masking after it
    assert m.feed(b"ter2 AKIAIOSFODNN7EXAMPLE\n") + m.flush() == b"**** " + b"*" * 20 + b"\n"


def test_a_secret_typed_with_echo_is_masked_key_by_key():
    m = Masker()
    typed = b"export TOKEN=s3cr3tvalue; ls\r\n"
    out = b"".join(m.feed(typed[i:i + 1]) + m.flush() for i in range(len(typed)))
    assert out == b"export TOKEN=***********; ls\r\n"


def test_a_plain_flush_in_the_middle_is_whole_stream_masking_so_far():
    m = Masker()
    key = b"AKIAIOSFODNN7EXAMPLE"
    out = b"".join(m.feed(key[i:i + 1]) + m.flush() for i in range(len(key)))
    assert out == key[:-1] + b"*"  # no rule matches a key id until its last character


def test_an_idle_flush_masks_a_forming_secret_past_its_fixed_start():
    m = Masker()
    key = b"AKIAIOSFODNN7EXAMPLE"
    out = b"".join(m.feed(key[i:i + 1]) + m.flush(idle=True) for i in range(len(key)))
    assert out == b"AKIA" + b"*" * 16


def test_counts_say_what_was_masked():
    m = Masker()
    m.feed(b"AKIAIOSFODNN7EXAMPLE password=x ")
    m.flush()
    counts = dict(zip(m.names, m.counts, strict=True))
    assert counts["aws_access_key_id"] == 1 and counts["field"] == 1


# property: chunked == whole -------------------------------------------------------------

FRAGMENTS = [s for text, _ in SECRETS.values() for s in (text, text[: len(text) // 2])] + [
    "password=", "Bearer ", "eyJ", "AKIA", "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----END RSA PRIVATE KEY-----", "é", "€", "𝄞", "\r\n", " ", "=", ":", "x"]
pieces = st.one_of(st.sampled_from(FRAGMENTS).map(str.encode),
                   st.binary(max_size=40),
                   st.text(max_size=20).map(str.encode))


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(pieces, max_size=30), st.lists(st.integers(min_value=0), max_size=12))
def test_chunked_equals_whole(parts, cuts):
    data = b"".join(parts)
    cuts = [c % (len(data) + 1) for c in cuts]
    assert chunked(Masker(), data, cuts) == mask(data)


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(pieces, max_size=30), st.lists(st.integers(min_value=0), max_size=12))
def test_chunked_equals_whole_with_configured_rules(parts, cuts):
    rules = [("x", r"x{2,5}=[^ ]{1,8}"), ("pw", r"(?i)secret(?P<secret>[0-9]{1,6})"),
             ("lb", r"(?<=:)AKIA")]
    data = b"".join(parts)
    cuts = [c % (len(data) + 1) for c in cuts]
    assert chunked(Masker(rules), data, cuts) == mask(data, rules)


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(max_size=200), st.lists(st.integers(min_value=0), max_size=8))
def test_masked_text_is_still_utf8_and_the_same_length(text, cuts):
    data = text.encode()
    out = chunked(Masker(), data, [c % (len(data) + 1) for c in cuts])
    assert len(out) == len(data)
    out.decode("utf-8")


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(pieces, max_size=30),
       st.lists(st.tuples(st.integers(min_value=0), st.booleans()), max_size=12))
def test_after_an_idle_flush_output_is_masked_as_the_whole_stream(parts, cuts):
    """Bytes that feed() returns equal whole-stream masking even with flushes between;
    bytes a flush returns are masked as the stream up to that flush masks them."""
    data = b"".join(parts)
    whole = mask(data)
    m = Masker()
    prev, at = 0, 0
    for cut, flush in [*sorted((c % (len(data) + 1), f) for c, f in cuts), (len(data), True)]:
        out = m.feed(data[prev:cut])
        assert out == whole[at:at + len(out)]
        at += len(out)
        prev = cut
        if flush:
            out = m.flush()
            assert out == mask(data[:cut])[at:]
            at += len(out)
    assert at == len(data)

# refused rules ----------------------------------------------------------------------------

@pytest.mark.parametrize("regex,reason", [
    (r"[", "bad regular expression"),
    (r"password=\S+", "unbounded repeat"),
    (r"a*", "unbounded repeat"),
    (r"a?", "can match the empty string"),
    (r"(?=x)", "can match the empty string"),
    (r"(a{1,10}){10}", "exponential"),
    (r"(?:x{1,30}|y{1,30}){1,30}", "exponential"),
    (r"(a)\1", "back-references"),
    (r"x{40000}", "more than 32768 bytes"),
    (r"(?u)x", "rule 'k'"),
])
def test_rules_that_cannot_be_streamed_are_refused(regex, reason):
    with pytest.raises(MaskingRuleError, match=re.escape(reason)):
        maskrules.check_rule("k", regex)
    with pytest.raises(MaskingRuleError):
        Masker([("k", regex)])


def test_builtins_are_valid_and_bounded():
    for name, regex in builtin_rules():
        _, reach, _ = maskrules.analyse(name, regex, check_cost=False)
        assert reach <= maskrules.MAX_REACH


def test_config_refuses_a_catastrophic_rule_by_name():
    policy = tomllib.loads('[masking]\nrules = [ { name = "bad", regex = "(a+)+b" } ]\n')
    with pytest.raises(ConfigError) as err:
        cfg.parse_policy(cfg.Path("/etc/jit/jit.toml"), policy)
    assert "masking.rules[0].regex" in str(err.value)
    assert "unbounded repeat" in str(err.value)
    policy = tomllib.loads('[masking]\nrules = [ { name = "ok", regex = "PIN [0-9]{4}" } ]\n')
    c = cfg.parse_policy(cfg.Path("/etc/jit/jit.toml"), policy)
    assert mask(b"PIN 1234", c["masking"], builtins=False) == b"********"


@pytest.mark.parametrize(("toml", "key"), [
    ('fields = ["pin", "2fa"]', "masking.fields"),
    ('fields = ["a b"]', "masking.fields"),
    ('optional = ["phone"]', "masking.optional"),
    ("hold = 11", "masking.hold"),
    ("hold = -1", "masking.hold"),
    ('hold = "1s"', "masking.hold"),
])
def test_config_refuses_bad_masking_extras_by_name(toml, key):
    with pytest.raises(ConfigError) as err:
        cfg.parse_policy(cfg.Path("/etc/jit/jit.toml"), tomllib.loads(f"[masking]\n{toml}\n"))
    assert key in str(err.value)


def test_config_reads_the_masking_extras():
    c = cfg.parse_policy(cfg.Path("/etc/jit/jit.toml"), tomllib.loads(
        '[masking]\nfields = ["pin", "ssn"]\noptional = ["card"]\nhold = 0.5\n'))
    assert (c["masking_fields"], c["masking_optional"], c["masking_hold"]) == (
        ("pin", "ssn"), ("card",), 0.5)
    defaults = cfg.Config()
    assert (defaults.masking_fields, defaults.masking_optional, defaults.masking_hold) == (
        (), (), 1.0)
