"""Text that is not valid Unicode never reaches hostd's store: the CLI refuses bytes that
are not UTF-8 in its arguments, grants.verify refuses lone surrogates in a signed token."""

from __future__ import annotations

import os
import sys
import time

from sandbox import REPO

if str(REPO) not in sys.path:  # the checkout's hostd, as the sandbox copies it
    sys.path.insert(0, str(REPO))

from hostd.policy import grants
from hostd.policy.keys import load_private

LATIN1 = os.fsdecode(b"caf\xe9")


def test_latin1_reason_is_refused_by_the_cli_and_hostd_stays_clean(sandbox):
    """Finding: a Latin-1 byte in `jit revoke --reason` crashed hostd's SQLite binding."""
    rc, out = sandbox.jit_json("activate", sandbox.issue("alice"), user="alice")
    assert rc == 0, out
    grant_id = out["grant"]["id"]
    r = sandbox.jit("revoke", grant_id, "--reason", LATIN1, user="alice")
    assert (r.returncode, r.stderr) == (2, "jit: usage: --reason is not valid UTF-8\n")
    r = sandbox.jit("request", "docker", "--for", "1h", "--reason", LATIN1, user="alice")
    assert (r.returncode, r.stderr) == (2, "jit: usage: --reason is not valid UTF-8\n")
    rc, listed = sandbox.jit_json("grants", user="alice")
    assert [g["id"] for g in listed["grants"]] == [grant_id]  # nothing was sent
    assert "Traceback" not in sandbox.hostd_log()


def test_signed_token_with_lone_surrogate_is_malformed_in_hostd(sandbox):
    """Finding: `"reason": "\\udc80"` in a correctly signed grant was accepted."""
    now = int(time.time())
    token = grants.issue(load_private(sandbox.key), "corp", "alice", "docker", now,
                         now + 600, ["testhost"], now, reason="x\udc80")
    rc, out = sandbox.jit_json("activate", token, user="alice")
    assert (rc, out["code"]) == (1, "malformed"), out
    assert "surrogate" in out["message"]
    assert "alice" not in sandbox.members("docker")
    assert "Traceback" not in sandbox.hostd_log()
