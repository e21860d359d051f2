"""Messages instead of tracebacks (issue 20, item 7): every subcommand given a bad file,
a file it may not read or write, or the wrong kind of key answers with one line that
names the file and exits 2; root-only commands refuse other users in one line (exit 1).
Run against a real hostd in a sandbox root, as an unprivileged user (setpriv) where the
point is a missing permission."""

from __future__ import annotations

import pytest

from hostd.record import castfile

NOT_A_KEY = "is not a PEM private key (Ed25519, ECDSA P-256 or RSA, unencrypted)"


def bad_files(box) -> list[tuple[str, str, list[str], str]]:
    """(user, id, argv, what the one line must say); paths inside the sandbox only."""
    etc = box.root / "etc"
    key, pub = str(box.key), f"{box.key}.pub"
    issue = ["issue", "--issuer", "corp", "--user", "alice", "--role", "docker",
             "--hosts", "testhost", "--key"]
    return [
        ("alice", "keygen-in-roots-directory", ["keygen", "--out", f"{etc}/jit/x.key"],
         f"cannot write in {etc}/jit: Permission denied"),
        ("root", "keygen-no-such-directory", ["keygen", "--out", f"{box.root}/no/x.key"],
         f"{box.root}/no: no such directory"),
        ("root", "keygen-over-a-key", ["keygen", "--out", key], "exists; refusing"),
        ("root", "issue-with-the-public-key", [*issue, pub],
         "is a public key: --key takes the private key"),
        ("alice", "issue-with-roots-key", [*issue, key],
         f"cannot read --key {key}: Permission denied"),
        ("root", "issue-with-no-key", [*issue, f"{box.root}/none"],
         "No such file or directory"),
        ("root", "issue-with-a-directory", [*issue, str(etc)], "not a regular file"),
        ("root", "issue-with-a-text-file", [*issue, str(etc / "hostname")], NOT_A_KEY),
        ("root", "audit-missing-journal", ["audit", "--journal-file", f"{box.root}/none"],
         f"{box.root}/none: No such file or directory"),
        ("root", "audit-not-a-journal", ["audit", "--journal-file", str(etc / "hostname")],
         f"{etc}/hostname: not a journal file"),
        ("root", "audit-html-no-directory", ["audit", "--html", f"{box.root}/no/r.html"],
         f"{box.root}/no/r.html: No such file or directory"),
        ("alice", "audit-mirror-not-hers", ["audit"], "Permission denied"),
        ("root", "sessions-dir-is-a-file", ["sessions", "--dir", str(etc / "hostname")],
         "Not a directory"),
        ("root", "replay-export-no-directory",
         ["replay", "0123456789abcdef", "--dir", str(box.root), "--export-script",
          f"{box.root}/no/such"], f"{box.root}/no/such: no such directory"),
    ]


ROOT_ONLY = [["setup", "sudo", "--enable"], ["setup", "pam", "--enable"], ["reload"],
             ["grants", "--all"], ["verify-recording", "0123456789abcdef"], ["sessions"]]


def one_line(r) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_bad_files_missing_permissions_and_wrong_keys_are_one_line_and_exit_2(sandbox):
    castfile.CastWriter(sandbox.root / "0123456789abcdef.cast", {
        "width": 80, "height": 24, "timestamp": 0, "id": "0123456789abcdef"}).close(0, "0")
    failures = []
    for user, name, argv, says in bad_files(sandbox):
        r = sandbox.jit(*argv, user=user)
        line = one_line(r)
        if r.returncode != 2 or not line.startswith("jit: usage: ") or says not in line:
            failures.append((name, r.returncode, line))
    assert failures == []
    assert not (sandbox.root / "no").exists(), "no directory is made on the way"


@pytest.mark.parametrize("argv", ROOT_ONLY, ids=[" ".join(a) for a in ROOT_ONLY])
def test_root_only_commands_refuse_a_user_in_one_line(sandbox, argv):
    r = sandbox.jit(*argv, user="alice")
    assert r.returncode == 1 and one_line(r).startswith("jit: permission_denied: ")
