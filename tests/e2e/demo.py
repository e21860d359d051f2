"""`make demo`: jitaccess end to end on a throwaway Debian 12, narrated for a newcomer.

Boots a container (tests/e2e/container.py), installs the built .deb, and walks through
the whole flow with real commands and their real output: an issuer key, the host
policy, a short grant issued and activated, the expiry timer, the revocation at expiry,
the journal events, the access-request flow (alice asks, bob approves), then sudo by
grant through jit_sudo.so (a granted command, a refused one, an approval). The
container is always torn down. The transcript goes to stdout; progress to stderr.
Any step that fails ends the demo with a message and exit status 1.

    /usr/bin/python3 tests/e2e/demo.py [--grant-seconds 60] [--skip-request]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from container import CommandFailed, Container, log
from jithost import (
    CORP_KEY,
    ISSUER_TOML,
    add_users,
    events,
    find_deb,
    grants,
    groups_of,
    install_deb,
    wait_for,
)

# The policy the demo writes: the docker role, issued by corp or by this host itself,
# which alice may ask for and bob must approve.
DEMO_POLICY = """\
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host"]
requesters = ["alice"]
approvers = ["bob"]
approvals = 1
"""

WIDTH = 88


class StepFailed(Exception):
    """A demo step did not do what the transcript says it does."""


class Narrator:
    """Prints the transcript: a short explanation, then `$ command` and its output."""

    def __init__(self, box: Container) -> None:
        self.box = box
        self.current = "setup"

    def section(self, title: str) -> None:
        self.current = title
        print(f"\n## {title}\n", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.fill(" ".join(text.split()), WIDTH), flush=True)

    def run(self, argv: Sequence[str] | str, user: str | None = None,
            shown: str | None = None, check: bool = True, max_lines: int = 40,
            ) -> str:
        """Run in the container, echo the command as typed and what it printed."""
        prompt = f"{user}$" if user else "$"
        typed = shown or (argv if isinstance(argv, str) else shlex.join(argv))
        print(f"{prompt} {typed}", flush=True)
        proc = self.box.run(argv, user=user, check=False, timeout=300)
        out = (proc.stdout + proc.stderr).rstrip("\n")
        lines = out.splitlines()
        if len(lines) > max_lines:
            lines = [*lines[:max_lines // 2], f"[... {len(lines) - max_lines} lines ...]",
                     *lines[-max_lines // 2:]]
        for line in lines:
            print(f"  {line}", flush=True)
        if proc.returncode:
            print(f"  (exit status {proc.returncode})", flush=True)
            if check:
                raise CommandFailed(proc, [typed])
        print(flush=True)
        return proc.stdout

    def file(self, path: str, content: str) -> None:
        """Write a file the way an administrator would, and show it."""
        self.box.write(path, content)
        print(f"$ cat > {path} <<'EOF'")
        for line in content.rstrip("\n").splitlines():
            print(f"  {line}")
        print("  EOF\n", flush=True)


def short(token: str) -> str:
    return token if len(token) < 60 else f"{token[:40]}...{token[-12:]}"


def events_summary(n: Narrator, kinds: Sequence[str], since: float) -> None:
    """A few compact lines from `journalctl -o json -t jit-hostd`."""
    n.say("""Every step is a structured journald event (SYSLOG_IDENTIFIER=jit-hostd, one
        MESSAGE_ID per event type, JIT_* fields) that a SIEM can ingest. Read back with
        `journalctl -o json -t jit-hostd` and shown compactly:""")
    print("$ journalctl -o json -t jit-hostd | (compact view)", flush=True)
    for e in events(n.box):
        when = int(e["__REALTIME_TIMESTAMP"]) / 1e6
        if when < since or e.get("JIT_EVENT") not in kinds:
            continue
        stamp = time.strftime("%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}"
        fields = " ".join(f"{k[4:].lower()}={e[k]}" for k in
                          ("JIT_USER", "JIT_ROLE", "JIT_GROUPS", "JIT_GRANT_ID",
                           "JIT_REQUEST_ID", "JIT_APPROVER", "JIT_ISSUER", "JIT_COMMAND",
                           "JIT_CODE")
                          if e.get(k))
        print(f"  {stamp}Z {e['JIT_EVENT']:<18} {fields}", flush=True)
    print(flush=True)


def grant_flow(n: Narrator, seconds: int) -> None:
    box = n.box
    n.section("2. An issuer key and the host policy")
    n.say("""A grant is a signed token (a JWT, Ed25519). An organisation's issuer key
        normally lives on an approver's machine or in an identity provider; here we make
        one on the host itself so the demo is self-contained.""")
    n.run(["jit", "keygen", "--out", CORP_KEY])
    n.run(["ls", "-l", "/etc/jit/keys"])
    n.say("The host trusts an issuer through a file in /etc/jit/issuers.d/:")
    n.file("/etc/jit/issuers.d/corp.toml", ISSUER_TOML)
    n.say("""The host policy says what a role means here: the `docker` role is temporary
        membership of the docker group, for at most 4 hours, from grants by `corp` or by
        this host itself (`host`, for requests approved locally).""")
    n.file("/etc/jit/jit.toml", DEMO_POLICY)
    n.run(["jit", "check-config"])
    n.say("hostd re-reads its policy on reload (SIGHUP):")
    n.run(["systemctl", "reload-or-restart", "jit-hostd.service"])

    n.section(f"3. A {seconds}-second grant for alice")
    n.say("alice has no standing access to docker:")
    n.run(["id", "alice"])
    n.say("""The issuer signs a grant for alice, role docker, valid for a short time. The
        output is the token; alice would receive it by chat or from a portal.""")
    token = n.box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                       "alice", "--role", "docker", "--for", f"{seconds}s", "--reason",
                       "debug container networking", "--ticket", "OPS-42"]).stdout.strip()
    print(f"$ TOKEN=$(jit issue --key {CORP_KEY} --issuer corp --user alice --role docker "
          f"--for {seconds}s --reason 'debug container networking' --ticket OPS-42)")
    print(f"$ echo $TOKEN\n  {short(token)}\n", flush=True)
    n.say("alice activates it. hostd verifies the signature, the issuer, the role and "
          "the lifetime, then adds her to the group:")
    n.run(["jit", "activate", token], user="alice", shown='jit activate "$TOKEN"')
    n.run(["id", "alice"])
    n.run(["jit", "grants"], user="alice")
    held = grants(box, user="alice")[0]
    grant_id, exp = held["id"], int(held["exp"])
    n.say("""The expiry is a transient systemd timer, armed for the grant's end (to within
        a tenth of a second): the group is taken away even if nobody is around, and a
        reboot is covered by jit-reconcile.service at boot.""")
    n.run("systemctl list-timers --all --no-pager 'jit-expire-*' | head -3",
          shown="systemctl list-timers --all 'jit-expire-*'")

    n.section("4. Expiry")
    left = exp - time.time()
    n.say(f"Now we wait for the grant to end at {held['not_after']} "
          f"(about {max(0, round(left))} s from now), doing nothing.")
    t0 = time.monotonic()
    wait_for("alice to leave docker", lambda: "docker" not in groups_of(box, "alice"),
             timeout=left + 30, interval=0.5)
    print(f"  ... {time.monotonic() - t0:.0f} s later\n", flush=True)
    n.run(["id", "alice"])
    n.run(["jit", "grants"], user="alice")
    n.run(f"systemctl list-timers --all --no-pager 'jit-expire-{grant_id}*' | head -3",
          shown=f"systemctl list-timers --all 'jit-expire-{grant_id}*'")
    removed = events(box, "membership_removed", grant_id)
    if not removed:
        raise StepFailed(f"no membership_removed event for grant {grant_id}")
    late = int(removed[0]["__REALTIME_TIMESTAMP"]) / 1e6 - exp
    n.say(f"The membership was removed {late:.2f} s after the grant's end.")
    print(flush=True)
    events_summary(n, ("grant_activated", "membership_added", "grant_expired",
                       "membership_removed"), since=exp - seconds - 30)


def request_flow(n: Narrator) -> None:
    box = n.box
    n.section("5. Asking for access instead: a request that bob approves")
    n.say("""Without a token, alice can ask the host for a role her policy lets her
        request; an approver the role names (bob) decides, and hostd then signs the grant
        with this host's own issuer key and activates it.""")
    since = time.time()
    n.run(["jit", "request", "docker", "--for", "30m", "--reason", "deploy the hotfix",
           "--ticket", "OPS-43"], user="alice")
    listed = n.run(["jit", "requests"], user="bob")
    req_id = pending_request(box, listed)
    n.run(["jit", "approve", req_id, "--comment", "go ahead"], user="bob")
    wait_for("alice to join docker", lambda: "docker" in groups_of(box, "alice"), timeout=30)
    n.run(["id", "alice"])
    n.run(["jit", "grants"], user="alice")
    n.say("""alice is done early and gives the access back herself. The shell she types
        in was started while she held docker, so it holds the group too: the revoke ends
        it, as expiry would (on_expiry = "terminate-sessions"; "keep-sessions" would
        only log it), hence the "Terminated" after the answer:""")
    mine = grants(box, user="alice")
    if not mine:
        raise StepFailed("the approved request left alice without a grant")
    out = n.run(["jit", "revoke", mine[0]["id"], "--reason", "hotfix deployed"],
                user="alice", check=False)
    if f"grant {mine[0]['id']} revoked" not in out:
        raise StepFailed("alice's revoke was not answered")
    wait_for("alice to leave docker", lambda: "docker" not in groups_of(box, "alice"),
             timeout=30)
    n.run(["id", "alice"])
    events_summary(n, ("request_created", "request_approved", "grant_activated",
                       "membership_added", "grant_revoked", "membership_removed"),
                   since=since)


