"""Protocol-frame fuzzer against a real jit-hostd in a sandbox root (must run as root).

Valid request frames of every client operation are mutated (fields, types, values, odd
JSON, lone surrogates, byte flips, oversized lines, missing newlines, split writes,
pipelined lines) and sent over persistent connections as root, as alice (a requester)
and as bob (an approver); each unprivileged worker is a forked child with its uid set.

Findings:
- internal: an answer with code `internal` (a bug in hostd);
- died: the daemon exited;
- hang: a frame that got neither an answer nor a close within the idle timeout (+slack);
- bad answer: anything but one JSON object per line with a boolean `ok`;
- unhandled: a traceback in hostd's log not accounted for by an `internal` answer.

The daemon's limits are respected, not tripped by the fuzzer itself: at most a few
connections per uid (cap 16), lines over 64 KiB only as deliberate cases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import select
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from sandbox import USERS, Sandbox  # noqa: E402

IDLE_TIMEOUT = 10.0  # hostd's (server.py); a frame's answer must come well within it
SLACK = 5.0
MAX_LINE = 64 * 1024
MAX_DANGLING = 2  # per worker, with 1 persistent connection: far below 16 per uid

POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host"]
requesters = ["%developers"]
approvers = ["%sre"]
approvals = 1

[roles.breakglass]
groups = ["adm"]
max_ttl = "30m"
issuers = ["host"]
requesters = ["alice"]
approvals = 0

[requests]
ttl = "1h"

[daemon]
sweep_interval = "1s"
"""

PLANNED = ["sudo.check", "sudo.wait", "pam.account", "pam.open_session", "record.open"]
OPS = ["status", "grant.list", "grant.activate", "grant.revoke", "grant.expire",
       "access.request", "access.list", "access.approve", "access.deny", "access.wait"]
STRINGS = ["", "x", "docker", "breakglass", "ops", "nope", "alice", "root", "0123456789ab",
           "abcdefgh", "x\udc80", "\ud800", "\udfff\ud800", "😀", "café", "a\x00b", "a\nb",
           "\u202e", "\ufeff", "../../etc/shadow", "%sre", " docker", "docker ", "DOCKER",
           "x" * 64, "x" * 65, "r" * 1024, "r" * 1025, "t" * 256, "t" * 257, "\t\r",
           "status", "v", "op", "1"]
NUMBERS = [0, 1, -1, 60, 299, 300, 301, 3600, 86400, 2**31, 2**31 - 1, 2**53, 2**63,
           -(2**63), 2**64, 10**30, 1.0, 0.5, -0.0, 1e300]


@dataclass
class Seeds:
    """What the fuzzer knows of the host: tokens and ids to put in valid frames."""

    tokens: list[str]
    grant_ids: list[str]
    pending: list[str]  # carol's, not a worker's: access.wait on it never blocks
    decided: list[str]

    def frames(self) -> list[dict]:
        r = random.Random(0)
        tok = self.tokens
        return [
            {"v": 1, "op": "status"},
            {"v": 1, "op": "grant.list"},
            {"v": 1, "op": "grant.list", "all": True},
            {"v": 1, "op": "grant.list", "all": False},
            *({"v": 1, "op": "grant.activate", "token": t} for t in tok),
            *({"v": 1, "op": "grant.revoke", "id": g, "reason": "fuzz"} for g in self.grant_ids),
            {"v": 1, "op": "grant.revoke", "id": "0123456789ab"},
            {"v": 1, "op": "grant.expire", "id": r.choice(self.grant_ids)},
            {"v": 1, "op": "access.request", "role": "docker", "duration": 3600,
             "reason": "fuzz", "ticket": "OPS-1"},
            {"v": 1, "op": "access.request", "role": "breakglass", "duration": 600,
             "reason": "fuzz"},
            {"v": 1, "op": "access.list"},
            *({"v": 1, "op": "access.list", "id": i} for i in self.pending + self.decided),
            *({"v": 1, "op": "access.approve", "id": i, "comment": "ok"} for i in self.pending),
            *({"v": 1, "op": "access.deny", "id": i, "reason": "no"} for i in self.pending),
            *({"v": 1, "op": "access.wait", "id": i, "timeout": 1} for i in self.decided),
            {"v": 1, "op": "access.wait", "id": "abcdefgh", "timeout": 1},
        ]


def odd_value(rng: random.Random, depth: int = 0) -> object:
    pick = rng.randrange(8)
    if pick < 3:
        return rng.choice(STRINGS)
    if pick < 5:
        return rng.choice(NUMBERS)
    if pick == 5 and depth < 3:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    if pick == 6 and depth < 3:
        return {rng.choice(STRINGS): odd_value(rng, depth + 1) for _ in range(rng.randrange(3))}
    return rng.choice([None, True, False, [], {}])


