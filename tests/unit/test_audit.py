"""`jit audit`: the mappings, --held-at on synthetic streams, the filters, the table's
escaping, and reading a real journal file (written by systemd-journal-remote)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import unicodedata
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_stream import HOSTILE, lifecycle, one_of_each, record, write_journal

from hostd.audit import journal as audit
from hostd.audit.export import ECS_MAP, OCSF_MAP, to_ecs, to_ocsf
from hostd.cli import main as cli
from hostd.events import EVENT_TYPES
from hostd.policy.durations import rfc3339

T0 = 1_796_000_000  # seconds


def by_name(name: str) -> dict[str, str]:
    return next(e for e in one_of_each() if e["JIT_EVENT"] == name)


# mappings -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "class_uid", "activity_id", "status_id"), [
    ("membership_added", 3006, 3, 1), ("membership_removed", 3006, 4, 1),
    ("grant_activated", 3005, 1, 1), ("grant_refused", 3005, 1, 2),
    ("grant_expired", 3005, 2, 1), ("grant_revoked", 3005, 2, 1),
    ("sudo_allowed", 3003, 1, 1), ("sudo_denied", 3003, 1, 2),
    ("login_denied", 3003, 1, 2), ("login_refused", 3003, 1, 2),
    ("session_opened", 3003, 1, 1), ("session_closed", 3002, 2, 1),
    ("hostd_started", 6002, 3, 1), ("config_error", 6008, 1, 2),
    ("privilege_residue", 3005, 2, 2), ("recording_closed", 1001, 99, 1),
])
def test_ocsf_classes_and_activities(name: str, class_uid: int, activity_id: int,
                                     status_id: int) -> None:
    doc = to_ocsf(by_name(name))
    assert (doc["class_uid"], doc["activity_id"], doc["status_id"]) == (
        class_uid, activity_id, status_id)
    assert doc["type_uid"] == class_uid * 100 + activity_id
    assert doc["metadata"]["event_code"] == name
    assert doc["unmapped"]["JIT_EVENT"] == name


def test_ocsf_carries_who_what_and_where() -> None:
    added = to_ocsf(by_name("membership_added"))
    assert added["user"] == {"name": "alice", "uid": "1001"}
    assert added["group"] == {"name": "docker"}
    assert added["device"]["hostname"] == "audit-test"
    revoked = to_ocsf(by_name("grant_revoked"))
    assert revoked["actor"] == {"user": {"name": "root"}}
    assert revoked["privileges"] == ["role:docker", "group:docker"]
    assert revoked["metadata"]["correlation_uid"] == "g-1"
    sudo = to_ocsf(by_name("sudo_denied"))
    assert sudo["privileges"][0] == "runas:root" and sudo["status_code"] == "no_grant"
    assert sudo["unmapped"]["JIT_COMMAND"] == by_name("sudo_denied")["JIT_COMMAND"]
    assert to_ocsf(by_name("breakglass"))["severity_id"] == 5  # PRIORITY 2 (crit)


@pytest.mark.parametrize(("name", "category", "types", "outcome"), [
    ("grant_activated", ["iam"], ["user", "change"], "success"),
    ("grant_refused", ["iam"], ["user", "info"], "failure"),
    ("membership_added", ["iam"], ["group", "change"], "success"),
    ("sudo_allowed", ["process"], ["start"], "success"),
    ("sudo_denied", ["process"], ["start"], "failure"),
    ("session_opened", ["session"], ["start"], "success"),
    ("session_terminated", ["session"], ["end"], "success"),
    ("login_denied", ["session"], ["start"], "failure"),
])
def test_ecs_categorization(name: str, category: list, types: list, outcome: str) -> None:
    event = to_ecs(by_name(name))["event"]
    assert (event["category"], event["type"], event["outcome"]) == (category, types, outcome)
    assert event["kind"] == "event" and event["action"] == name


def test_ecs_fields() -> None:
    sudo = to_ecs(by_name("sudo_allowed"))
    assert sudo["user"]["name"] == "alice" and sudo["user"]["effective"] == {"name": "root"}
    assert sudo["process"]["command_line"] == by_name("sudo_allowed")["JIT_COMMAND"]
    assert sudo["host"] == {"name": "audit-test"}
    assert sudo["labels"]["grant_id"] == "g-1" and sudo["labels"]["tty"] == "pts/1"
    added = to_ecs(by_name("membership_added"))
    assert added["group"] == {"name": "docker"} and added["user"]["roles"] == ["docker"]
    assert to_ecs(by_name("recording_closed"))["file"]["hash"]["sha256"] == "ab" * 32
    assert to_ecs(by_name("grant_revoked"))["related"]["user"] == ["alice", "root"]
    assert to_ecs(by_name("grant_activated"))["@timestamp"] == "2026-11-30T00:53:20.000000Z"


def test_unknown_event_names_fall_back() -> None:
    unknown = by_name("totally_new_event")
    assert to_ocsf(unknown)["class_uid"] == 0 and to_ocsf(unknown)["activity_id"] == 99
    assert "category" not in to_ecs(unknown)["event"]
    resumed = by_name("session_resumed")  # unknown, but a session event by its prefix
    assert to_ocsf(resumed)["class_uid"] == 3003
    assert to_ecs(resumed)["event"]["category"] == ["session"]


def test_every_catalog_type_is_mapped_in_both() -> None:
    assert set(EVENT_TYPES) <= set(OCSF_MAP) and set(EVENT_TYPES) <= set(ECS_MAP)


def test_the_export_tables_name_only_the_schema() -> None:
    """Rows only for event types the schema knows (and the older name `login_denied`),
    ECS fields only for JIT_* fields it declares: a renamed field cannot go unmapped."""
    from hostd.audit.export import _ECS_TAKEN
    from hostd.events import FIELDS

    known = set(EVENT_TYPES) | {"login_denied"}
    assert set(OCSF_MAP) <= known and set(ECS_MAP) <= known
    assert _ECS_TAKEN <= {"JIT_EVENT"} | {"JIT_" + f.upper() for f in FIELDS}


# --held-at ------------------------------------------------------------------------------------

def grant_events(gid: str, user: str, start: int, end: int | None, how: str = "expired",
                 not_after: int | None = None) -> list[dict[str, str]]:
    fields = {"user": user, "uid": 1001, "role": "docker", "grant_id": gid, "issuer": "corp",
              "groups": ["docker"], "not_after": rfc3339(not_after or (end or start + 3600))}
    out = [record("grant_activated", "on", start * 1_000_000, **fields)]
    if end is not None:
        out.append(record(f"grant_{how}", "off", end * 1_000_000, **fields,
                          **({"approver": "root"} if how == "revoked" else {})))
    return out


def test_held_at_answers_who_held_what() -> None:
    stream = (grant_events("a", "alice", T0, T0 + 100)
              + grant_events("b", "bob", T0 + 50, T0 + 70, "revoked")
              + grant_events("c", "carol", T0 + 60, None, not_after=T0 + 10_000))
    stream.sort(key=lambda e: e["JIT_EVENT"])  # the order of events does not matter
    assert [h.grant_id for h in audit.held_at(stream, T0 - 1)] == []
    assert [h.grant_id for h in audit.held_at(stream, T0)] == ["a"]
    assert [h.grant_id for h in audit.held_at(stream, T0 + 65)] == ["a", "b", "c"]
    assert [h.grant_id for h in audit.held_at(stream, T0 + 70)] == ["a", "c"]  # ended then
    later = audit.held_at(stream, T0 + 200)
    assert [h.grant_id for h in later] == ["c"]
    assert later[0].state(now=T0 + 300) == "live"
    bob = audit.holdings(stream)["b"]
    assert (bob.how, bob.by, bob.ended) == ("revoked", "root", T0 + 70)


def test_held_at_ends_a_grant_at_not_after_without_an_end_event() -> None:
    stream = grant_events("d", "dave", T0, None, not_after=T0 + 30)
    assert [h.grant_id for h in audit.held_at(stream, T0 + 29)] == ["d"]
    assert audit.held_at(stream, T0 + 30) == []
    assert audit.holdings(stream)["d"].state(now=T0 + 40) == "ended (no end event)"


def test_held_at_on_a_long_synthetic_stream() -> None:
    stream = list(lifecycle(1100, T0 * 1_000_000))  # 100 grants of 11 events each
    # each batch: activated at +3 s, ended at +10 s; so at +5 s exactly one grant is held
    for k in range(0, 100, 7):
        held = audit.held_at(stream, T0 + 11 * k + 5)
        assert [h.grant_id for h in held] == [f"g-{11 * k}"]
        assert audit.held_at(stream, T0 + 11 * k + 10) == []


# filters and parsing --------------------------------------------------------------------------

def test_query_filters() -> None:
    stream = list(lifecycle(110, T0 * 1_000_000))
    q = audit.Query(users=("user3",), events=("sudo_allowed",))
    assert {(e["JIT_USER"], e["JIT_EVENT"]) for e in stream if q.accepts(e)} == {
        ("user3", "sudo_allowed")}
    window = audit.Query(since=T0 + 10, until=T0 + 20)
    assert len([e for e in stream if window.accepts(e)]) == 11
    with pytest.raises(audit.AuditError, match="unknown event type"):
        audit.Query(events=("nope",))


def test_parse_when() -> None:
    assert audit.parse_when("@100", 5000) == 100
    assert audit.parse_when("@100.25", 5000) == 100.25
    assert audit.parse_when("-1h", 5000) == 1400
    assert audit.parse_when("now", 5000) == 5000
    assert audit.parse_when("2026-11-30T00:53:20Z", 0) == T0
    with pytest.raises(audit.AuditError, match="bad time"):
        audit.parse_when("yesterday-ish", 0)


def test_only_root_adm_and_systemd_journal_may_read() -> None:
    assert audit.may_read_journal(uid=0, gids=[])
    assert not audit.may_read_journal(uid=1000, gids=[1000])
    import grp

    adm = grp.getgrnam("adm").gr_gid
    assert audit.may_read_journal(uid=1000, gids=[1000, adm])


def test_table_shows_no_control_character() -> None:
    e = dict(by_name("sudo_allowed"), JIT_USER="eve\x1b[31m", MESSAGE="a\u202eb\nc",
             JIT_COMMAND="/bin/echo \x07\u2028x")
    lines = list(audit.table_lines([e]))
    assert len(lines) == 2
    for ch in "".join(lines):
        assert unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"), repr(ch)
    assert "eve\\x1b[31m" in lines[1] and "a\\u202eb\\nc" in lines[1]
    assert "[command: /bin/echo \\x07\\u2028x" in lines[1]


# a real journal file --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def journal_file(tmp_path_factory) -> Path:
    forged = record("grant_activated", "forged", (T0 + 5) * 1_000_000, user="mallory",
                    grant_id="g-forged")
    forged["_UID"] = "1000"  # a user's journal.send() with our identifier and MESSAGE_ID
    other = dict(record("grant_activated", "other", (T0 + 6) * 1_000_000, user="mallory"),
                 SYSLOG_IDENTIFIER="not-jit")
    events = [*one_of_each(T0 * 1_000_000), forged, other,
              *lifecycle(220, (T0 + 100) * 1_000_000)]
    return write_journal(events, tmp_path_factory.mktemp("journal") / "audit.journal")


def run_cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["audit", *argv])
    return code, out.getvalue()


def test_reads_our_events_back_from_a_journal_file(journal_file: Path) -> None:
    code, out = run_cli("--json", "--journal-file", str(journal_file))
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    catalog = [e for e in one_of_each(T0 * 1_000_000) if e["JIT_EVENT"] in EVENT_TYPES]
    assert len(events) == len(catalog) + 220
    assert all(e["JIT_USER"] != "mallory" for e in events if "JIT_USER" in e)
    first = events[0]
    assert first == catalog[0]  # every field as written, the time as a decimal string
    assert events[-1]["__REALTIME_TIMESTAMP"] == str((T0 + 100 + 219) * 1_000_000)
    assert {k for e in events for k in e} <= {k for e in catalog for k in e} | {
        "JIT_APPROVER", "JIT_COMMAND", "JIT_RUNAS", "JIT_CODE"}


def test_journal_filters(journal_file: Path) -> None:
    code, out = run_cli("--json", "--journal-file", str(journal_file), "--user", "user2",
                        "--event", "sudo_allowed,sudo_denied", "--since", f"@{T0 + 100}",
                        "--until", f"@{T0 + 200}")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events
    assert {(e["JIT_USER"], e["JIT_EVENT"]) for e in events} == {
        ("user2", "sudo_allowed"), ("user2", "sudo_denied")}
    assert all(T0 + 100 <= int(e["__REALTIME_TIMESTAMP"]) / 1e6 <= T0 + 200 for e in events)
    code, out = run_cli("--json", "--journal-file", str(journal_file), "--grant", "g-11")
    assert {e["JIT_GRANT_ID"] for e in map(json.loads, out.splitlines())} == {"g-11"}


def test_held_at_and_exports_from_a_journal_file(journal_file: Path) -> None:
    code, out = run_cli("--journal-file", str(journal_file), "--held-at", f"@{T0 + 100 + 5}",
                        "--json")
    answer = json.loads(out)
    assert code == 0 and [h["grant_id"] for h in answer["held"]] == ["g-0"]
    assert answer["held"][0]["state"] == "revoked" and answer["held"][0]["ended_by"] == "root"
    code, out = run_cli("--journal-file", str(journal_file), "--format", "ocsf",
                        "--event", "membership_added")
    docs = [json.loads(line) for line in out.splitlines()]
    assert docs and {(d["class_uid"], d["activity_id"]) for d in docs} == {(3006, 3)}
    code, out = run_cli("--journal-file", str(journal_file), "--format", "ecs",
                        "--user", "user1", "--event", "sudo_allowed")
    docs = [json.loads(line) for line in out.splitlines()]
    assert docs and all(d["process"]["command_line"].startswith("/usr/bin/systemctl")
                        for d in docs)
    code, out = run_cli("--journal-file", str(journal_file), "--event", "sudo_allowed",
                        "--user", "alice")
    assert code == 0 and "\x1b" not in out and HOSTILE not in out


def test_held_at_refuses_export_formats(journal_file: Path) -> None:
    code, _ = run_cli("--journal-file", str(journal_file), "--held-at", "now",
                      "--format", "ocsf")
    assert code == 2


def test_docs_mapping_table_is_the_code() -> None:
    """docs/AUDIT.md's table has one row per mapped event, saying what the code does."""
    from hostd.audit.export import OCSF_ACTIVITIES, OCSF_CLASSES, STATUS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md").read_text()
    rows = {line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:-1]]
            for line in doc.splitlines() if line.startswith("| `")}
    assert set(rows) >= set(OCSF_MAP)
    for name, o in OCSF_MAP.items():
        c = ECS_MAP[name]
        act = OCSF_ACTIVITIES.get((o.class_uid, o.activity_id)) or o.activity
        status = STATUS.get(o.status, (99, o.status))
        assert rows[name] == [f"{OCSF_CLASSES[o.class_uid][0]} {o.class_uid}",
                              f"{act} ({o.activity_id})", f"{status[1]} ({status[0]})",
                              ", ".join(c.category), ", ".join(c.type), c.outcome], name


