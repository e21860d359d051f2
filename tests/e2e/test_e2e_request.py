"""Access requests on a real host: alice asks, only bob may approve, hostd signs the
grant with the host issuer key and applies it; every step is in the journal."""

from __future__ import annotations

import json

from jithost import Host, events, grants, groups_of


def _json(box, argv: list[str], user: str) -> tuple[int, dict]:
    proc = box.run([*argv, "--json"], user=user, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_request_approved_by_approver_becomes_a_host_signed_grant(host: Host) -> None:
    box = host.box
    code, answer = _json(box, ["jit", "request", "docker", "--for", "30m", "--reason",
                               "e2e request", "--ticket", "OPS-1"], user="alice")
    assert code == 0 and answer["ok"], answer
    req_id = answer["request"]["id"]

    code, listed = _json(box, ["jit", "requests"], user="bob")
    mine = [r for r in listed["requests"] if r["id"] == req_id]
    assert mine and mine[0]["state"] == "pending" and mine[0]["user"] == "alice", listed

    code, answer = _json(box, ["jit", "requests"], user="carol")
    assert req_id not in [r["id"] for r in answer.get("requests", [])]
    code, answer = _json(box, ["jit", "approve", req_id], user="carol")
    assert (code, answer["code"]) == (1, "not_approver"), answer
    code, answer = _json(box, ["jit", "approve", req_id], user="alice")
    assert (code, answer["code"]) == (1, "self_approval"), answer
    assert "docker" not in groups_of(box, "alice")

    code, answer = _json(box, ["jit", "approve", req_id, "--comment", "ok"], user="bob")
    assert code == 0 and answer["ok"], answer
    held = grants(box, user="alice")
    try:
        assert [(g["role"], g["issuer"]) for g in held] == [("docker", "host")]
        assert "bob" in str(held[0]["approved_by"])
        assert "docker" in groups_of(box, "alice")
        created = [e for e in events(box, "request_created")
                   if e.get("JIT_REQUEST_ID") == req_id]
        approved = [e for e in events(box, "request_approved")
                    if e.get("JIT_REQUEST_ID") == req_id]
        assert created and created[-1]["JIT_USER"] == "alice"
        assert approved and approved[-1]["JIT_APPROVER"] == "bob"
        assert events(box, "grant_activated", held[0]["id"])
    finally:
        for g in held:
            box.run(["jit", "revoke", g["id"], "--reason", "e2e done"], user="alice")
    assert "docker" not in groups_of(box, "alice")


def test_request_by_someone_not_a_requester_is_refused(host: Host) -> None:
    code, answer = _json(host.box, ["jit", "request", "docker", "--for", "10m", "--reason",
                                    "not mine to ask"], user="carol")
    assert (code, answer["code"]) == (1, "not_requester"), answer