def encode(obj: object) -> bytes:
    """JSON as hostd's own client writes it (surrogates escaped as \\udc80)."""
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


@dataclass
class Frame:
    kind: str
    data: bytes
    lines: int  # newline-ended lines in data: answers owed unless hostd closes
    mode: str = "persistent"  # persistent | split | halfclose | dangling


class Mutator:
    def __init__(self, rng: random.Random, seeds: list[dict], ids: list[str]) -> None:
        self.rng = rng
        self.seeds = seeds
        self.ids = ids

    def next(self) -> Frame:
        rng = self.rng
        pick = rng.randrange(100)
        seed = dict(rng.choice(self.seeds))
        if pick < 8:
            return Frame("valid", encode(seed), 1)
        if pick < 38:
            self.mutate_fields(seed)
            return Frame("fields", encode(seed), 1)
        if pick < 55:
            return self.odd_json(seed)
        if pick < 72:
            return self.bytes_mutation(encode(seed))
        if pick < 82:
            data = encode(seed) if rng.random() < 0.5 else self.odd_json(seed).data
            return Frame("split", data, data.count(b"\n"), "split")
        if pick < 90:
            frames = [encode(dict(rng.choice(self.seeds))) for _ in range(rng.randrange(2, 5))]
            if rng.random() < 0.5:
                frames.insert(rng.randrange(len(frames)), b"\n")
            data = b"".join(frames)
            return Frame("pipelined", data, data.count(b"\n"))
        if pick < 95:
            return Frame("no-newline", encode(seed)[:-1], 0, "halfclose")
        if pick < 97:
            return self.oversized(seed)
        data = encode(seed)
        return Frame("halfclose-after-line", data, 1, "halfclose")

    def mutate_fields(self, msg: dict) -> None:
        rng = self.rng
        for _ in range(rng.randrange(1, 4)):
            keys = [k for k in msg if k not in ("v", "op")]
            action = rng.randrange(10)
            if action == 0 and keys:
                del msg[rng.choice(keys)]
            elif action == 1:
                msg[rng.choice(["user", "uid", "as", "id", "token", "role", "duration",
                                "reason", "ticket", "comment", "all", "timeout", "ID",
                                "\uff49\uff44", "id\u200b", "\udc80", ""])] = odd_value(rng)
            elif action in (2, 3) and keys:
                msg[rng.choice(keys)] = odd_value(rng)
            elif action == 4:
                msg["v"] = rng.choice([0, 2, "1", True, 1.0, None, [1], -1, 2**64])
            elif action == 5:
                msg.pop("v", None) if rng.random() < 0.3 else msg.update(
                    op=rng.choice([*PLANNED, *OPS, "", "STATUS", "status\n", "status ",
                                   None, 5, ["status"], "grant", "access.*", "\udc80"]))
            elif action == 6 and keys:
                msg[rng.choice(keys)] = rng.choice(self.ids)
            elif action == 7 and keys:
                key = rng.choice(keys)
                if isinstance(msg[key], str):
                    msg[key] = msg[key] + rng.choice(["\udc80", "\ud800", "\n", "\x00", "é"])
            elif action == 8:
                msg["op"] = rng.choice(OPS)
            else:
                msg[rng.choice(keys or ["id"])] = "x" * rng.choice(
                    [63, 64, 65, 1023, 1024, 1025, 16 * 1024 + 64, 16 * 1024 + 65, 40000])

    def odd_json(self, msg: dict) -> Frame:
        rng = self.rng
        body = json.dumps(msg, separators=(",", ":"))[:-1]
        key = rng.choice(["duration", "timeout", "id", "reason", "all", "x", "v", "op"])
        depth = rng.randrange(100, 20000)
        value = rng.choice([
            "[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
            "9" * rng.randrange(4200, 4400), "-" + "9" * 5000, "NaN", "Infinity",
            "-Infinity", "1e400", "-1e400", "1.5", "1E2", "0.0", '"\\udc80"', '"\\ud800x"',
            '"x\\udfff"', '"\\ud83d\\ude00"', '"\\u0000"', "true", "null", "[]", "{}",
            '"' + "\\u0041" * 3000 + '"',
        ])
        if rng.random() < 0.15:
            text = rng.choice(["[" * depth + "]" * depth, "9" * 5000, "NaN", "[]", '"s"',
                               "null", "", " ", "{", "}{", '{"v":1,"op":"status"}{}'])
        else:
            text = body + ("," if len(msg) else "") + f'"{key}":{value}' + "}"
        data = text.encode("utf-8", "surrogatepass")
        wrap = rng.randrange(12)
        if wrap == 0:
            data = b"\xef\xbb\xbf" + data
        elif wrap == 1:
            data = data + rng.choice([b" ", b"\r", b"\t", b" x", b"\x00"])
        elif wrap == 2:
            data = b" \t" + data
        elif wrap == 3:
            data = data.replace(b"status", b"st\xedatus", 1).replace(b"fuzz", b"f\xe9zz", 1)
        elif wrap == 4:
            data = data.replace(b'"op"', b'"op":"status","op"', 1)  # duplicate key
        elif wrap == 5:
            data = data.replace(b"fuzz", b"\xed\xb2\x80", 1)  # a surrogate in raw UTF-8
        line = data[:MAX_LINE - 1] + b"\n" if len(data) >= MAX_LINE else data + b"\n"
        return Frame("odd-json", line, 1)

    def bytes_mutation(self, data: bytes) -> Frame:
        rng = self.rng
        buf = bytearray(data[:-1])
        for _ in range(rng.randrange(1, 5)):
            pos = rng.randrange(len(buf) + 1)
            action = rng.randrange(6)
            if action == 0 and pos < len(buf):
                buf[pos] ^= 1 << rng.randrange(8)
            elif action == 1:
                buf.insert(pos, rng.randrange(256))
            elif action == 2 and pos < len(buf):
                del buf[pos]
            elif action == 3:
                del buf[pos:]
            elif action == 4:
                buf[pos:pos] = rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\\u",
                                           b'"', b"{", b"}", b"\x00", b"\r", b"\\"])
            else:
                buf[pos:pos] = bytes(buf[pos:pos + rng.randrange(1, 20)])
        body = bytes(buf).replace(b"\n", b" ")
        return Frame("bytes", body + b"\n", 1)

    def oversized(self, msg: dict) -> Frame:
        rng = self.rng
        size = rng.choice([MAX_LINE - 2, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2,
                           MAX_LINE * 2, MAX_LINE * 4])
        body = json.dumps(msg, separators=(",", ":"))[:-1] + ',"reason":"'
        pad = max(0, size - len(body) - 3)
        data = (body + "r" * pad + '"}').encode() + b"\n"
        return Frame("oversized", data, 1)