def test_html_report_is_written_private_or_refused_by_name(journal_file: Path,
                                                          tmp_path: Path) -> None:
    """With hostd/audit/report.py the page is written 0600 (it holds reasons and commands);
    a build without it says so (usage, exit 2) and writes nothing."""
    import importlib.util
    import os

    target = tmp_path / "report.html"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code, _ = run_cli("--journal-file", str(journal_file), "--html", str(target))
    if importlib.util.find_spec("hostd.audit.report") is None:
        assert code == 2 and "not available" in err.getvalue() and not target.exists()
    else:
        assert code == 0 and os.stat(target).st_mode & 0o777 == 0o600
        assert "g-0" in target.read_text()


def test_a_sandbox_root_reads_its_mirror(tmp_path: Path, monkeypatch) -> None:
    """Under JIT_ROOT (tests, demos) the events come from DIR/var/log/jit/events.jsonl,
    filtered the same way."""
    from hostd.state.journal import Events

    mirror = tmp_path / "var" / "log" / "jit" / "events.jsonl"
    mirror.parent.mkdir(parents=True)
    ev = Events(mirror=mirror, journal=False)
    ev.emit("grant_activated", "on", user="alice", grant_id="g-a", role="docker")
    ev.emit("grant_activated", "on", user="bob", grant_id="g-b", role="docker")
    ev.emit("sudo_allowed", "ran", user="alice", command="/bin/true")
    monkeypatch.setenv("JIT_ROOT", str(tmp_path))
    code, out = run_cli("--json", "--user", "alice")
    got = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [e["JIT_EVENT"] for e in got] == ["grant_activated", "sudo_allowed"]
    code, out = run_cli("--held-at", "now", "--json")
    assert sorted(h["grant_id"] for h in json.loads(out)["held"]) == ["g-a", "g-b"]


def test_bad_arguments_are_named_usage_errors(journal_file: Path) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert run_cli("--journal-file", str(journal_file), "--user", "al\udcffice")[0] == 2
        assert run_cli("--journal-file", str(journal_file), "--since", "soon")[0] == 2
        assert run_cli("--journal-file", str(journal_file), "--event", "grant_x")[0] == 2
    text = err.getvalue()
    assert "--user is not valid UTF-8" in text and "bad time" in text
    assert "unknown event type 'grant_x'" in text