SUDO_POLICY = DEMO_POLICY + """
[roles.ops]
groups = []
max_ttl = "1h"
issuers = ["corp"]
approvers = ["bob"]
authenticate = false
sudo = [ { runas = "root", commands = ["/usr/bin/id -u", "/usr/bin/touch /srv/*"] } ]

[[guardrails]]
action = "deny"
match = '^/usr/bin/rm '
message = "rm is not run through sudo on this host"

[[guardrails]]
action = "approve"
match = '^/usr/bin/touch /srv/'
message = "changing /srv needs a second pair of eyes"

[[standing]]
members = ["root"]
sudo = [ { runas = "root", commands = ["ALL"] } ]
"""


def sudo_flow(n: Narrator) -> None:
    box = n.box
    n.section("6. sudo by grant: jit_sudo.so")
    n.say("""The same grants can carry sudo rights. The policy names, per role, which
        commands may run as whom; guardrails refuse dangerous commands outright or pause
        risky ones for an approver; a standing rule keeps root able to administer.""")
    n.file("/etc/jit/jit.toml", SUDO_POLICY)
    n.run(["systemctl", "reload", "jit-hostd.service"])
    n.say("""Enabling the plugin is an explicit step (never done by apt). It refuses if
        nobody could administer the host afterwards, and keeps a backup of sudo.conf:""")
    n.run(["jit", "setup", "sudo", "--enable"])
    since = time.time()
    n.say("Without a grant, sudo says why:")
    n.run(["sudo", "-n", "id", "-u"], user="alice", check=False)
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                     "alice", "--role", "ops", "--for", "30m", "--reason",
                     "restart the app"]).stdout.strip()
    n.run(["jit", "activate", token], user="alice", shown='jit activate "$OPS_TOKEN"')
    n.say("With the ops grant, exactly what it names runs, and nothing else:")
    if n.run(["sudo", "-n", "id", "-u"], user="alice").strip() != "0":
        raise StepFailed("sudo id -u did not run as root")
    n.run(["sudo", "-n", "id", "-g"], user="alice", check=False)
    n.run(["sudo", "-n", "-l"], user="alice")
    n.say("A deny guardrail holds whatever the grant says:")
    n.run(["sudo", "-n", "rm", "-f", "/srv/data"], user="alice", check=False)
    n.say("""An approve guardrail pauses sudo: alice's command waits (it prints the
        request id) until bob approves it; it then runs once.""")
    print("alice$ sudo touch /srv/release-ready    # waits", flush=True)
    waiting = box.popen(["sudo", "touch", "/srv/release-ready"], user="alice")
    pending = wait_for("the command approval", lambda: [
        r for r in json.loads(box.run(["jit", "requests", "--json"], user="bob").stdout)
        ["requests"] if r["kind"] == "command" and r["state"] == "pending"], timeout=20)
    n.run(["jit", "requests"], user="bob")
    n.run(["jit", "approve", pending[0]["id"]], user="bob")
    _, err = waiting.communicate(timeout=30)
    for line in err.strip().splitlines():
        print(f"  (alice's terminal) {line}", flush=True)
    if waiting.returncode != 0:
        raise StepFailed(f"the approved command did not run: {err.strip()[:200]}")
    n.run(["ls", "-l", "/srv/release-ready"])
    n.say("`jit setup sudo --disable` gives sudo back to sudoers, byte for byte:")
    n.run(["jit", "setup", "sudo", "--disable"])
    events_summary(n, ("sudo_allowed", "sudo_denied", "sudo_pending", "request_approved"),
                   since=since)


