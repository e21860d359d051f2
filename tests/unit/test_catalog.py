"""The shipped journald catalog and hostd/events.py EVENT_TYPES stay in step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostd.events import EVENT_TYPES

CATALOG = Path(__file__).resolve().parents[2] / "systemd" / "jitaccess.catalog"
HEADER = re.compile(r"^-- ([0-9a-f]{32})$")


def parse(text: str) -> list[dict]:
    """Entries of a catalog file: id, header fields (list per key), body lines."""
    entries: list[dict] = []
    current: dict | None = None
    in_body = False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = HEADER.match(line)
        if m:
            current = {"id": m.group(1), "headers": {}, "body": []}
            entries.append(current)
            in_body = False
            continue
        if line.startswith("--"):
            raise AssertionError(f"malformed entry header: {line!r}")
        if current is None:
            assert not line.strip(), f"text outside an entry: {line!r}"
            continue
        if not in_body and not line.strip():
            in_body = True
            continue
        if in_body:
            current["body"].append(line)
        else:
            key, sep, value = line.partition(": ")
            assert sep, f"bad header line in {current['id']}: {line!r}"
            current["headers"].setdefault(key, []).append(value)
    return entries


@pytest.fixture(scope="module")
def entries() -> list[dict]:
    return parse(CATALOG.read_text(encoding="utf-8"))


def test_each_message_id_once(entries):
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), "a MESSAGE_ID appears twice in the catalog"


def test_every_event_type_has_its_entry(entries):
    by_id = {e["id"]: e for e in entries}
    missing = [t for t, k in EVENT_TYPES.items() if k.message_id not in by_id]
    assert not missing, f"event types missing from the catalog: {missing}"


def test_no_entry_without_event_type(entries):
    known = {k.message_id for k in EVENT_TYPES.values()}
    extra = [e["id"] for e in entries if e["id"] not in known]
    assert not extra, f"catalog entries for no event type: {extra}"


def test_message_ids_are_distinct_in_events():
    ids = [k.message_id for k in EVENT_TYPES.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[0-9a-f]{32}", mid) for mid in ids)


def test_entry_names_its_type_and_subject(entries):
    by_id = {e["id"]: e for e in entries}
    for event, kind in EVENT_TYPES.items():
        mid, summary = kind.message_id, kind.summary
        entry = by_id[mid]
        assert entry["headers"].get("Subject") == [summary], event
        assert entry["headers"].get("Defined-By") == ["jitaccess"], event
        assert entry["headers"].get("Documentation"), event
        body = [line for line in entry["body"] if line.strip()]
        assert body and body[0] == f"JIT_EVENT={event}", event


def test_fields_named_in_text_exist(entries):
    from hostd.events import FIELDS

    allowed = {"JIT_EVENT"} | {"JIT_" + f.upper() for f in FIELDS}
    for entry in entries:
        text = "\n".join(entry["body"])
        for name in re.findall(r"\bJIT_[A-Z0-9_]+\b", text):
            assert name in allowed, f"{entry['id']} names unknown field {name}"


def test_entry_names_only_fields_its_type_carries(entries):
    """The catalog says what an event carries: only fields its type declares
    (events.EVENT_TYPES), so it never promises a field hostd does not write."""
    by_id = {k.message_id: (name, k) for name, k in EVENT_TYPES.items()}
    for entry in entries:
        name, kind = by_id[entry["id"]]
        text = "\n".join(entry["body"])
        named = set(re.findall(r"\bJIT_[A-Z0-9_]+\b", text)) - {"JIT_EVENT"}
        stray = sorted(n for n in named if n[4:].lower() not in kind.fields)
        assert not stray, f"{name}: the catalog names {stray}, which it does not carry"
