"""The README's "Using it", "Asking on the host" and "Auditing" examples, in order, on a
fresh booted Debian 12 with the .deb installed: each command line is taken from
README.md itself (placeholders such as TOKEN replaced by the values the walk made) and
run as the user its prompt names (issue 20: several failed as written).

What the README leaves to the admin is done here first and said so: the host is named
web-1 (the README's grant says --hosts 'web-*'), and the groups its role names exist.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from jithost import Host, wait_for

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
ISSUER_DIR = "/root/issuer"


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def lines(title: str) -> list[tuple[str | None, str]]:
    """(user or None for root, command) of every `jit`/`install` line in the section's
    code blocks, continuation lines joined, comments dropped, in order."""
    out = []
    for said, block in re.findall(r"([^\n]*)\n\n```[a-z]*\n(.*?)^```", section(title),
                                  re.S | re.M):
        as_user = re.fullmatch(r"As (\w+):", said.strip())  # "As alice:" before a block
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            m = re.match(r"^(?:(\w+)\$\s+)?((?:jit|install) .*)$", line.strip())
            if m:
                words = shlex.split(m.group(2), comments=True)
                out.append((m.group(1) or (as_user.group(1) if as_user else None),
                            shlex.join(words)))
    return out


def tomls(title: str) -> dict[str, str]:
    """File path -> text of the `# /etc/jit/...` parts of the section's TOML blocks."""
    files: dict[str, str] = {}
    for block in re.findall(r"^```toml\n(.*?)^```", section(title), re.S | re.M):
        for part in re.split(r"^(?=# /etc/jit/)", block, flags=re.M):
            head, _, body = part.partition("\n")
            if head.startswith("# /etc/jit/"):
                files[head[2:].strip()] = body
    return files


@pytest.fixture(scope="module")
def walk(own_host: Host) -> Iterator[tuple[Host, dict]]:
    box = own_host.box
    # the admin's part: this host is web-1; the groups the README's role names exist
    box.write("/etc/hostname", "web-1\n")
    box.run(["hostname", "web-1"])
    box.run(["groupadd", "sre"])
    box.run(["gpasswd", "-a", "bob", "sre"])
    box.run(["systemctl", "restart", "jit-hostd.service"])  # reads the host name anew
    box.run(["mkdir", "-p", ISSUER_DIR])
    yield own_host, {}


def run(box, user: str | None, cmd: str, **values: str):
    """`cmd` as root, or as `user` in a shell started before any grant (no supplementary
    groups: a process holding a role's group is ended with the grant, on_expiry)."""
    for name, value in values.items():
        cmd = cmd.replace(name, shlex.quote(value))
    line = f"cd {ISSUER_DIR} 2>/dev/null || cd /tmp; {cmd}"
    if user is None:
        return box.run(line, check=False, timeout=120)
    return box.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                    "sh", "-c", line], check=False, timeout=120)


def test_using_it(walk) -> None:
    host, seen = walk
    box = host.box
    steps = lines("Using it")
    assert [c.split()[1] for _, c in steps[:4]] == ["keygen", "issue", "-m", "check-config"]
    for path, text in tomls("Using it").items():
        box.write(path, text)
    granted = [(u, c) for u, c in steps if "request" not in c and "approve" not in c]
    assert [u for u, c in granted if c.startswith(("jit grant", "jit activate",
                                                   "jit revoke"))] == ["alice"] * 4
    for user, cmd in granted:
        r = run(box, user, cmd, TOKEN=seen.get("token", ""), GRANT_ID=seen.get("grant", ""))
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
        assert "warning" not in r.stderr, f"{cmd}: {r.stderr}"
        if cmd.startswith("jit issue"):
            seen["token"] = r.stdout.strip()
        if cmd.startswith("jit activate"):
            seen["grant"] = re.match(r"grant (\w+) active", r.stdout).group(1)
            assert "docker" in box.run(["id", "-nG", "alice"]).stdout.split()
        if cmd.startswith("jit reload"):
            assert "reloaded; hostd now serves roles docker" in r.stdout
    assert "docker" not in box.run(["id", "-nG", "alice"]).stdout.split()  # revoked


def test_asking_on_the_host(walk) -> None:
    host, _ = walk
    box = host.box
    steps = lines("Using it")
    asked = [(u, c) for u, c in steps if "request" in c or "approve" in c]
    assert [u for u, _ in asked] == ["alice", "bob", "bob", "alice"]
    (_, ask), (_, listing), (_, approve), (_, cancel) = asked
    waiting = box.popen(["setpriv", "--reuid=alice", "--regid=alice", "--clear-groups",
                         "sh", "-c", ask])
    rid = wait_for("alice's request", lambda: next(
        (r["id"] for r in json.loads(box.run(["jit", "requests", "--json"], user="bob")
                                     .stdout)["requests"] if r["state"] == "pending"), None),
        timeout=30)
    assert rid in run(box, "bob", listing).stdout
    r = run(box, "bob", approve, k7m2p9qx=rid)
    assert r.returncode == 0, r.stderr
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0 and f"request {rid} approved" in out
    # a second request, withdrawn as the README shows
    r = box.run(["jit", "request", "docker", "--for", "30m", "--reason", "again", "--json"],
                user="alice")
    second = json.loads(r.stdout)["request"]["id"]
    r = run(box, "alice", cancel, k7m2p9qx=second)
    assert (r.returncode, r.stdout) == (0, f"request {second} withdrawn\n")


def test_auditing(walk) -> None:
    host, _ = walk
    box = host.box
    steps = lines("Auditing: `jit audit`")
    assert len(steps) == 7
    for user, cmd in steps:
        r = run(box, user, cmd)
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    r = run(box, None, "jit audit --held-at live --json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"]
    assert box.path(f"{ISSUER_DIR}/report.html").exists()
