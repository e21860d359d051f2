"""The sudo path of jit-record for benchmarks/recorder.sh: a sandbox hostd (as root),
a grant whose role records, `sudo.check` as the plugin asks it, then the recorder
exactly as sudo would start it (its argv from hostd's answer, the token, frames over
the socket, hostd writing the file) around `cat FILE`, output to /dev/null.

Prints the wall-clock seconds of that run and nothing else (the shell script does the
arithmetic and prints it next to script(1)'s), or exits non-zero saying why. With
`--true N`: N recorded runs of `/usr/bin/true` instead (each a sudo.check, a token, a
recording opened and closed), printing the mean milliseconds of the recorder's run.

    /usr/bin/python3 benchmarks/recorder_hostd.py FILE
    /usr/bin/python3 benchmarks/recorder_hostd.py --true N
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE.parents[1] / "tests" / "integration"))

from sandbox import POLICY, PYTHON, Sandbox  # noqa: E402

from hostd.client import Client  # noqa: E402
from hostd.protocol import request  # noqa: E402

RECORDED = POLICY + """
[roles.rec]
groups = []
max_ttl = "1h"
issuers = ["corp"]
authenticate = false
record = "always"
sudo = [ { runas = "root", commands = ["/usr/bin/cat *", "/usr/bin/true"] } ]
"""
INFO = ["user=alice", "uid=1001", "gid=1001", "cwd=/", "tty=", "pid=1", "ppid=1",
        "host=testhost"]


def recorded(box: Sandbox, argv: list[str]) -> list[str]:
    """The recorder's command line, as sudo would start it for `argv`."""
    with Client(box.socket_path, trusted=True) as client:
        answer = client.call(request("sudo.check", mode="run", settings=[], user_info=INFO,
                                     argv=argv, env=["PATH=/usr/bin:/bin"]))
    if answer.get("decision") != "allow":
        sys.exit(f"recorder_hostd.py: sudo.check said {answer}")
    return [PYTHON, "-m", "hostd.record.main", "--socket", str(box.socket_path),
            *answer["argv"][1:]]


def main() -> int:
    if os.geteuid() != 0:
        sys.exit("recorder_hostd.py: run as root (a real hostd in a sandbox root)")
    box = Sandbox(RECORDED)
    box.start()
    try:
        rc, out = box.jit_json("activate", box.issue("alice", role="rec"), user="alice")
        if rc != 0:
            sys.exit(f"recorder_hostd.py: activation failed: {out}")
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(box.lib), "LANG": "C.UTF-8"}
        if sys.argv[1] == "--true":
            runs = int(sys.argv[2])
            spent = 0.0
            for i in range(runs + 2):  # two warm-up runs (byte-compiling the sandbox copy)
                cmd = recorded(box, ["/usr/bin/true"])
                started = time.perf_counter()
                subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)
                if i >= 2:
                    spent += time.perf_counter() - started
            print(f"{spent / runs * 1000:.2f}")
            return 0
        cmd = recorded(box, ["/usr/bin/cat", os.path.abspath(sys.argv[1])])
        started = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, env=env, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"recorder_hostd.py: the recorder exited {done.returncode}")
        closed = box.wait_for(lambda: box.events("recording_closed"), timeout=60)
        if not closed:
            sys.exit("recorder_hostd.py: hostd logged no recording_closed")
        print(f"{seconds:.3f}")
        return 0
    finally:
        box.cleanup()


if __name__ == "__main__":
    sys.exit(main())
