"""The README's "Using it", "Asking on the host", "Auditing", "sudo by grant", "Recorded
sudo sessions", "Session recordings" and "Logins by grant (PAM)" examples, in order, on
a fresh booted Debian 12 with the .deb installed: each command line and each policy part
is taken from README.md itself (placeholders such as TOKEN or ID replaced by the values
the walk made) and run as the user its prompt names (issue 20: several failed as
written). alice's sudo lines are typed on her terminal (a tmux pane: a real pty), her
password too when sudo asks for it, and what the README shows under them is compared
with her screen.

What the README leaves to the admin is done here first and said so: the host is named
web-1 (the README's grant says --hosts 'web-*'), the groups and users its policy names
exist, a postgresql service to restart, alice's password, the file `sudo cat` reads,
and grants of db-admin, ops and console signed with the walk's corp key. `asciinema
play` is not run (not a dependency of the package).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from jithost import Host, events, wait_for

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
        # the one warning a fresh Debian earns: / is not nosuid (the README says
        # check-config names such places); none about the README's policy
        warnings = [w for w in r.stderr.splitlines() if "warning" in w
                    and "set-id bits take effect where users can write" not in w]
        assert warnings == [], f"{cmd}: {r.stderr}"
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


# sudo, recordings and logins: what alice types goes to a terminal (a tmux pane, a real
# pty), so sudo asks for her password there as the README shows -----------------------------

PASSWORD = "correct horse"  # alice's login password on the throwaway host
ALICE_ENV = {"HOME": "/home/alice", "TERM": "xterm-256color", "USER": "alice"}
PROMPT = re.compile(r"^\[(\d+)\] alice\$(?: |$)", re.M)  # her shell's prompt shows the last status


class Terminal:
    """alice's terminal: a tmux pane (100x30) running bash with PS1 `[$?] alice$ `."""

    def __init__(self, box) -> None:
        self.box = box
        self.tmux("new-session", "-d", "-x", "100", "-y", "30",
                  "env PS1='[$?] alice$ ' bash --norc --noprofile")
        self.wait_for(lambda s: PROMPT.search(s), "her prompt")

    def tmux(self, *args: str) -> str:
        return self.box.run(["tmux", "-L", "readme", *args], user="alice", env=ALICE_ENV,
                            timeout=30).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "0", "-S", "-2000")

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "0", "-l", text)
        self.tmux("send-keys", "-t", "0", "Enter")

    def wait_for(self, probe, what: str, timeout: float = 60):
        try:
            return wait_for(f"{what} on alice's terminal", lambda: probe(self.screen()),
                            timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the screen:\n{self.screen()}") from None

    def run(self, cmd: str, ask: str = "password for alice:",
            answer: str = PASSWORD) -> tuple[int, str]:
        """Type `cmd` at her prompt, and `answer` whenever the screen ends with `ask`
        (her password when sudo asks for it); the status and what the command printed
        (up to her next prompt)."""
        start = len(PROMPT.findall(self.screen()))
        self.type(cmd)
        typed = 0

        def done(screen: str):
            nonlocal typed
            asked = screen.count(ask)
            if asked > typed and screen.rstrip().endswith(ask):
                self.type(answer)
                typed = asked
            prompts = list(PROMPT.finditer(screen))
            return prompts[start:] and (screen, prompts)

        screen, prompts = self.wait_for(done, f"the end of {cmd!r}")
        shown = screen[prompts[start - 1].end():prompts[start].start()]
        return int(prompts[start].group(1)), shown.split("\n", 1)[-1]

    def close(self) -> None:
        self.box.run(["tmux", "-L", "readme", "kill-server"], user="alice", env=ALICE_ENV,
                     check=False)


def prompted(title: str) -> list[tuple[str, str, list[str]]]:
    """(who, command, the output lines shown under it) of every `alice$ ` / `root# `
    line of the section's sh and console blocks, and of their lines without a prompt
    that are commands (root's: every line of a block without prompts, else `jit ...`),
    comments dropped."""
    out: list[tuple[str, str, list[str]]] = []
    for block in re.findall(r"^```(?:sh|console)\n(.*?)^```", section(title), re.S | re.M):
        block = re.sub(r"\\\n\s*", " ", block)
        has_prompts = re.search(r"^\w+[$#]\s", block, re.M) is not None
        for line in block.splitlines():
            m = re.match(r"^(\w+)[$#]\s+(.*)$", line.strip())
            if m:
                out.append((m.group(1), m.group(2), []))
            elif line[:1].strip() and (not has_prompts or line.startswith("jit ")):
                out.append(("root", line.strip(), []))
            elif out and line.strip():
                out[-1][2].append(line)
    return [(who, shlex.join(shlex.split(cmd, comments=True)), shown)
            for who, cmd, shown in out]


def comment(title: str, cmd: str) -> str:
    """The README's own comment on a command line of the section."""
    for line in section(title).splitlines():
        if cmd in line and "#" in line.split(cmd, 1)[1]:
            return line.split(cmd, 1)[1].split("#", 1)[1].strip()
    return ""


def add_policy(box, title: str) -> None:
    """Append the section's jit.toml part to the policy, check it and reload hostd, as
    "Using it" shows."""
    part = tomls(title)["/etc/jit/jit.toml"]
    box.write("/etc/jit/jit.toml", box.path("/etc/jit/jit.toml").read_text() + "\n" + part)
    for cmd in ("jit check-config", "jit reload"):
        r = run(box, None, cmd)
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    # what check-config warns of the README's policy on this host: only what the README
    # says of it (/ is not nosuid; standing rules do not pause for approval)
    warned = [w for w in run(box, None, "jit check-config").stderr.splitlines()
              if "set-id bits take effect" not in w and "standing rules have no approvers"
              not in w]
    assert warned == []


def grant(box, user: str, role: str) -> str:
    """What the README leaves to the issuer: a token for `role`, from the walk's corp key."""
    token = run(box, None, f"jit issue --key corp.key --issuer corp --user {user} --role "
                           f"{role} --hosts web-1 --for 30m --reason readme").stdout.strip()
    r = run(box, user, f"jit activate {token}")
    assert r.returncode == 0, r.stderr
    return re.match(r"grant (\w+) active", r.stdout).group(1)


@pytest.fixture(scope="module")
def terminal(walk) -> Iterator[Terminal]:
    host, _ = walk
    box = host.box
    # the admin's part: a postgresql service to restart, alice's password, the groups
    # and users the README's sections name
    box.write("/etc/systemd/system/postgresql.service",
              "[Service]\nExecStart=/bin/sleep infinity\n")
    box.run(["systemctl", "daemon-reload"])
    box.run(["systemctl", "start", "postgresql"])
    box.run(["chpasswd"], input=f"alice:{PASSWORD}\n")
    box.run(["useradd", "--system", "postgres"])
    box.run(["groupadd", "contractors"])
    pane = Terminal(box)
    yield pane
    pane.close()


def test_sudo_by_grant(walk, terminal) -> None:
    host, seen = walk
    box = host.box
    title = "sudo by grant"
    add_policy(box, title)
    steps = prompted(title)
    assert [(w, c.split()[0]) for w, c, _ in steps] == [("root", "jit")] + [("alice", "sudo")] * 3
    (_, enable, _), *sudo_lines = steps
    r = run(box, None, enable)
    assert r.returncode == 0, r.stderr
    assert "jit_sudo.so" in box.path("/etc/sudo.conf").read_text()
    status, shown = terminal.run(sudo_lines[0][1])
    assert status == 1 and "holds no grant allowing sudo on web-1" in shown, shown  # as said
    seen["db-admin"] = grant(box, "alice", "db-admin")
    restarted = box.run(["systemctl", "show", "-P", "ExecMainPID", "postgresql"]).stdout
    for _, cmd, _ in sudo_lines:
        status, shown = terminal.run(cmd)
        if "refused" in comment(title, cmd):
            assert status == 1 and "sorry, you may not run" in shown, shown
        else:
            assert status == 0, f"{cmd}: {shown}"
    assert "password for alice" in terminal.screen()  # authenticate = true, on her pty
    assert box.run(["systemctl", "show", "-P", "ExecMainPID", "postgresql"]).stdout \
        != restarted
    assert "/usr/bin/systemctl restart postgresql" in shown  # sudo -l: what she may run


def test_recorded_sudo_sessions(walk, terminal) -> None:
    host, seen = walk
    box = host.box
    title = "Recorded sudo sessions"
    add_policy(box, title)
    seen["ops"] = grant(box, "alice", "ops")
    steps = prompted(title)
    (who, sudo_i, session), *rest = steps
    assert (who, sudo_i) == ("alice", "sudo -i")
    before = len(events(box, "recording_closed"))
    terminal.type(sudo_i)

    def since(screen: str) -> str:
        return screen.rsplit(f"alice$ {sudo_i}", 1)[-1].rstrip()

    asked = terminal.wait_for(lambda s: s if since(s).endswith("password for alice:") or (
        "this session is recorded" in since(s) and since(s).endswith("#")) else None,
        "a recorded root shell or the password prompt")
    if since(asked).endswith("password for alice:"):
        terminal.type(PASSWORD)
    # the lines typed in root's shell: `root@db1:~# ...` (the walk's host is web-1)
    typed = [line.split("# ", 1)[1] for line in session if re.match(r"root@\w+:~# ", line)]
    assert typed[-1] == "exit" and typed[0].startswith("echo key AKIA")
    wanted = session[session.index(f"root@db1:~# {typed[0]}") + 1]
    terminal.wait_for(lambda s: "this session is recorded" in since(s)
                      and since(s).endswith("#"), "root's prompt in a recorded session")
    terminal.type(typed[0])
    terminal.wait_for(lambda s: f"\n{wanted}" in since(s), f"{wanted!r}")  # masked
    status, _ = terminal.run("exit")
    assert status == 0
    rid = wait_for("recording_closed", lambda: events(box, "recording_closed")[before:],
                   timeout=30)[0]["JIT_RECORDING"]
    example = re.search(r"jit replay ([0-9a-f]{16})", section(title)).group(1)
    for who, cmd, shown in rest:
        if who != "root":
            continue
        r = run(box, None, cmd.replace(example, rid))
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
        if cmd == "jit sessions":
            assert r.stdout.splitlines()[0].split() == shown[0].split()
            assert rid in r.stdout and "alice" in r.stdout
        elif cmd.startswith("jit replay") and "--export" not in cmd:
            assert wanted in r.stdout and "AKIA" not in r.stdout
        elif cmd.startswith("jit verify-recording"):
            assert r.stdout.startswith(shown[0].replace(example, rid).split("(sha256")[0])
    assert "AKIA" not in box.path(f"/var/log/jit/sessions/{rid}.cast").read_text()


def test_session_recordings(walk, terminal) -> None:
    host, _ = walk
    box = host.box
    title = "Session recordings"
    # the admin's part: the file the README's example reads, with a 14-character password
    box.write("/srv/app/.env", "DB_PASSWORD=hunter2hunter2\n"
              "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", mode=0o600)
    steps = prompted(title)
    (who, try_rules, masked), *steps = steps
    try_rules = try_rules.replace(" '|' ", " | ")  # prompted() quotes words; this is a pipe
    assert who == "alice" and try_rules.endswith("| jit mask test --explain"), try_rules
    r = run(box, "alice", try_rules)  # the host's rules, as the README's [masking] adds
    assert r.returncode == 1, r.stderr  # something was masked
    assert r.stdout.splitlines() == [line for line in masked if not line.startswith("jit:")]
    assert sorted(r.stderr.splitlines()) == sorted(
        line for line in masked if line.startswith("jit:"))
    (who, cat, wanted), *admin = steps
    assert (who, cat) == ("alice", "sudo cat /srv/app/.env")
    before = len(events(box, "recording_closed"))
    status, shown = terminal.run(cat)
    assert status == 0 and [line.strip() for line in wanted] == [
        line.strip() for line in shown.splitlines() if "=" in line], shown
    rid = wait_for("recording_closed", lambda: events(box, "recording_closed")[before:],
                   timeout=30)[0]["JIT_RECORDING"]
    ran = []
    for _who, cmd, _ in admin:
        if cmd.startswith("asciinema"):
            continue  # not a dependency; the README says so
        r = run(box, None, cmd.replace("ID", rid))
        assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
        ran.append(cmd.split()[:2])
        if "--json" in cmd:
            answer = json.loads(r.stdout)
            assert answer["ok"] and answer["end"] == "exit 0" and answer["id"] == rid
            assert "hunter2" not in r.stdout and "*" * 14 in r.stdout
    assert ["jit", "verify-recording"] in ran and ["mkdir", "/tmp/x"] in ran
    # seen from inside: the container's /tmp is its own tmpfs
    assert box.run(["test", "-s", f"/tmp/x/{rid}.timing"], check=False).returncode == 0


def test_logins_by_grant(walk, terminal) -> None:
    host, _ = walk
    box = host.box
    box.run(["chpasswd"], input=f"carol:{PASSWORD}\n")  # the admin's part
    title = "Logins by grant (PAM)"
    add_policy(box, title)
    refused = " ".join(re.search(r"refused: `(jit: logging in to HOST [^`]*)`",
                                 section(title)).group(1).split())
    pattern = re.escape(refused).replace("HOST", r"\S+")

    def login(user: str):
        return box.run(["pamtester", "-v", "login", user, "acct_mgmt"], check=False,
                       timeout=60)

    def su_carol() -> tuple[int, str]:
        """carol logging in with su on alice's terminal: what she would see."""
        return terminal.run("su - carol -c 'echo logged-in'", ask="Password:")

    r = login("carol")
    assert r.returncode != 0 and re.search(pattern, r.stdout + r.stderr), r.stdout + r.stderr
    status, shown = su_carol()
    assert status != 0 and re.search(pattern, " ".join(shown.split())), shown
    assert "logged-in" not in shown
    assert login("alice").returncode == 0  # not named: not gated
    console = grant(box, "carol", "console")
    assert login("carol").returncode == 0
    status, shown = su_carol()
    assert status == 0 and "logged-in" in shown, shown
    # an interactive login shows her grants and the time each has left
    terminal.type("su - carol")
    terminal.wait_for(lambda s: s.rstrip().endswith("Password:") or None, "su's prompt")
    terminal.type(PASSWORD)
    terminal.wait_for(lambda s: re.search(r"carol@\S+:~\$\s*\Z", s), "carol's shell")
    sessions = re.search(r"`(jit grants --sessions)` lists them", section(title)).group(1)
    terminal.type(sessions)  # in carol's login, her open session is listed
    listed = terminal.wait_for(lambda s: re.search(
        r"jit grants --sessions\n(SESSION .*\n.*)\n.*carol@\S+:~\$\s*\Z", s), sessions)
    assert re.search(r"\bsu\b.*\S{12}", listed.group(1)), listed.group(1)  # service, grant
    status, shown = terminal.run("exit")
    assert re.search(r"console \(docker\): \d+m \d\ds left", shown), shown
    run(box, None, f"jit revoke {console}")
    off, on = re.findall(r"`(jit setup pam --(?:disable|enable))`", section(title))
    assert run(box, None, off).returncode == 0
    assert login("carol").returncode == 0  # the profile is off: nobody gated
    assert run(box, None, on).returncode == 0
    assert login("carol").returncode != 0