def audit_flow(n: Narrator) -> None:
    """The demo's closing step: `jit audit` reads back what the demo did (a table, who
    held what at a moment, an OCSF export) and writes the HTML report, which is copied
    out of the container to dist/demo-audit.html (when this build has the report)."""
    box = n.box
    n.section("11. Audit: everything above, read back from the journal")
    n.say("""`jit audit` (root, adm or systemd-journal) reads hostd's events from journald,
        matched on hostd's uid, identifier and the catalog's MESSAGE_IDs, never by
        parsing text. Filters: --since, --until, --user, --role, --grant, --event.""")
    n.run(["jit", "audit"], max_lines=30)
    activated = json.loads(box.run(["jit", "audit", "--json", "--user", "alice", "--event",
                                    "grant_activated"]).stdout.splitlines()[0])
    at = int(activated["__REALTIME_TIMESTAMP"]) // 1_000_000 + 1
    n.say("Who held which role at a given moment (here: just after alice's first grant):")
    shown = n.run(["jit", "audit", "--held-at", f"@{at}"])
    if activated["JIT_GRANT_ID"] not in shown:
        raise StepFailed("--held-at does not list alice's first grant")
    n.say("""The same events as OCSF 1.8.0 (or ECS 9.4.0 with --format ecs), one JSON
        object per line, for a SIEM; here the first expiry, pretty-printed:""")
    n.run("jit audit --format ocsf --event grant_expired | head -n 1 | python3 -m json.tool",
          max_lines=70)
    if box.run(["python3", "-c", "import hostd.audit.report"], check=False).returncode:
        n.say("(The HTML report, `jit audit --html FILE`, is not part of this build.)")
        return
    n.say("And a self-contained HTML timeline an auditor can open anywhere:")
    n.run(["jit", "audit", "--html", "/root/audit.html"])
    out = Path(__file__).resolve().parents[2] / "dist" / "demo-audit.html"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(box.path("/root/audit.html").read_bytes())
    print(f"  (copied to {out})\n", flush=True)
