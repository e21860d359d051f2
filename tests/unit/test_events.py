"""events: user values logged as inert data (DESIGN.md §10), the JIT_* schema, MESSAGE_IDs."""

from __future__ import annotations

import json
import re

import pytest

from hostd import events
from hostd.events import EVENT_TYPES, FIELDS, carried, entry, escape
from hostd.state import journal
from hostd.state.journal import Events, read_mirror

ESCAPES = [
    ("plain", "systemctl restart nginx", "systemctl restart nginx"),
    ("newline", "ok\nJIT_DECISION=allowed", "ok\\nJIT_DECISION=allowed"),
    ("carriage-return", "a\rb", "a\\rb"),
    ("tab", "a\tb", "a\\tb"),
    ("nul", "a\x00b", "a\\x00b"),
    ("bell", "\x07", "\\x07"),
    ("del", "\x7f", "\\x7f"),
    ("c1-nel", "a\x85b", "a\\x85b"),
    ("c1-csi", "\x9b31m", "\\x9b31m"),
    ("osc-title", "\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
    ("csi-clear", "\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
    ("line-separator", "a\u2028b", "a\\u2028b"),
    ("paragraph-separator", "a\u2029b", "a\\u2029b"),
    ("rtl-override", "\u202egnp.exe", "\\u202egnp.exe"),
    ("zero-width-space", "a\u200bb", "a\\u200bb"),
    ("bom", "\ufeffx", "\\ufeffx"),
    ("lone-surrogate", "\ud800", "\\ud800"),
    ("backslash", "C:\\temp", "C:\\\\temp"),
    ("backslash-n-literal", "\\n", "\\\\n"),
    ("backslash-before-escape", "\\\n", "\\\\\\n"),
    ("unicode-text-kept", "café ☕ 日本", "café ☕ 日本"),
    ("non-str", 42, "42"),
]


@pytest.mark.parametrize("value,expected", [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escape(value, expected):
    assert escape(value) == expected


INERT_SAMPLES = ["a\nb", "\x1b]0;x\x07", "\u2028", "\u0085", "\r\n", "\\\n", "\x00",
                 "\U000e0001", "\ue000", "\U0010fffd"]


@pytest.mark.parametrize("value", INERT_SAMPLES, ids=[repr(v) for v in INERT_SAMPLES])
def test_escaped_value_has_no_control_or_separator(value):
    out = escape(value)
    assert out.isprintable(), repr(out)
    assert len(out.splitlines()) == 1


COLLISIONS = [
    ("backslash-n-vs-newline", "\\n", "\n"),
    ("escape-text-vs-escape", "\\x1b", "\x1b"),
    ("non-bmp-vs-bmp-and-digit", "\U000e0001", "\ue000" + "1"),
]


@pytest.mark.parametrize("a,b", [c[1:] for c in COLLISIONS], ids=[c[0] for c in COLLISIONS])
def test_escape_is_unambiguous(a, b):
    """Two different values never log the same: an approver sees what was asked."""
    assert escape(a) != escape(b)


def test_escape_truncates_long_values():
    out = escape("x" * (events.MAX_VALUE + 10))
    assert out == "x" * events.MAX_VALUE + "...[truncated]"
    assert escape("x" * events.MAX_VALUE) == "x" * events.MAX_VALUE


# --- Events.emit ---------------------------------------------------------------------------

# DESIGN.md §10's fields, and the keyword of Events.emit that sets each.
DESIGN_FIELDS = ["JIT_USER", "JIT_UID", "JIT_ROLE", "JIT_GRANT_ID", "JIT_ISSUER",
                 "JIT_NOT_AFTER", "JIT_GROUPS", "JIT_COMMAND", "JIT_RUNAS", "JIT_DECISION",
                 "JIT_REASON", "JIT_REQUEST_ID", "JIT_APPROVER", "JIT_SESSION_ID",
                 "JIT_RECORDING", "JIT_RECORDING_SHA256"]


@pytest.fixture
def sink(tmp_path):
    mirror = tmp_path / "events.jsonl"
    return Events(mirror=mirror, journal=False), mirror


def _carrier(kw: str) -> str:
    """An event type that declares field `kw`."""
    return next(name for name, kind in EVENT_TYPES.items() if kw in kind.fields)


@pytest.mark.parametrize("field", DESIGN_FIELDS, ids=DESIGN_FIELDS)
def test_every_design_field_can_be_emitted(field, sink):
    ev, mirror = sink
    kw = field.removeprefix("JIT_").lower()
    assert kw in FIELDS
    record = ev.emit(_carrier(kw), "m", **{kw: "v\n1"})
    assert record[field] == "v\\n1"
    (line,) = read_mirror(mirror)
    assert line[field] == "v\\n1"


def test_every_field_is_carried_by_some_event_type():
    assert {f for kind in EVENT_TYPES.values() for f in kind.fields} == set(FIELDS)


@pytest.mark.parametrize("event", sorted(EVENT_TYPES), ids=sorted(EVENT_TYPES))
def test_all_declared_fields_together_and_mirror_matches(event, sink):
    ev, mirror = sink
    fields = {name: f"{name}-value" for name in EVENT_TYPES[event].fields}
    fields.update({k: v for k, v in {"uid": 1000, "groups": ["docker", "adm"]}.items()
                   if k in fields})
    record = ev.emit(event, f"{event} happened", **fields)
    if "uid" in fields:
        assert record["JIT_UID"] == "1000"
    if "groups" in fields:
        assert record["JIT_GROUPS"] == "docker,adm"
    assert record["JIT_EVENT"] == event
    assert record["SYSLOG_IDENTIFIER"] == "jit-hostd"
    expected = {"JIT_" + k.upper() for k in fields} | {
        "MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "JIT_EVENT"}
    assert set(record) == expected
    lines = mirror.read_text().splitlines()
    assert len(lines) == 1
    mirrored = json.loads(lines[0])
    assert re.fullmatch(r"\d{16,}", mirrored.pop("__REALTIME_TIMESTAMP"))
    assert mirrored == record


def test_hostile_values_stay_on_one_mirror_line(sink):
    ev, mirror = sink
    hostile = "rm -rf /\nJIT_DECISION=allowed\x1b]0;ok\x07\u2028\\"
    record = ev.emit("sudo_denied", hostile, command=hostile, reason=hostile, user="mallory")
    assert len(mirror.read_text().splitlines()) == 1
    for key in ("MESSAGE", "JIT_COMMAND", "JIT_REASON"):
        assert record[key] == "rm -rf /\\nJIT_DECISION=allowed\\x1b]0;ok\\x07\\u2028\\\\"
        assert record[key].isprintable()


def test_list_items_escaped_each(sink):
    ev, _ = sink
    record = ev.emit("membership_added", "m", groups=["docker", "a\nb"])
    assert record["JIT_GROUPS"] == "docker,a\\nb"


@pytest.mark.parametrize("value", [None, "", []], ids=["none", "empty-string", "empty-list"])
def test_empty_values_are_left_out(value, sink):
    ev, _ = sink
    assert "JIT_REASON" not in ev.emit("grant_activated", "m", reason=value)


def test_zero_is_not_empty(sink):
    ev, _ = sink
    assert ev.emit("grant_activated", "m", uid=0)["JIT_UID"] == "0"


@pytest.mark.parametrize("name", ["usr", "JIT_USER", "priority", "message_id", "syslog"])
def test_unknown_field_raises(name, sink):
    ev, mirror = sink
    with pytest.raises(ValueError, match="unknown event field"):
        ev.emit("grant_activated", "m", **{name: "x"})
    assert not mirror.exists() or mirror.read_text() == ""


@pytest.mark.parametrize(("event", "name"), [("hostd_started", "user"),
                                             ("grant_expired", "command"),
                                             ("sudo_allowed", "approver")])
def test_field_the_type_does_not_declare_raises(event, name, sink):
    """Each type declares its fields once (events.EVENT_TYPES); a writer cannot drift."""
    ev, mirror = sink
    assert name in FIELDS and name not in EVENT_TYPES[event].fields
    with pytest.raises(ValueError, match="undeclared event field"):
        ev.emit(event, "m", **{name: "x"})
    with pytest.raises(ValueError, match="carries no field"):
        carried(event, **{name: "x"})
    assert not mirror.exists() or mirror.read_text() == ""


def test_carried_takes_declared_fields_from_subjects():
    """A whole row can be given: what the type does not declare stays out; keywords win
    over subjects, earlier subjects over later ones; None subjects are skipped."""

    class Session:
        user, uid, host, command = "alice", 1001, "h1", "/bin/id"

    row = {"user": "bob", "uid": 1002, "role": "docker", "state": "active", "kind": "role"}
    got = carried("request_created", None, row, Session(), request_id="r1",
                  decision="pending")
    assert got == {"user": "bob", "uid": 1002, "role": "docker", "request_id": "r1",
                   "decision": "pending"}
    got = carried("recording_started", Session(), row, recording="s-1")
    assert got == {"user": "alice", "uid": 1001, "role": "docker", "command": "/bin/id",
                   "recording": "s-1"}


def test_entry_is_pure_and_matches_what_events_writes(sink):
    ev, _ = sink
    fields = {"user": "al\nice", "uid": 7, "grant_id": "g1", "decision": "expired"}
    assert entry("grant_expired", "m\x1b", **fields) == ev.emit("grant_expired", "m\x1b",
                                                                 **fields)


def test_unknown_event_raises(sink):
    ev, _ = sink
    with pytest.raises(KeyError):
        ev.emit("grant_stolen", "m")


@pytest.mark.parametrize("event", sorted(EVENT_TYPES), ids=sorted(EVENT_TYPES))
def test_each_event_carries_its_message_id_and_priority(event, sink):
    ev, mirror = sink
    record = ev.emit(event, f"{event} happened")
    message_id, priority = EVENT_TYPES[event].message_id, EVENT_TYPES[event].priority
    assert (record["MESSAGE_ID"], record["PRIORITY"], record["JIT_EVENT"]) == (
        message_id, str(priority), event)
    assert read_mirror(mirror)[-1]["MESSAGE_ID"] == message_id


def test_journal_send_gets_the_record_and_its_failure_is_swallowed(sink):
    ev, mirror = sink
    sent = []
    ev._journal_send = lambda **kw: sent.append(kw)
    record = ev.emit("grant_expired", "m", grant_id="g1")
    # the CODE_* fields given, so python-systemd never walks the stack for them
    assert sent == [{**record, "CODE_FILE": journal.__file__, "CODE_FUNC": "_emit"}]

    def broken(**kw):
        raise OSError("journald gone")

    ev._journal_send = broken
    ev.emit("grant_expired", "m2", grant_id="g2")
    assert [e["JIT_GRANT_ID"] for e in read_mirror(mirror)] == ["g1", "g2"]


def test_read_mirror_of_missing_file(tmp_path):
    assert list(read_mirror(tmp_path / "none.jsonl")) == []


# --- the sandbox mirror is the owner's only -------------------------------------------------

def test_mirror_is_created_0600_whatever_the_umask(tmp_path):
    """Regression: events.jsonl was created with the umask's mode (0644: world-readable)."""
    import os
    import stat

    mirror = tmp_path / "events.jsonl"
    old = os.umask(0)
    try:
        Events(mirror, journal=False).emit("grant_activated", "m", reason="private")
    finally:
        os.umask(old)
    assert stat.S_IMODE(mirror.stat().st_mode) == 0o600


def test_existing_mirror_is_put_back_to_0600(tmp_path):
    import stat

    mirror = tmp_path / "events.jsonl"
    mirror.write_text('{"JIT_EVENT": "hostd_started"}\n')
    mirror.chmod(0o644)
    Events(mirror, journal=False).emit("grant_activated", "m")
    assert stat.S_IMODE(mirror.stat().st_mode) == 0o600
    assert [e["JIT_EVENT"] for e in read_mirror(mirror)] == ["hostd_started", "grant_activated"]


def test_mirror_through_a_symlink_is_refused(tmp_path):
    """Root appends to this file: a link planted in its place is not followed."""
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "events.jsonl").symlink_to(target)
    with pytest.raises(OSError):
        Events(tmp_path / "events.jsonl", journal=False).emit("grant_activated", "m")
    assert target.read_text() == ""


def test_count_field_and_summary_event_exist():
    assert "count" in FIELDS
    assert EVENT_TYPES["refusals_suppressed"].priority == 4


# --- every writer in hostd keeps to the declared fields --------------------------------------

def _emit_calls():
    """(where, event, keyword names) of each `.emit("type", ...)`, `.refusal("type", ...)`
    and `carried("type", ...)` in hostd with a literal type (** splats are left out)."""
    import ast
    from pathlib import Path

    root = Path(events.__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            first = node.args[0]
            if name in ("emit", "refusal", "carried") and isinstance(first, ast.Constant) \
                    and isinstance(first.value, str):
                yield (f"{path.relative_to(root)}:{node.lineno}", first.value,
                       [k.arg for k in node.keywords if k.arg is not None], name)


def test_every_literal_writer_uses_declared_fields():
    calls = list(_emit_calls())
    assert len(calls) > 20  # the walk finds hostd's writers
    for where, event, names, _ in calls:
        assert event in EVENT_TYPES, where
        assert set(names) <= set(EVENT_TYPES[event].fields), (where, event, names)


def test_families_and_refusals_are_declared():
    """The audit page draws by family; the refusal flag marks what Events.refusal limits."""
    families = {"grant", "request", "sudo", "login", "session", "recording", "residue",
                "hostd"}
    assert {k.family for k in EVENT_TYPES.values()} <= families
    assert {n for n, k in EVENT_TYPES.items() if k.refusal} == {
        "grant_refused", "sudo_denied", "login_refused"}
    limited = {event for _, event, _, call in _emit_calls() if call == "refusal"}
    assert limited == {n for n, k in EVENT_TYPES.items() if k.refusal}


def test_the_vocabulary_is_pure():
    """hostd.events (imported by the policy package) loads no writer: no journald, no
    threads, no files; those are hostd.state.journal's."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; import hostd.events; "
            "print(sorted(m for m in ('threading', 'systemd', 'json', 'hostd.state.journal') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(events.__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
