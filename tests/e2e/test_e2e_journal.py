"""Events reach journald in the fixed schema, and the catalog is installed."""

from __future__ import annotations

from jithost import Host, events, grants, issue

from hostd.events import EVENT_TYPES


def test_events_carry_message_id_and_jit_fields(host: Host) -> None:
    box = host.box
    token = issue(box, "carol", "docker", "10m", reason="journal schema")
    box.run(["jit", "activate", token], user="carol")
    grant_id = grants(box, user="carol")[0]["id"]
    try:
        for name in ("membership_added", "grant_activated"):
            found = events(box, name, grant_id)
            assert found, f"no {name} event for {grant_id}"
            entry = found[-1]
            assert entry["MESSAGE_ID"] == EVENT_TYPES[name].message_id
            assert entry["SYSLOG_IDENTIFIER"] == "jit-hostd"
            assert entry["JIT_USER"] == "carol"
            assert entry["JIT_ROLE"] == "docker"
            assert entry["JIT_ISSUER"] == "corp"
            assert entry.get("JIT_UID") == "1003"
            assert entry.get("JIT_REASON") == "journal schema"
        assert events(box, "membership_added", grant_id)[-1]["JIT_GROUPS"] == "docker"
    finally:
        box.run(["jit", "revoke", grant_id, "--reason", "test done"])
    revoked = events(box, "grant_revoked", grant_id)
    assert revoked and revoked[-1]["MESSAGE_ID"] == EVENT_TYPES["grant_revoked"].message_id


def test_refusals_are_logged_with_their_code(host: Host) -> None:
    box = host.box
    token = issue(box, "alice", "docker", "10m")
    proc = box.run(["jit", "activate", token], user="bob", check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    refused = [e for e in events(box, "grant_refused") if e.get("JIT_USER") == "bob"]
    assert refused and refused[-1]["JIT_CODE"] == "wrong_user"


def test_catalog_lists_every_message_id(host: Host) -> None:
    listed = host.box.run(["journalctl", "--list-catalog", "--no-pager"]).stdout.lower()
    missing = [name for name, k in EVENT_TYPES.items() if k.message_id not in listed]
    assert not missing, f"not in the journal catalog: {missing}"