LOGIN_POLICY = DEMO_POLICY + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true                          # this role admits its holder where [login] gates

[login]
require_grant = ["carol"]             # carol may log in only while holding such a grant
"""


def login_flow(n: Narrator) -> None:
    """pam_jit: a gated login refused, then admitted by a login grant (issue 9)."""
    box = n.box
    n.section("8. Logins by grant: pam_jit")
    n.say("""The package's PAM profile (pam-auth-update, on by default) registers login
        sessions and gates nobody until [login] names someone. Here carol may log in only
        while she holds a grant whose role says login = true:""")
    n.file("/etc/jit/jit.toml", LOGIN_POLICY)
    n.run(["systemctl", "reload", "jit-hostd.service"])
    since = time.time()
    n.say("Without such a grant, the account check refuses her and says how to ask:")
    n.run(["pamtester", "login", "carol", "acct_mgmt"], check=False)
    try:
        wait_for("login_refused", lambda: [e for e in events(box, "login_refused")
                                           if e.get("JIT_USER") == "carol"], timeout=10)
    except AssertionError:
        raise StepFailed("carol's login was not refused") from None
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user", "carol",
                     "--role", "console", "--for", "30m", "--reason",
                     "on-call console"]).stdout.strip()
    n.run(["jit", "activate", token], shown='jit activate "$CONSOLE_TOKEN"')
    n.say("""With it she is admitted, and a login shell tells her what she holds and for
        how long:""")
    n.run(["pamtester", "login", "carol", "acct_mgmt"])
    shown = n.run("echo exit | script -qec 'su -l carol' /dev/null",
                  shown="su -l carol        # a login on a terminal")
    if "left (grant" not in shown:
        raise StepFailed("the login did not show the time left")
    n.say("Root is never refused, even with hostd stopped; `jit setup pam --disable` undoes "
          "the profile.")
    events_summary(n, ("login_refused", "session_opened", "session_closed"), since=since)


SESSION_END_POLICY = """\
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp"]
on_expiry = "terminate-sessions"    # the default, said out loud
"""


def session_end_flow(n: Narrator, seconds: int = 20) -> None:
    """A process started under a grant still holds its group after gpasswd -d: at
    expiry hostd ends it (on_expiry = "terminate-sessions")."""
    box = n.box
    n.section("9. Expiry ends what the grant opened")
    n.say("""Removing alice from a group does not change the credentials of processes
        already running: a shell started under the grant would keep docker. With
        on_expiry = "terminate-sessions" (the default) hostd ends, at expiry, her login
        sessions registered while the grant was live, then every process of hers that
        still holds a group the grant took away.""")
    n.file("/etc/jit/jit.toml", SESSION_END_POLICY)
    n.run(["systemctl", "reload", "jit-hostd.service"])
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                     "alice", "--role", "docker", "--for", f"{seconds}s", "--reason",
                     "one more look"]).stdout.strip()
    since = time.time()  # after the reload: grants it ended are not this step's story
    n.run(["jit", "activate", token], user="alice", shown='jit activate "$TOKEN"')
    exp = int(grants(box, user="alice")[0]["exp"])
    n.say("alice leaves a job running in the background, detached from any terminal:")
    pid = n.run("setpriv --reuid=alice --regid=alice --init-groups setsid sleep 600 "
                "</dev/null >/dev/null 2>&1 & echo $!",
                shown="setsid sleep 600 & echo $!    # as alice, with her groups").strip()
    n.run(["ps", "-o", "pid,user,supgrp,args", "-p", pid])
    left = exp - time.time()
    n.say(f"The grant ends in about {max(0, round(left))} s.")
    wait_for("alice's job to be gone", lambda: box.run(
        ["ps", "-p", pid], check=False).returncode == 1, timeout=left + 30, interval=0.5)
    n.run(["ps", "-o", "pid,user,supgrp,args", "-p", pid], check=False)
    ended = [e for e in events(box, "session_terminated")
             if int(e["__REALTIME_TIMESTAMP"]) / 1e6 >= since]
    if not ended:
        raise StepFailed("no session_terminated event")
    late = max(int(e["__REALTIME_TIMESTAMP"]) / 1e6 for e in ended) - exp
    n.say(f"Her job was ended {late:.2f} s after the grant's end, and the journal says so:")
    events_summary(n, ("grant_expired", "membership_removed", "session_terminated"),
                   since=since)
def record_flow(n: Narrator) -> None:
    """A recorded sudo session with masked secrets, listed, replayed and verified."""
    box = n.box
    policy = """\
    [roles.ops]
    groups = []
    max_ttl = "1h"
    issuers = ["corp"]
    authenticate = false
    record = "always"                    # every sudo of this role is recorded
    sudo = [ { runas = "root", commands = ["ALL"] } ]

    [[standing]]
    members = ["root"]
    sudo = [ { runas = "root", commands = ["ALL"] } ]

    [masking]
    rules = [ { name = "ticket", regex = 'TICKET-[0-9]{6}' } ]
    """
    n.section("7. Recorded sudo sessions, masked")
    n.say("""A role's `record` wraps its sudo commands in jit-record: output is masked
        (built-in rules for common secrets, plus the policy's own) before it reaches the
        screen or the recording, which hostd alone writes, hash-chained, the final
        digest in the journal.""")
    n.file("/etc/jit/jit.toml", textwrap.dedent(policy))
    n.run(["systemctl", "reload", "jit-hostd.service"])
    n.run(["jit", "setup", "sudo", "--enable"])
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                     "alice", "--role", "ops", "--for", "30m", "--reason",
                     "rotate the keys"]).stdout.strip()
    n.run(["jit", "activate", token], user="alice", shown='jit activate "$OPS_TOKEN"')
    secret = "AKIAIOSFODNN7EXAMPLE"
    shown = n.run(["sudo", "sh", "-c", f"echo aws key {secret} ticket TICKET-424242; "
                   "id -un"], user="alice")
    if secret in shown or "TICKET-424242" in shown or "aws key *" not in shown:
        raise StepFailed("the secret was not masked on alice's screen")
    closed = wait_for("the recording's digest in the journal",
                      lambda: events(box, "recording_closed"), timeout=30)
    rid = closed[-1]["JIT_RECORDING"]
    n.say(f"""hostd logged `recording_closed` with JIT_RECORDING={rid} and its digest
        JIT_RECORDING_SHA256={closed[-1]["JIT_RECORDING_SHA256"][:16]}... Root lists,
        replays and verifies it:""")
    n.run(["jit", "sessions"])
    replay = n.run(["jit", "replay", rid, "--speed", "10"])
    if secret in replay or "aws key *" not in replay:
        raise StepFailed("the replay does not show the masked session")
    n.run(["jit", "verify-recording", rid])
    n.run(["jit", "setup", "sudo", "--disable"])


def revocation_flow(n: Narrator) -> None:
    """A signed revocation list, pushed as a file, ends a live grant on the host."""
    box = n.box
    n.section("10. Taking access away everywhere: a signed revocation list")
    n.say("""Grants are verified offline, so taking one back before its end (a laptop
        stolen, a person leaving) needs a list every host checks offline too: signed by
        the issuer, pushed as a file by configuration management (or pulled from a URL by
        jit-revocations-fetch.timer). The issuer's file says where the list comes from:""")
    n.file("/etc/jit/issuers.d/corp.toml", ISSUER_TOML + '\n[revocation]\nfile = '
           '"/etc/jit/revocations/corp.jwt"\n')
    n.run(["jit", "reload"])
    token = box.run(["jit", "issue", "--key", CORP_KEY, "--issuer", "corp", "--user",
                     "carol", "--role", "docker", "--for", "1h", "--reason",
                     "on call"]).stdout.strip()
    print(f"$ TOKEN=$(jit issue --key {CORP_KEY} --issuer corp --user carol --role docker "
          "--for 1h --reason 'on call')\n", flush=True)
    n.run(["jit", "activate", token], user="carol", shown='jit activate "$TOKEN"')
    n.run(["id", "-nG", "carol"])
    n.say("carol's laptop is stolen. On the issuer's machine, the next list locks her:")
    n.run(["jit", "revocations", "build", "--key", CORP_KEY, "--issuer", "corp", "--user",
           "carol", "--reason", "laptop stolen", "--out", "/root/corp-list.jwt"])
    n.say("""Configuration management writes it (atomically) on every host; the path unit
        jit-revocations.path notices it at once and hostd ends her grant:""")
    n.run("mkdir -p /etc/jit/revocations && cp /root/corp-list.jwt /etc/jit/revocations/"
          ".corp.jwt.new && mv /etc/jit/revocations/.corp.jwt.new /etc/jit/revocations/corp.jwt",
          shown="cp corp-list.jwt /etc/jit/revocations/.corp.jwt.new && "
                "mv /etc/jit/revocations/.corp.jwt.new /etc/jit/revocations/corp.jwt")
    since = time.time() - 1
    wait_for("carol to leave docker", lambda: "docker" not in groups_of(box, "carol"),
             timeout=30, interval=0.25)
    n.run(["id", "-nG", "carol"])
    n.run(["jit", "revocations", "status"])
    n.say("Her token no longer activates, on this host or any other that has the list:")
    answer = n.run(["jit", "activate", token], user="carol", shown='jit activate "$TOKEN"',
                   check=False)
    if "revoked" not in answer + box.run(["jit", "activate", "--json", token], user="carol",
                                         check=False).stdout:
        raise StepFailed("the revoked grant activated again")
    events_summary(n, ("revocations_loaded", "grant_revoked", "membership_removed",
                       "grant_refused"), since=since)


def pending_request(box: Container, listed: str) -> str:
    """The id of the request alice just made, as bob sees it; StepFailed if none."""
    proc = box.run(["jit", "requests", "--json"], user="bob", check=False)
    try:
        pending = [r for r in json.loads(proc.stdout)["requests"] if r["state"] == "pending"]
    except (ValueError, KeyError, TypeError):
        pending = []
    if not pending:
        raise StepFailed(f"no pending request for bob to approve ({listed.strip()[:200]})")
    return pending[0]["id"]


def failed(n: Narrator | None, exc: BaseException) -> int:
    """Say which step failed, in the transcript and on stderr; the demo's exit status."""
    where = n.current if n is not None else "setup"
    message = f"demo: FAILED in step {where!r}: {exc}"
    print(f"\n{message}", flush=True)
    print(message, file=sys.stderr, flush=True)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grant-seconds", type=int, default=60)
    parser.add_argument("--skip-request", action="store_true",
                        help="leave out the access-request section")
    args = parser.parse_args(argv)
    try:
        deb = find_deb()
    except FileNotFoundError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    n: Narrator | None = None
    try:
        box = Container.create("jit-demo")
    except Exception as exc:  # any failure ends the demo non-zero
        return failed(n, exc)
    try:
        n = Narrator(box)
        print("# jitaccess: just-in-time privileged access, end to end\n")
        n.say("""Everything below runs in a throwaway Debian 12 container booted with
            systemd-nspawn: real systemd, journald, D-Bus and logind. Commands prefixed
            `$` run as root, `alice$` and `bob$` as those unprivileged users.""")
        n.section("1. Install the package")
        seconds = box.boot()
        log(f"container {box.name} booted in {seconds:.1f} s")
        add_users(box)
        n.say("Three ordinary users exist (alice, bob, carol) and a docker group:")
        n.run("getent passwd alice bob carol; getent group docker",
              shown="getent passwd alice bob carol; getent group docker")
        box.copy_in(deb, f"/root/{deb.name}")
        print(f"$ apt install -y ./{deb.name}", flush=True)
        out = install_deb(box, deb).stdout.splitlines()
        for line in [ln for ln in out if ln.startswith(("Setting up jitaccess", "Created",
                                                        "The following NEW"))][:6]:
            print(f"  {line}")
        print(flush=True)
        n.say("""hostd is socket-activated: only its socket listens until the first
            client connects; jit-reconcile.service runs at every boot, before logins.""")
        n.run("systemctl is-active jit-hostd.socket jit-hostd.service; "
              "systemctl is-enabled jit-reconcile.service", check=False,
              shown="systemctl is-active jit-hostd.socket jit-hostd.service; "
                    "systemctl is-enabled jit-reconcile.service")
        box.run(["systemctl", "is-active", "--quiet", "jit-hostd.socket"])  # must listen
        grant_flow(n, args.grant_seconds)
        if not args.skip_request:
            request_flow(n)
        sudo_flow(n)
        record_flow(n)
        login_flow(n)
        session_end_flow(n)
        revocation_flow(n)
        audit_flow(n)
        n.section("Done")
        n.say(f"The container is powered off and deleted now (demo took "
              f"{time.monotonic() - started:.0f} s).")
        return 0
    except Exception as exc:  # any failure ends the demo non-zero
        return failed(n, exc)
    finally:
        box.close()


if __name__ == "__main__":
    sys.exit(main())
