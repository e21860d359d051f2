"""Access requests on the installed package: alice asks, bob approves as himself, the
host signs the grant with its own key, and alice's group appears; all in the journal."""

from __future__ import annotations

import json

from jithost import Host, events, grants, groups_of, wait_for


def _jit_json(box, *args: str, user: str) -> tuple[int, dict]:
    proc = box.run(["jit", *args, "--json"], user=user, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_alice_requests_bob_approves_group_appears(host: Host) -> None:
    box = host.box
    rc, out = _jit_json(box, "request", "docker", "--for", "10m", "--reason",
                        "e2e: rotate certs", "--ticket", "OPS-7", user="alice")
    assert rc == 0 and out["request"]["state"] == "pending", out
    rid = out["request"]["id"]
    assert "docker" not in groups_of(box, "alice")

    rc, listed = _jit_json(box, "requests", user="bob")
    assert rc == 0 and rid in [r["id"] for r in listed["requests"]], listed
    rc, refused = _jit_json(box, "approve", rid, user="alice")
    assert rc == 1 and refused["code"] == "self_approval", refused
    rc, refused = _jit_json(box, "approve", rid, user="carol")
    assert rc == 1 and refused["code"] == "not_approver", refused

    rc, approved = _jit_json(box, "approve", rid, "--comment", "go ahead", user="bob")
    assert rc == 0 and approved["request"]["state"] == "approved", approved
    assert "docker" in groups_of(box, "alice")
    (grant,) = [g for g in grants(box, user="alice") if g["id"] == approved["request"]["grant_id"]]
    assert grant["issuer"] == "host" and grant["approved_by"] == ["bob"]

    created = wait_for("request_created in the journal",
                       lambda: [e for e in events(box, "request_created")
                                if e.get("JIT_REQUEST_ID") == rid], timeout=10)
    assert created[0]["JIT_USER"] == "alice" and created[0]["JIT_TICKET"] == "OPS-7"
    decided = [e for e in events(box, "request_approved") if e.get("JIT_REQUEST_ID") == rid]
    assert decided and decided[0]["JIT_APPROVER"] == "bob"
    timers = box.run(["systemctl", "list-timers", "--all", "--no-pager"]).stdout
    assert f"jit-expire-{grant['id']}.timer" in timers

    # This `jit revoke` runs as alice with docker in its groups (runuser started after
    # the approval): the revoke ends it too, as expiry would (on_expiry =
    # "terminate-sessions", DESIGN §13), so it may die of SIGTERM after its answer.
    done = box.run(["jit", "revoke", grant["id"], "--reason", "e2e done"], user="alice",
                   check=False)
    assert f"grant {grant['id']} revoked" in done.stdout and done.returncode in (0, 143), done
    assert "docker" not in groups_of(box, "alice")
