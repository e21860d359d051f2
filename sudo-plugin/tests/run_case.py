"""Runs the sudo plugin test cases, each in a private mount namespace, under valgrind.

usage: run_case.py all | CASE...      (as root; make -C sudo-plugin builds what it needs)

For each case: `unshare -m` this script with --inside CASE, which mounts a tmpfs on /run
(in the namespace only), binds a fresh temp dir on /run/jit, starts tests/fake_hostd.py
on /run/jit/hostd.sock (as uid 1000 where the case says), runs
`valgrind tests/driver CASE jit_sudo.so` (memcheck errors or leaks fail), and checks
the requests the fake hostd received.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN = os.path.join(os.path.dirname(HERE), "jit_sudo.so")
DRIVER = os.path.join(HERE, "driver")
SOCK = "/run/jit/hostd.sock"
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by uid 1000, unlike a pyenv in /root
OTHER_UID = 1000
UNREACH = "jit: cannot reach the access daemon ({})"
DENIED = "jit: no active grant allows /usr/bin/id — ask for one"  # sent as \u2014
VALGRIND = ["valgrind", "-q", "--error-exitcode=1", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible"]

# case: (fake hostd scenario or None for no hostd, refusal text expected, ops sent)
CASES = {
    "allow": ("allow", None, ["sudo.check/run"]),
    "deny": ("deny", DENIED, ["sudo.check/run"]),
    "password": ("password", None, ["sudo.check/run", "sudo.check/run+pw"]),
    "password_wrong": ("password_wrong", "jit: 3 incorrect password attempts",
                       ["sudo.check/run"] + ["sudo.check/run+pw"] * 3),
    "pending_allow": ("pending_allow", None, ["sudo.check/run", "sudo.wait"]),
    "pending_deny": ("pending_deny", "jit: request r-1 denied by bob",
                     ["sudo.check/run", "sudo.wait"]),
    "pending_cancel": ("pending_hang", "jit: cancelled", ["sudo.check/run", "sudo.wait"]),
    "unreachable": (None, UNREACH.format("no socket /run/jit/hostd.sock"), []),
    "socket_not_root": ("socket_not_root",
                        UNREACH.format("/run/jit/hostd.sock is not a socket owned by root"), []),
    "peer_not_root": ("peer_not_root", UNREACH.format("the daemon is not running as root"), []),
    "malformed": ("malformed", UNREACH.format("malformed answer"), ["sudo.check/run"]),
    "missing_fields": ("missing_fields", UNREACH.format("malformed answer"), ["sudo.check/run"]),
    "eof": ("eof", UNREACH.format("connection closed"), ["sudo.check/run"]),
    "request_too_large": ("allow", UNREACH.format("request over 64 KiB"), []),
    "too_large": ("too_large", UNREACH.format("answer over 64 KiB"), ["sudo.check/run"]),
    "big_allow": ("big_allow", None, ["sudo.check/run"]),
    "slow": ("slow", UNREACH.format("timed out"), ["sudo.check/run"]),
    "connect_timeout": ("backlog", UNREACH.format("connect timed out"), []),
    "list": ("list", None, ["sudo.check/list"]),
    "validate": ("validate", None, ["sudo.check/validate"]),
    "invalidate": ("invalidate", None, ["sudo.check/invalidate"]),
    "validate_unreachable": (None, None, []),
    "version": (None, None, []),
    "api_major": (None, None, []),
    # the real sudo 1.9.13 loading jit_sudo.so (not under valgrind: sudo is setuid)
    "sudo_allow": ("allow", None, ["sudo.check/run"]),
    "sudo_deny": ("deny", DENIED, ["sudo.check/run"]),
    "sudo_list": ("list", None, ["sudo.check/list"]),
    "sudo_cancel": ("pending_hang", None, ["sudo.check/run", "sudo.wait"]),
}
REAL_SUDO = {
    # case: (sudo arguments, exit status, stdout, text expected on stderr)
    "sudo_allow": (["/usr/bin/id", "-u"], 0, "0\n", ""),
    "sudo_deny": (["/usr/bin/id", "-u"], 1, "", DENIED + "\n"),
    "sudo_list": (["-l", "-U", "bob", "id", "-u"], 0,
                  "alice may run as root: ALL (grant g-1, until 12:00 UTC)\n", ""),
    # Ctrl-C (SIGINT) after 1 s: sudo catches it, the shim sees EINTR
    "sudo_cancel": (["/usr/bin/id", "-u"], 1, "",
                    "waiting for approval (Ctrl-C to cancel)\njit: cancelled\n"),
}


def summary(req):
    """'op/mode' plus '+pw' when a password was sent: what a case expects to see."""
    if req["op"] != "sudo.check":
        return req["op"]
    return f"sudo.check/{req['mode']}" + ("+pw" if "password" in req else "")


def check_requests(case, reqs):
    """The requests hostd received for CASE; returns a list of problems."""
    problems = []
    if [summary(r) for r in reqs] != CASES[case][2]:
        problems.append(f"requests were {[summary(r) for r in reqs]}")
    for r in reqs:
        if r["op"] == "sudo.wait":
            if r != {"v": 1, "op": "sudo.wait", "id": "r-1"}:
                problems.append(f"bad sudo.wait {r}")
            continue
        keys = {"v", "op", "mode", "settings", "user_info", "argv", "env"}
        keys |= {"password"} & r.keys()
        if r["mode"] == "list":
            keys |= {"list_user", "list_argv"}
        if set(r) != keys or r["v"] != 1:
            problems.append(f"fields {sorted(r)}")
        if case in REAL_SUDO:
            if "user=root" not in r["user_info"] or "JIT_TEST=1" not in r["env"]:
                problems.append("user_info or env not passed")
            if r["argv"] != (["/usr/bin/id", "-u"] if r["mode"] == "run" else []):
                problems.append(f"argv {r['argv']}")
            continue
        if "user=alice" not in r["user_info"] or "progname=sudo" not in r["settings"]:
            problems.append("settings or user_info not passed unchanged")
        if "LD_PRELOAD=/tmp/evil.so" not in r["env"]:
            problems.append("env not passed unchanged")
        want_argv = ["id", "-u"] if r["mode"] == "run" else []
        if r["argv"] != want_argv:
            problems.append(f"argv {r['argv']}")
        if r["mode"] == "list" and (r["list_user"] != "bob" or r["list_argv"][-1:] != ["-u"]):
            problems.append("list_user or list_argv")
    passwords = [r["password"] for r in reqs if "password" in r]
    if case == "password" and passwords != ["secret"]:
        problems.append(f"passwords {passwords}")
    if case == "password_wrong" and passwords != ["wrong1", "wrong2", "wrong3"]:
        problems.append(f"passwords {passwords}")
    return problems


def start_hostd(case, scenario, tmp):
    cmd = [SYSTEM_PYTHON, os.path.join(HERE, "fake_hostd.py"), scenario, SOCK,
           os.path.join(tmp, "requests.log")]
    if case == "peer_not_root":
        os.chown(tmp, OTHER_UID, OTHER_UID)
        cmd = ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}",
               "--clear-groups", "--", *cmd]
    hostd = subprocess.Popen(cmd)
    for _ in range(100):
        if os.path.exists(SOCK):
            break
        time.sleep(0.05)
    else:
        hostd.kill()
        raise SystemExit("fake hostd did not start")
    if case == "peer_not_root":
        os.chown(SOCK, 0, 0)  # the file passes the owner check; the peer does not
    if case == "socket_not_root":
        os.chown(SOCK, OTHER_UID, OTHER_UID)
    return hostd


def real_sudo(case, tmp, env):
    """Runs the real sudo with a sudo.conf naming jit_sudo.so; returns problems."""
    conf = os.path.join(tmp, "sudo.conf")
    with open(conf, "w", encoding="utf-8") as f:
        f.write(f"Plugin jit_policy {PLUGIN}\n")
    subprocess.run(["mount", "--bind", conf, "/etc/sudo.conf"], check=True)
    args, status, out, err = REAL_SUDO[case]
    p = subprocess.Popen(["sudo", *args], env=dict(env, JIT_TEST="1"), text=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    if case == "sudo_cancel":
        time.sleep(1)
        p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=30)
    if (p.returncode, stdout) != (status, out) or err not in stderr:
        return [f"sudo exited {p.returncode}, stdout {stdout!r}, stderr {stderr!r}"]
    return []


def inside(case):
    """Runs CASE; we are in a private mount namespace already."""
    scenario, expect, _ = CASES[case]
    tmp = tempfile.mkdtemp(prefix="jit-sudo-test-")
    os.chmod(tmp, 0o755)  # noqa: S103 (becomes /run/jit, which is 0755)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run"], check=True)
    os.mkdir("/run/jit", 0o755)
    subprocess.run(["mount", "--bind", tmp, "/run/jit"], check=True)
    hostd = start_hostd(case, scenario, tmp) if scenario else None
    env = dict(os.environ)
    env.pop("EXPECT", None)
    env.pop("WRONG", None)
    if expect:
        env["EXPECT"] = expect
    if case == "password_wrong":
        env["WRONG"] = "1"
    try:
        started = time.monotonic()
        if case in REAL_SUDO:
            problems = real_sudo(case, tmp, env)
        else:
            rc = subprocess.run([*VALGRIND, DRIVER, case, PLUGIN], env=env).returncode
            problems = [] if rc == 0 else [f"driver or valgrind failed (exit {rc})"]
        took = time.monotonic() - started
        if case == "slow" and not 9.5 < took < 20:
            problems.append(f"took {took:.1f} s, not about 10 s")
        if case in ("pending_cancel", "sudo_cancel") and took > 5:
            problems.append(f"took {took:.1f} s: the signal did not end the wait")
        if case == "connect_timeout" and not 1.5 < took < 8:
            problems.append(f"took {took:.1f} s, not about 2 s")
    finally:
        if hostd:
            hostd.kill()
            hostd.wait()
    log = os.path.join(tmp, "requests.log")
    reqs = []
    if os.path.exists(log):
        with open(log, encoding="utf-8") as f:
            reqs = [json.loads(line) for line in f]
    problems += check_requests(case, reqs)
    shutil.rmtree(tmp)
    for p in problems:
        print(f"{case}: {p}", file=sys.stderr)
    return 1 if problems else 0


def run(case):
    """Runs CASE in its own mount namespace; returns its exit code."""
    return subprocess.run(["unshare", "-m", sys.executable, os.path.abspath(__file__),
                           "--inside", case]).returncode


def main(args):
    if args[:1] == ["--inside"]:
        return inside(args[1])
    cases = list(CASES) if args in ([], ["all"]) else args
    failed = [c for c in cases if run(c) != 0]
    for c in cases:
        print(("FAIL " if c in failed else "ok   ") + c)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
