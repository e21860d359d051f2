"""Every exported event of every type validates against the published OCSF schema and
the ECS field definitions (tests/unit/audit_validate.py, run by the tools venv's python,
which scripts/install-deps.sh gives ocsf-json-schema, jsonschema and @elastic/ecs).
The validator is shown broken documents too, so this test can fail."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_stream import EXTRA_TYPES, lifecycle, one_of_each

from hostd.audit.export import OCSF_MAP, to_ecs, to_ocsf
from hostd.events import EVENT_TYPES

VENV_PYTHON = Path("/var/cache/jitaccess-tools/venv/bin/python")
VALIDATOR = Path(__file__).resolve().parent / "audit_validate.py"


def validate(items: list[tuple[str, dict]]) -> dict:
    if not VENV_PYTHON.exists():
        pytest.fail("no tools venv: run scripts/install-deps.sh as root", pytrace=False)
    lines = "\n".join(json.dumps({"format": fmt, "doc": doc}) for fmt, doc in items)
    proc = subprocess.run([str(VENV_PYTHON), str(VALIDATOR)], input=lines, text=True,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_every_event_type_exports_valid_ocsf_and_ecs() -> None:
    events = one_of_each() + list(lifecycle(40, 1_796_100_000_000_000))
    names = {e["JIT_EVENT"] for e in events}
    assert set(EVENT_TYPES) | set(EXTRA_TYPES) <= names
    items = [(fmt, convert(e)) for e in events
             for fmt, convert in (("ocsf", to_ocsf), ("ecs", to_ecs))]
    result = validate(items)
    assert result["checked"] == len(items)
    assert result["errors"] == [], [
        (items[n - 1][0], items[n - 1][1].get("metadata", {}).get("event_code")
         or items[n - 1][1]["event"]["action"], msg) for n, msg in result["errors"]]


def test_events_without_host_or_user_still_validate() -> None:
    bare = []
    for e in one_of_each():
        e = {k: v for k, v in e.items() if k not in ("_HOSTNAME", "JIT_USER", "JIT_UID")}
        bare += [("ocsf", to_ocsf(e)), ("ecs", to_ecs(e))]
    result = validate(bare)
    assert result["checked"] == len(bare) and result["errors"] == []


def test_the_validator_rejects_what_the_schemas_forbid() -> None:
    e = next(x for x in one_of_each() if x["JIT_EVENT"] == "membership_added")
    wrong_activity = dict(to_ocsf(e), activity_id=9, type_uid=300609)
    no_group = {k: v for k, v in to_ocsf(e).items() if k != "group"}
    wrong_type_uid = dict(to_ocsf(e), type_uid=300501)
    ecs_unknown_field = dict(to_ecs(e), user={"name": "alice", "nickname": "al"})
    ecs_bad_combo = to_ecs(e)
    ecs_bad_combo["event"] = dict(ecs_bad_combo["event"], type=["start"])
    ecs_not_array = to_ecs(e)
    ecs_not_array["event"] = dict(ecs_not_array["event"], category="iam")
    ecs_bad_kind = to_ecs(e)
    ecs_bad_kind["event"] = dict(ecs_bad_kind["event"], kind="grant")
    cases = [("ocsf", wrong_activity), ("ocsf", no_group), ("ocsf", wrong_type_uid),
             ("ecs", ecs_unknown_field), ("ecs", ecs_bad_combo), ("ecs", ecs_not_array),
             ("ecs", ecs_bad_kind)]
    result = validate(cases)
    assert result["checked"] == len(cases)
    failed = {n for n, _ in result["errors"]}
    assert failed == set(range(1, len(cases) + 1)), result["errors"]


def test_every_catalog_type_has_its_own_ocsf_row() -> None:
    """A new event type gets a mapping of its own, not only the fallback."""
    assert set(EVENT_TYPES) <= set(OCSF_MAP)