# one worker: a uid with its connections --------------------------------------------------

@dataclass
class Tally:
    frames: int = 0
    answers: int = 0
    closed_early: int = 0
    reconnects: int = 0
    codes: Counter = field(default_factory=Counter)
    findings: list[dict] = field(default_factory=list)

    def find(self, kind: str, frame: Frame | None, detail: str) -> None:
        data = frame.data if frame else b""
        self.findings.append({
            "kind": kind, "mutation": frame.kind if frame else "", "detail": detail[:500],
            "frame": repr(data[:600]) + (f"...({len(data)} bytes)" if len(data) > 600 else ""),
        })


class Worker:
    def __init__(self, path: str, user: str, tally: Tally) -> None:
        self.path = path
        self.user = user
        self.t = tally
        self.sock: socket.socket | None = None
        self.dangling: list[tuple[socket.socket, float, Frame]] = []

    def connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.path)
        return s

    def persistent(self) -> socket.socket:
        if self.sock is None:
            self.sock = self.connect()
            self.t.reconnects += 1
        return self.sock

    def drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def read_answers(self, sock: socket.socket, owed: int, frame: Frame) -> tuple[int, bool]:
        """Read `owed` answer lines: (answers read, whether hostd closed the connection)."""
        buf = b""
        got = 0
        deadline = time.monotonic() + IDLE_TIMEOUT + SLACK
        while got < owed or (owed == 0 and frame.mode == "halfclose"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.t.find("hang", frame, f"{got}/{owed} answers and no close after "
                                           f"{IDLE_TIMEOUT + SLACK:.0f} s")
                return got, True
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                if buf:
                    self.t.find("bad answer", frame, f"answer cut short: {buf[:300]!r}")
                return got, True
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                got += 1
                self.judge(line, frame)
        if buf:
            self.t.find("bad answer", frame, f"bytes after the answers: {buf[:300]!r}")
        return got, False

    def judge(self, line: bytes, frame: Frame) -> None:
        self.t.answers += 1
        try:
            answer = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            self.t.find("bad answer", frame, f"not JSON: {line[:300]!r}")
            return
        if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
            self.t.find("bad answer", frame, f"no boolean ok: {line[:300]!r}")
            return
        code = answer.get("code")
        self.t.codes[str(code)] += 1
        if code == "internal":
            self.t.find("internal", frame, line[:300].decode("utf-8", "replace"))

    def send(self, sock: socket.socket, frame: Frame, rng: random.Random) -> None:
        if frame.mode != "split":
            sock.sendall(frame.data)
            return
        cuts = sorted(rng.sample(range(1, len(frame.data)), min(len(frame.data) - 1,
                                                                  rng.randrange(1, 5))))
        for a, b in zip([0, *cuts], [*cuts, len(frame.data)], strict=True):
            sock.sendall(frame.data[a:b])
            time.sleep(rng.choice([0, 0, 0.0005, 0.002]))

    def one(self, frame: Frame, rng: random.Random) -> None:
        self.t.frames += 1
        if frame.mode == "halfclose":
            with self.connect() as s:
                s.sendall(frame.data)
                s.shutdown(socket.SHUT_WR)
                self.read_answers(s, frame.lines, frame)
            return
        for attempt in (1, 2):
            reused = self.sock is not None
            sock = self.persistent()
            try:
                self.send(sock, frame, rng)
            except (BrokenPipeError, ConnectionResetError):
                pass  # hostd stopped reading (too_large): its answer may still be there
            got, closed = self.read_answers(sock, frame.lines, frame)
            if closed or len(frame.data) > MAX_LINE:
                self.drop()
            if got or not closed or not reused or attempt == 2:
                break  # else: hostd had closed the reused connection (idle): send again
        if got < frame.lines:
            self.t.closed_early += 1

    def open_dangling(self, frame: Frame) -> None:
        """A partial line never finished: hostd must close it after its idle timeout."""
        s = self.connect()
        s.sendall(frame.data)
        self.dangling.append((s, time.monotonic(), frame))
        self.t.frames += 1

    def reap_dangling(self, wait: bool) -> None:
        keep = []
        for s, opened, frame in self.dangling:
            deadline = opened + IDLE_TIMEOUT + SLACK
            timeout = max(0.0, deadline - time.monotonic()) if wait else 0.0
            ready, _, _ = select.select([s], [], [], timeout)
            if ready:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:  # an answer to an unfinished line: must still be one JSON line
                    for line in data.split(b"\n")[:-1]:
                        self.judge(line, frame)
                s.close()
            elif time.monotonic() >= deadline:
                self.t.find("hang", frame, "a partial line was not closed within the idle "
                                           "timeout")
                s.close()
            else:
                keep.append((s, opened, frame))
        self.dangling = keep

    def run(self, mutator: Mutator, frames: int, rng: random.Random) -> None:
        self.open_dangling(Frame("dangling", b'{"v":1,"op":"sta', 0, "dangling"))
        sent = 1
        while sent < frames:
            frame = mutator.next()
            if rng.random() < 0.0002 and len(self.dangling) < MAX_DANGLING:
                self.open_dangling(Frame("dangling", frame.data[:-1], 0, "dangling"))
            else:
                try:
                    self.one(frame, rng)
                except (ConnectionRefusedError, FileNotFoundError) as exc:
                    self.t.find("died", frame, f"cannot connect: {exc}")
                    return
            sent += 1
            if sent % 500 == 0:
                self.reap_dangling(wait=False)
        self.drop()
        self.reap_dangling(wait=True)


def run_worker(path: str, user: str, seeds: list[dict], ids: list[str], frames: int,
               seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    Worker(path, user, tally).run(Mutator(rng, seeds, ids), frames, rng)
    return tally


def fork_worker(path: str, user: str, seeds: list[dict], ids: list[str], frames: int,
                seed: int) -> tuple[int, int]:
    """A child under the user's uid; its tally comes back as JSON on a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 0
        try:
            uid = USERS[user]
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            t = run_worker(path, user, seeds, ids, frames, seed)
            out = json.dumps({**t.__dict__, "codes": dict(t.codes)}).encode()
        except BaseException as exc:  # report whatever stopped the child
            out = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
            code = 1
        with os.fdopen(w, "wb") as fh:
            fh.write(out)
        os._exit(code)
    os.close(w)
    return pid, r


def collect(pid: int, fd: int) -> Tally:
    with os.fdopen(fd, "rb") as fh:
        data = json.loads(fh.read() or b'{"error": "no report"}')
    os.waitpid(pid, 0)
    if "error" in data:
        t = Tally()
        t.find("worker", None, data["error"])
        return t
    t = Tally(**{k: v for k, v in data.items() if k not in ("codes", "findings")})
    t.codes = Counter(data["codes"])
    t.findings = data["findings"]
    return t


# the run --------------------------------------------------------------------------------

def prepare(box: Sandbox) -> Seeds:
    """Real state to aim at: grants, a pending and a decided request, unused tokens."""
    tokens = [box.issue("alice"), box.issue("bob"), box.issue("alice", duration="5m")]
    activated = box.issue("alice")
    rc, out = box.jit_json("activate", activated, user="alice")
    assert rc == 0, out
    grant_ids = [out["grant"]["id"]]
    rc, out = box.jit_json("activate", box.issue("carol"), user="carol")
    assert rc == 0, out
    grant_ids.append(out["grant"]["id"])
    requests = []  # carol's: no worker may wait on them, so access.wait never blocks
    for _ in range(2):
        rc, out = box.jit_json("request", "docker", "--for", "1h", "--reason", "seed",
                               user="carol")
        assert rc == 0, out
        requests.append(out["request"]["id"])
    rc, out = box.jit_json("deny", requests[1], "--reason", "seed", user="bob")
    assert rc == 0, out
    return Seeds([*tokens, activated], grant_ids, [requests[0]], [requests[1]])


@dataclass
class Result:
    frames: int
    seconds: float
    tally: Tally
    died: bool
    unhandled: int
    causes: Counter = field(default_factory=Counter)  # last lines of hostd's tracebacks

    def count(self, *kinds: str) -> int:
        return sum(f["kind"] in kinds for f in self.tally.findings)

    @property
    def findings(self) -> int:
        return len(self.tally.findings) + self.died + (self.unhandled > 0)

    def summary(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        return (f"fuzz_protocol: {self.frames} frames, {rate:.0f}/s, "
                f"{self.count('internal')} crashes/internal, "
                f"{int(self.died) + self.count('died')} deaths, {self.count('hang')} hangs, "
                f"{self.count('bad answer')} bad answers, {self.unhandled} unhandled "
                f"tracebacks, {self.count('worker')} worker errors")


def run(frames: int, seed: int) -> Result:
    if os.geteuid() != 0:
        raise SystemExit("fuzz_protocol: run as root (real daemon, real uids)")
    box = Sandbox(POLICY)
    try:
        box.start()
        seeds = prepare(box)
        frame_list = seeds.frames()
        ids = seeds.grant_ids + seeds.pending + seeds.decided + ["0123456789ab", "abcdefgh"]
        path = str(box.socket_path)
        share = frames // 3
        start = time.monotonic()
        children = [fork_worker(path, user, frame_list, ids, share, seed + n)
                    for n, user in enumerate(("alice", "bob"), start=1)]
        tally = run_worker(path, "root", frame_list, ids, frames - 2 * share, seed)
        for pid, fd in children:
            other = collect(pid, fd)
            tally.frames += other.frames
            tally.answers += other.answers
            tally.closed_early += other.closed_early
            tally.reconnects += other.reconnects
            tally.codes.update(other.codes)
            tally.findings.extend(other.findings)
        seconds = time.monotonic() - start
        died = box.proc is None or box.proc.poll() is not None
        log = box.hostd_log()
        unhandled = max(0, log.count("Traceback") - tally.codes.get("internal", 0))
        return Result(tally.frames, seconds, tally, died, unhandled, causes(log))
    finally:
        box.cleanup()


def causes(log: str) -> Counter:
    """The exception line ending each traceback in hostd's log, numbers and text cut."""
    found: Counter = Counter()
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            j = i + 1
            while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
                j += 1
            if j < len(lines):
                found[re.sub(r"\d+", "N", lines[j])[:120]] += 1
    return found


def report(result: Result, limit: int = 12) -> None:
    print(result.summary())
    t = result.tally
    print(f"  answers {t.answers}, closed by hostd before answering {t.closed_early}, "
          f"connections {t.reconnects}; codes: "
          + ", ".join(f"{c} {n}" for c, n in t.codes.most_common()))
    for cause, n in result.causes.most_common():
        print(f"  hostd traceback x{n}: {cause}")
    seen: set[tuple[str, str, str, str]] = set()
    shown = 0
    rarest_first = ("died", "hang", "bad answer", "worker", "internal")
    for f in sorted(t.findings, key=lambda f: rarest_first.index(f["kind"])):
        key = (f["kind"], f["mutation"], f["detail"][:60], f["frame"][:25])
        if key in seen or shown >= limit:
            continue
        seen.add(key)
        shown += 1
        print(f"- {f['kind']} ({f['mutation']}): {f['detail']}\n  frame: {f['frame']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=None, help="default: random, printed")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"fuzz_protocol: seed {seed}", file=sys.stderr)
    result = run(args.frames, seed)
    report(result)
    return 1 if result.findings else 0


if __name__ == "__main__":
    sys.exit(main())
