"""Crash consistency: kill -9 a sandbox jit-hostd, gpasswd and all, at random points of
activate, revoke, expire, approve and break-glass, restart it, and check what its
reconcile left:

- orphaned: a user in a group with no live grant for it who was not a member at the start;
- lost: a grant whose activation the client saw answered ok that is neither active with
  its memberships in place nor ended by expiry (exp passed) or by a revoke we sent;
- undone: a revoke or expiry the client saw answered ok whose grant is active again;
- standing: a member at the start (bob in docker) no longer listed in group or gshadow;
- disagree: a user listed in one of group and gshadow but not the other.

The daemon runs in its own session so one killpg takes gpasswd with it, as systemd does
with the cgroup. One sandbox for the whole run; the daemon is restarted each iteration.
Every iteration ends by revoking what is left, so the next starts from the baseline.

    /usr/bin/python3 tests/crash/crash.py --iterations 500 [--seed N] [--max-delay MS]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
for p in (REPO, REPO / "tests" / "integration"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from sandbox import PYTHON, USERS, Sandbox  # noqa: E402

from hostd.policy.grants import issue  # noqa: E402
from hostd.policy.keys import load_private  # noqa: E402
from hostd.protocol import encode, request  # noqa: E402

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp"]

[roles.ops]
groups = ["docker", "adm"]
max_ttl = "4h"
issuers = ["corp"]

[roles.deploy]
groups = ["docker"]
max_ttl = "4h"
issuers = ["host"]
requesters = ["%developers"]
approvers = ["%sre"]
approvals = 1

[roles.breakglass]
groups = ["adm", "docker"]
max_ttl = "1h"
issuers = ["host"]
requesters = ["%developers"]
approvals = 0

[requests]
ttl = "3s"  # what the kills leave pending expires soon (5 pending at most per user)

[daemon]
sweep_interval = "1s"
"""

PHASES = ("activate", "revoke", "expire", "approve", "breakglass")
GROUPS = ("docker", "adm")
SUBJECTS = ("alice", "carol")  # developers: may request; carol also approves (sre)
APPROVER = "bob"  # sre, and a standing member of docker
STANDING = {("bob", "docker")}
HOUR = 3600
PR_SET_CHILD_SUBREAPER = 36


class CrashBox(Sandbox):
    """The integration sandbox, its daemon in a session of its own (killpg takes gpasswd)."""

    def start(self) -> None:
        if getattr(self, "log", None) is not None:
            self.log.close()
        self.log = open(self.root / "hostd.log", "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "hostd", "--root", str(self.root), "--foreground"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root,
            start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hostd exited: " + self.hostd_log()[-2000:])
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(0.01)
        raise RuntimeError("hostd did not start: " + self.hostd_log()[-2000:])

    def kill_all(self) -> None:
        """SIGKILL to the daemon's whole process group, hostd and any gpasswd it runs, and
        reap them all before a restart, as systemd empties the cgroup: we are the
        subreaper (see `crash`), so an orphaned gpasswd comes to us. Until it is reaped
        its pid is alive, and its lock file would look held."""
        assert self.proc is not None
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-1, os.WNOHANG)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.001)
        raise RuntimeError(f"process group {pgid} still there 10 s after SIGKILL")

    def stop(self) -> None:
        if self.proc is not None:
            self.kill_all()
        if getattr(self, "log", None) is not None:
            self.log.close()
            self.log = None


# --- talking to hostd as a given user -----------------------------------------------------


def connect(box: Sandbox, user: str) -> socket.socket:
    """A connection whose SO_PEERCRED is `user`'s: a forked child with that uid connects
    the socket both processes share, then exits."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    uid = USERS[user]
    if uid == 0:
        s.connect(str(box.socket_path))
        return s
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            s.connect(str(box.socket_path))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        s.close()
        raise ConnectionError(f"could not connect as {user}")
    return s


def send(box: Sandbox, user: str, op: str, **fields: object) -> socket.socket:
    s = connect(box, user)
    s.sendall(encode(request(op, **fields)))
    return s


def answer(s: socket.socket) -> dict | None:
    """The answer, or None if hostd died before writing all of it."""
    buf = bytearray()
    try:
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    finally:
        s.close()
    try:
        return json.loads(buf) if buf.endswith(b"\n") else None
    except json.JSONDecodeError:
        return None


def call(box: Sandbox, user: str, op: str, **fields: object) -> dict:
    reply = answer(send(box, user, op, **fields))
    if reply is None:
        raise RuntimeError(f"{op} as {user}: no answer\n" + box.hostd_log()[-2000:])
    return reply


# --- one iteration --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the client saw: grants whose activation was answered ok, grants whose ending
    was answered ok, grants we asked to revoke."""
    acked: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    revoke_sent: set[str] = field(default_factory=set)
    due: int = 0  # the latest exp of a short grant: wait until it has passed


