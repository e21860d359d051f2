"""A sandbox root with a real jit-hostd: real socket, real `gpasswd -Q`, real uids.

The daemon runs as root with `--root DIR`; the CLI runs under the users' own uids via
setpriv, so SO_PEERCRED carries a real identity. The hostd package is copied into the
sandbox so unprivileged callers can import it wherever the checkout lives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]

# The policy most integration tests run under.
POLICY = """
[roles.docker]
groups = ["docker"]
max_ttl = "4h"
issuers = ["corp", "host"]

[roles.ops]
groups = ["docker", "adm"]
max_ttl = "1h"
issuers = ["corp"]

[daemon]
sweep_interval = "1s"
"""

USERS = {"root": 0, "alice": 1001, "bob": 1002, "carol": 1003}


class Sandbox:
    def __init__(self, policy: str, extra_groups: dict[str, list[str]] | None = None, *,
                 idle_timeout: float | None = None) -> None:
        """`idle_timeout`: hostd's for quick calls instead of its 10 s (a test knob,
        hostd/state/sandbox.py)."""
        # short path: AF_UNIX socket paths are limited to 108 bytes
        self.root = Path(tempfile.mkdtemp(prefix="jit-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.lib = self.root / "lib"
        shutil.copytree(REPO / "hostd", self.lib / "hostd",
                        ignore=shutil.ignore_patterns("__pycache__"))
        for dirpath, _dirnames, filenames in os.walk(self.lib):
            os.chmod(dirpath, 0o755)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o644)
        etc = self.root / "etc"
        (etc / "jit" / "issuers.d").mkdir(parents=True)
        (etc / "jit" / "keys").mkdir()
        passwd = "".join(f"{u}:x:{uid}:{uid}:{u}:/:/bin/sh\n" for u, uid in USERS.items())
        groups = {u: (uid, []) for u, uid in USERS.items()}
        groups["docker"] = (999, [])
        groups["adm"] = (4, [])
        groups["developers"] = (2000, ["alice", "carol"])
        groups["sre"] = (2001, ["bob", "carol"])
        for name, members in (extra_groups or {}).items():
            gid = groups.get(name, (3000 + len(groups), []))[0]
            groups[name] = (gid, members)
        (etc / "passwd").write_text(passwd)
        (etc / "group").write_text("".join(f"{g}:x:{gid}:{','.join(m)}\n"
                                           for g, (gid, m) in groups.items()))
        (etc / "gshadow").write_text("".join(f"{g}:!::{','.join(m)}\n"
                                             for g, (_, m) in groups.items()))
        os.chmod(etc / "gshadow", 0o640)
        (etc / "hostname").write_text("testhost\n")
        (etc / "machine-id").write_text("0123456789abcdef0123456789abcdef\n")
        self.key = etc / "jit" / "keys" / "corp.key"
        self.jit("keygen", "--out", str(self.key), check=True)
        (etc / "jit" / "issuers.d" / "corp.toml").write_text(
            'name = "corp"\npublic_keys = ["/etc/jit/keys/corp.key.pub"]\n'
            'algorithms = ["EdDSA"]\n')
        (etc / "jit" / "jit.toml").write_text(policy)
        self.knobs: dict[str, float] = {"clock_offset": 0.0}
        if idle_timeout is not None:
            self.knobs["idle_timeout"] = idle_timeout
        self._write_knobs()
        self.proc: subprocess.Popen | None = None

    # test knobs (hostd/state/sandbox.py: read only under --root) --------------------------

    def _write_knobs(self) -> None:
        path = self.root / "etc" / "jit" / "test-knobs.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.knobs))
        tmp.replace(path)  # a new file: hostd sees a new mtime and reads it whole

    def advance_clock(self, seconds: float) -> None:
        """Move hostd's clock forward, running or not (grants expire, listings change)
        without waiting in real seconds."""
        self.knobs["clock_offset"] += seconds
        self._write_knobs()

    def now(self) -> float:
        """hostd's clock: the wall clock plus what advance_clock added."""
        return time.time() + self.knobs["clock_offset"]

    # processes --------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "JIT_ROOT": str(self.root),
                "PYTHONPATH": str(self.lib), "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}

    @property
    def socket_path(self) -> Path:
        return self.root / "run" / "jit" / "hostd.sock"

    def start(self) -> None:
        self.log = open(self.root / "hostd.log", "ab")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "hostd", "--root", str(self.root), "--foreground"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("hostd exited: " + self.hostd_log())
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(self.socket_path))
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("hostd did not start: " + self.hostd_log())

    def send_webhooks(self) -> subprocess.CompletedProcess:
        """What jit-webhook.service does when its path unit fires: post the notices
        hostd queued in DIR/var/lib/jit/webhook/queue, then exit."""
        return subprocess.run([PYTHON, "-m", "hostd", "--root", str(self.root),
                               "--webhook-send"], env=self.env, capture_output=True,
                              text=True, timeout=120, cwd=self.root)

    @property
    def webhook_queue(self) -> Path:
        return self.root / "var" / "lib" / "jit" / "webhook" / "queue"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def hostd_log(self) -> str:
        p = self.root / "hostd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # the CLI ----------------------------------------------------------------------------

    def jit(self, *args: str, user: str = "root", check: bool = False,
            stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = [PYTHON, "-m", "hostd.cli", *args]
        if user != "root":
            uid = USERS[user]
            cmd = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *cmd]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60,
                              check=check, input=stdin, cwd=self.root)

    def jit_json(self, *args: str, user: str = "root") -> tuple[int, dict]:
        r = self.jit(*args, "--json", user=user)
        return r.returncode, json.loads(r.stdout)

    def issue(self, user: str, role: str = "docker", duration: str = "1h", **kw: str) -> str:
        args = ["issue", "--key", str(self.key), "--issuer", "corp", "--user", user,
                "--role", role, "--for", duration, "--hosts", kw.pop("hosts", "testhost")]
        for k, v in kw.items():
            args += [f"--{k.replace('_', '-')}", v]
        return self.jit(*args, check=True).stdout.strip()

    # reading state ----------------------------------------------------------------------

    def members(self, group: str, file: str = "group") -> list[str]:
        for line in (self.root / "etc" / file).read_text().splitlines():
            f = line.split(":")
            if f[0] == group:
                return [m for m in f[3].split(",") if m]
        raise KeyError(group)

    def events(self, event: str | None = None) -> list[dict]:
        path = self.root / "var" / "log" / "jit" / "events.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        return [r for r in rows if event is None or r["JIT_EVENT"] == event]

    def wait_for(self, predicate, timeout: float = 10.0, interval: float = 0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval)
        return predicate()