class Run:
    def __init__(self, box: CrashBox, rng: random.Random, max_delay: float) -> None:
        self.box = box
        self.rng = rng
        self.max_delay = max_delay
        self.corp = load_private(box.key)
        self.kills: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()
        self.seen: Counter[str] = Counter()  # what the kills left for reconcile to mend
        self.stuck: set[str] = set()  # requests counted in `seen` already
        self.examples: list[str] = []
        self.n = 0
        self.baseline = self.files()

    # the pieces ----------------------------------------------------------------------------

    def token(self, user: str, role: str, exp: int) -> str:
        now = int(time.time())
        return issue(self.corp, "corp", user, role, now - 5, exp, ["testhost"], now - 5,
                     reason="crash test")

    def activate(self, user: str, role: str, exp: int) -> str:
        reply = call(self.box, "root", "grant.activate", token=self.token(user, role, exp))
        assert reply["ok"], reply
        return reply["grant"]["id"]

    def kill_after(self, s: socket.socket, phase: str) -> dict | None:
        """The crash: a random pause after the request went out, then SIGKILL to all. Every
        other kill instead waits (as long) for hostd to start a gpasswd and lands a random
        0-3 ms into it: a plain random pause rarely hits the moment between gpasswd's
        writes of group and gshadow."""
        if self.rng.random() < 0.5:
            time.sleep(self.rng.uniform(0, self.max_delay))
            self.kills["timed"] += 1
        elif self.wait_for_gpasswd(time.monotonic() + self.max_delay):
            time.sleep(self.rng.uniform(0, 0.003))
            self.kills["in gpasswd"] += 1
        else:
            self.kills["no gpasswd ran"] += 1
        self.box.kill_all()
        self.kills[phase] += 1
        self.look_after_kill()
        reply = answer(s)
        if reply is not None:
            self.answered[phase] += 1
        return reply

    def wait_for_gpasswd(self, deadline: float) -> bool:
        """True once hostd has a child process (it runs nothing but gpasswd), started by
        any of its threads (the ordered worker runs gpasswd, not the main thread)."""
        assert self.box.proc is not None
        tasks = Path(f"/proc/{self.box.proc.pid}/task")
        while time.monotonic() < deadline:
            for task in tasks.iterdir():
                try:
                    if (task / "children").read_text().strip():
                        return True
                except FileNotFoundError:  # a thread that just ended
                    continue
        return False

    def look_after_kill(self) -> None:
        """Count the kills that landed inside gpasswd: files split, a lock file left."""
        files = self.files()
        if any(files["group"][g] != files["gshadow"][g] for g in GROUPS):
            self.seen["group/gshadow split by the kill"] += 1
        etc = self.box.root / "etc"
        if any((etc / f).exists() for f in ("group.lock", "gshadow.lock")):
            self.seen["lock file left by the kill"] += 1

    # the phases ----------------------------------------------------------------------------

    def phase_activate(self, user: str, out: Outcome) -> None:
        role = self.rng.choice(("docker", "ops"))
        token = self.token(user, role, int(time.time()) + HOUR)
        reply = self.kill_after(send(self.box, "root", "grant.activate", token=token),
                                "activate")
        if reply and reply["ok"]:
            out.acked.add(reply["grant"]["id"])

    def phase_revoke(self, user: str, out: Outcome) -> None:
        gid = self.activate(user, self.rng.choice(("docker", "ops")), int(time.time()) + HOUR)
        out.acked.add(gid)
        out.revoke_sent.add(gid)
        reply = self.kill_after(send(self.box, user, "grant.revoke", id=gid), "revoke")
        if reply and reply["ok"]:
            out.ended.add(gid)

    def phase_expire(self, user: str, out: Outcome) -> None:
        """A grant ending a second or so from now: at exp the in-process timer fires and we ask
        too (as the systemd timer's `jit-hostd --expire ID` does); then the kill."""
        exp = int(time.time() + 1.3)  # at least 0.3 s to activate it in
        gid = self.activate(user, self.rng.choice(("docker", "ops")), exp)
        out.acked.add(gid)
        out.due = max(out.due, exp)
        time.sleep(max(0.0, exp - time.time()))
        reply = self.kill_after(send(self.box, "root", "grant.expire", id=gid), "expire")
        if reply and reply["ok"] and reply.get("expired"):
            out.ended.add(gid)

    def phase_approve(self, user: str, out: Outcome) -> None:
        for _ in range(10):  # requests a kill left pending may still count, for 3 s
            reply = call(self.box, user, "access.request", role="deploy", duration=HOUR,
                         reason=f"crash test #{self.n}")
            if reply.get("code") != "too_many_requests":
                break
            time.sleep(0.5)
        assert reply["ok"] and reply["request"]["state"] == "pending", reply
        rid = reply["request"]["id"]
        reply = self.kill_after(send(self.box, APPROVER, "access.approve", id=rid), "approve")
        if reply and reply["ok"] and reply["request"].get("grant_id"):
            out.acked.add(reply["request"]["grant_id"])

    def phase_breakglass(self, user: str, out: Outcome) -> None:
        s = send(self.box, user, "access.request", role="breakglass", duration=HOUR,
                 reason=f"crash test #{self.n}: break-glass")
        reply = self.kill_after(s, "breakglass")
        if reply and reply["ok"] and reply["request"].get("grant_id"):
            out.acked.add(reply["request"]["grant_id"])

    # checking ------------------------------------------------------------------------------

    def files(self) -> dict[str, dict[str, set[str]]]:
        """Listed members of GROUPS in group and in gshadow."""
        return {f: {g: set(self.box.members(g, f)) for g in GROUPS}
                for f in ("group", "gshadow")}

    def grants(self) -> dict[str, dict]:
        db = sqlite3.connect(f"file:{self.box.root / 'var/lib/jit/state.db'}?mode=ro",
                             uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            rows = {r["id"]: dict(r) for r in db.execute("SELECT * FROM grants")}
        finally:
            db.close()
        for r in rows.values():
            r["groups"] = json.loads(r["groups"])
        return rows

    def violation(self, kind: str, detail: str) -> None:
        self.violations[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail}")

    def check(self, out: Outcome, when: str) -> None:
        files, grants, now = self.files(), self.grants(), time.time()
        live = {(g["user"], grp) for g in grants.values() if g["state"] == "active"
                for grp in g["groups"]}
        base = {(u, g) for g in GROUPS for u in self.baseline["group"][g]}
        for grp in GROUPS:
            in_group, in_shadow = files["group"][grp], files["gshadow"][grp]
            for user in sorted(in_group ^ in_shadow):
                self.violation("disagree", f"{when}: {user} in {grp}: group {sorted(in_group)}"
                               f" gshadow {sorted(in_shadow)}")
            for user in sorted(in_group | in_shadow):
                if (user, grp) not in base and (user, grp) not in live:
                    self.violation("orphaned", f"{when}: {user} in {grp} with no live grant")
        for user, grp in sorted(base):
            if user not in files["group"][grp] or user not in files["gshadow"][grp]:
                self.violation("standing", f"{when}: {user} lost {grp}")
        for gid in sorted(out.acked):
            self.check_acked(gid, grants.get(gid), files, out, now, when)

    def check_acked(self, gid: str, g: dict | None, files: dict, out: Outcome, now: float,
                    when: str) -> None:
        if g is None:
            self.violation("lost", f"{when}: acknowledged grant {gid} not in the store")
        elif g["state"] == "active":
            if gid in out.ended:
                self.violation("undone", f"{when}: {gid} ended (answered ok) but active")
            missing = [grp for grp in g["groups"] for f in ("group", "gshadow")
                       if g["user"] not in files[f][grp]]
            if missing:
                self.violation("lost", f"{when}: active {gid} of {g['user']} not listed in "
                                       f"{missing}")
            if g["exp"] < now - 3:  # the 1 s sweep is the backstop for a missed timer
                self.violation("lost", f"{when}: {gid} still active {now - g['exp']:.0f}s "
                                       f"after exp")
        elif g["state"] == "expired" and g["exp"] <= now:
            pass
        elif g["state"] == "revoked" and gid in out.revoke_sent:
            pass
        else:
            self.violation("lost", f"{when}: acknowledged {gid} is {g['state']} "
                                   f"(exp in {g['exp'] - now:.0f}s)")

    def clean_up(self) -> None:
        """Revoke every live grant and deny every pending request: back to the baseline."""
        made = [g for g in self.grants().values() if g["issuer"] == "host"]
        for gid, g in self.grants().items():
            if g["state"] == "active":
                call(self.box, "root", "grant.revoke", id=gid, reason="crash test clean-up")
        listed = call(self.box, "root", "access.list")
        assert listed["ok"], listed
        for req in listed["requests"]:
            if req["state"] != "pending":
                continue
            first = req["id"] not in self.stuck
            self.stuck.add(req["id"])
            if first and len(req["approvals"]) >= req["needed"]:  # the kill fell in between
                # the restart must finish what the votes decided (Requests.finish_interrupted)
                granted = any(g["reason"] == req["reason"] for g in made)
                self.violation("pending", f"request {req['id']} decided but left pending "
                               f"after the restart (grant {'made' if granted else 'not made'})")
            for approver in (APPROVER, "carol"):
                reply = call(self.box, approver, "access.deny", id=req["id"],
                             reason="clean-up")
                if reply["ok"]:
                    break
            else:  # break-glass has no approvers, bob may have approved: [requests] ttl
                self.seen["request left pending until its ttl"] += first
        if self.files() != {f: self.baseline[f] for f in ("group", "gshadow")}:
            self.violation("orphaned", f"after clean-up: {self.files()}")

    # the loop ------------------------------------------------------------------------------

    def iteration(self, n: int) -> None:
        self.n = n  # in request reasons, to tell which grant a request made
        phase = self.rng.choice(PHASES)
        user = self.rng.choice(SUBJECTS)
        out = Outcome()
        getattr(self, f"phase_{phase}")(user, out)
        self.box.start()  # reconciles before it listens
        if out.due:  # let a short grant's expiry settle before looking
            time.sleep(max(0.0, out.due + 0.3 - time.time()))
            call(self.box, "root", "status")
        self.check(out, f"#{n} {phase} {user}")
        self.clean_up()


def subreaper(on: bool) -> None:
    """Adopt our descendants' orphans (PR_SET_CHILD_SUBREAPER), as systemd does."""
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def crash(iterations: int, seed: int, max_delay_ms: float = 40.0,
          keep: bool = False) -> tuple[Run, float]:
    """Run the iterations in one sandbox; (the run's counts, seconds taken)."""
    box = CrashBox(POLICY, extra_groups={"docker": ["bob"]})
    started = time.monotonic()
    subreaper(True)
    try:
        box.start()
        run = Run(box, random.Random(seed), max_delay_ms / 1000)
        for n in range(iterations):
            run.iteration(n)
        run.seen["repaired at start (events)"] = sum(
            "repaired" in e["MESSAGE"] for e in box.events())
    finally:
        box.stop()
        subreaper(False)
        if keep:
            print(f"sandbox kept: {box.root}")
        else:
            box.cleanup()
    return run, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-delay", type=float, default=40.0, help="ms after the request")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox for a post-mortem")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("crash.py runs as root (real gpasswd, uids of the sandbox users)", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    run, seconds = crash(args.iterations, seed, args.max_delay, args.keep)
    print(report(run, args.iterations, seed, seconds))
    return 1 if sum(run.violations.values()) else 0


def report(run: Run, iterations: int, seed: int, seconds: float) -> str:
    lines = [f"iterations: {iterations}  seed: {seed}  time: {seconds:.1f}s"]
    for phase in PHASES:
        lines.append(f"  {phase:<10} kills {run.kills[phase]:>4}  answered before the kill "
                     f"{run.answered[phase]:>4}")
    lines.append("  kills: " + ", ".join(f"{m} {run.kills[m]}"
                                          for m in ("timed", "in gpasswd", "no gpasswd ran")))
    lines += [f"  {what}: {count}" for what, count in sorted(run.seen.items())]
    total = sum(run.violations.values())
    lines.append(f"violations: {total}"
                 + "".join(f"  {k}={v}" for k, v in sorted(run.violations.items())))
    lines += ["  " + line for line in run.examples]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
