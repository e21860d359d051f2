"""jit-record on a real terminal and on pipes, without hostd (`--file`: a local
recording through the same proxy, masking and asciicast writer).

The terminal is tmux's (a real pty, read back with `capture-pane`): vi runs full screen
under the recorder, a secret typed into it is masked on the screen and in the file,
a window-size change reaches vi and the recording, Ctrl-Z stops the session and `fg`
brings it back, and the exit status or signal is passed on. `asciinema cat` of the
file shows what the terminal showed, masked."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
SECRET = "AKIAIOSFODNN7EXAMPLE"  # the AWS documentation's example key id: a built-in rule
RECORD = f"PYTHONPATH={REPO} {PYTHON} -m hostd.record.main"


class Tmux:
    """One tmux server of our own (-L), one window, 100x30."""

    def __init__(self, tmp: Path) -> None:
        self.name = f"jitrec-{uuid.uuid4().hex[:8]}"
        self.tmp = tmp
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30",
                  "env", "-i", "TERM=xterm-256color", "PATH=/usr/bin:/bin", f"HOME={tmp}",
                  "PS1=$ ", "bash", "--norc", "--noprofile")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.name, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "0", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "0", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "0")

    def wait(self, what: str, timeout: float = 20.0) -> str:
        """The screen once it shows `what` (a regex)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if re.search(what, shown):
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{what!r} never shown; the screen:\n{self.screen()}")

    def raw(self) -> bool:
        """The pane's terminal is raw (keys are bytes, not signals): the recorder holds
        it; cooked again when the shell has it back."""
        tty = self.tmux("display-message", "-p", "-t", "0", "#{pane_tty}").strip()
        flags = subprocess.run(["stty", "-F", tty, "-a"], capture_output=True, text=True,
                               check=True, timeout=30).stdout.split()
        return "-icanon" in flags and "-isig" in flags

    def wait_raw(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.raw() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.raw(), "the recorder never took the terminal"

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.name, "kill-server"], capture_output=True,
                       timeout=30)


@pytest.fixture
def term(tmp_path):
    if shutil.which("tmux") is None:  # scripts/install-deps.sh installs it
        raise AssertionError("tmux is required (scripts/install-deps.sh)")
    t = Tmux(tmp_path)
    yield t
    t.kill()


def events(path: Path) -> list[list]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_vi_full_screen_masked_on_screen_and_in_the_file(term, tmp_path):
    cast, text = tmp_path / "vi.cast", tmp_path / "notes.txt"
    term.type(f"{RECORD} --file {cast} -- vi -u NONE -N {text}; echo EXIT=$?")
    term.keys("Enter")
    term.wait("~")  # vi's empty-buffer lines: it drew its screen
    term.type(f"ikey {SECRET} end")
    term.keys("Escape")
    shown = term.wait(r"key \*")
    assert SECRET not in shown and "end" in shown
    term.tmux("resize-window", "-t", "0", "-x", "90", "-y", "20")
    term.wait("~")
    term.type(":wq")
    term.keys("Enter")
    assert "EXIT=0" in term.wait(r"EXIT=\d")
    assert text.read_text() == f"key {SECRET} end\n"  # vi got the real keys
    recorded = events(cast)
    output = "".join(e[2] for e in recorded if e[1] == "o")
    assert "key " in output and SECRET not in output
    assert ["r", "90x20"] in [[e[1], e[2]] for e in recorded]
    assert not [e for e in recorded if e[1] == "i"]  # input is not recorded locally
    catted = asciinema_cat(cast)
    assert "key " in catted and SECRET not in catted


def asciinema_cat(cast: Path) -> str:
    """`asciinema cat FILE` with a pty as its terminal (it opens /dev/tty)."""
    master, slave = os.openpty()
    try:
        done = subprocess.run(["asciinema", "cat", str(cast)], stdin=slave,
                              capture_output=True, timeout=30, start_new_session=True,
                              preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode("utf-8", "replace")


def test_top_runs_and_quits(term, tmp_path):
    cast = tmp_path / "top.cast"
    term.type(f"{RECORD} --file {cast} -- top -d 0.3; echo EXIT=$?")
    term.keys("Enter")
    term.wait("load average")
    term.type("q")
    assert "EXIT=0" in term.wait(r"EXIT=\d")
    assert "load average" in "".join(e[2] for e in events(cast) if e[1] == "o")


def test_job_control_stop_fg_and_the_signal_passed_on(term, tmp_path):
    cast = tmp_path / "sleep.cast"
    term.type(f"{RECORD} --file {cast} -- sleep 600")
    term.keys("Enter")
    term.wait_raw()  # the recorder holds the terminal: Ctrl-Z reaches the session
    deadline = time.monotonic() + 20
    while not running(b"sleep\x00600\x00") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running(b"sleep\x00600\x00"), "the command never started"
    term.keys("C-z")  # a program without job control of its own, as `sudo sleep` is
    term.wait("Stopped")
    assert states(str(cast)) == {"T"}  # recorder and monitor stopped
    term.type("fg")
    term.keys("Enter")
    deadline = time.monotonic() + 20
    while states(str(cast)) & {"T"} and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not states(str(cast)) & {"T"}, "fg did not continue the session"
    term.wait_raw()  # the recorder took the terminal back: Ctrl-C reaches the command
    term.keys("C-c")
    term.type("echo EXIT=$?")
    term.keys("Enter")
    assert "EXIT=130" in term.wait(r"EXIT=\d")  # SIGINT: 128 + 2, as without the recorder
    last = events(cast)[-1]
    assert last[1] == "m" and last[2].endswith("signal 2")


def test_a_signal_sent_to_the_recorder_reaches_the_command(term, tmp_path):
    cast = tmp_path / "term.cast"
    term.type(f"{RECORD} --file {cast} -- sleep 600; echo EXIT=$?")
    term.keys("Enter")
    deadline = time.monotonic() + 20
    while len(pids(str(cast))) < 2 and time.monotonic() < deadline:  # recorder, monitor
        time.sleep(0.1)
    both = pids(str(cast))
    (recorder_pid,) = [p for p in both if parent(p) not in both]  # the monitor's is it
    os.kill(recorder_pid, signal.SIGTERM)  # as sudo passes a signal on
    assert "EXIT=143" in term.wait(r"EXIT=\d")  # sleep ended by SIGTERM, passed on
    assert events(cast)[-1][2].endswith("signal 15")


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def pids(marker: str) -> list[int]:
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(int(pid))
        except OSError:
            continue
    return out


def running(cmdline: bytes) -> bool:
    """A process runs with exactly this command line (NUL-separated, as in /proc)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                return True
        except OSError:
            continue
    return False


def states(marker: str) -> set[str]:
    """The states (R, S, T, ...) of the processes whose command line holds `marker`."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.add(stat.rsplit(")", 1)[1].split()[0])
    return found


def test_exit_status_and_window_size_from_the_terminal(term, tmp_path):
    cast = tmp_path / "stty.cast"
    term.type(f"{RECORD} --file {cast} -- sh -c 'stty size; exit 5'; echo EXIT=$?")
    term.keys("Enter")
    shown = term.wait(r"EXIT=\d")
    assert "30 100" in shown and "EXIT=5" in shown
    head = json.loads(cast.read_text().splitlines()[0])
    assert (head["width"], head["height"]) == (100, 30)


def test_stderr_redirected_away_from_the_terminal_stays_apart(term, tmp_path):
    cast, err = tmp_path / "err.cast", tmp_path / "err.txt"
    term.type(f"{RECORD} --file {cast} -- sh -c 'echo to-screen; echo to-file {SECRET} >&2'"
              f" 2>{err}; echo EXIT=$?")
    term.keys("Enter")
    shown = term.wait(r"EXIT=\d")
    assert "to-screen" in shown and "EXIT=0" in shown
    assert "to-file" not in shown.split("EXIT=$?")[-1]  # not on the terminal
    assert err.read_text() == "to-file " + "*" * len(SECRET) + "\n"  # masked, in the file
    output = "".join(e[2] for e in events(cast) if e[1] == "o")
    assert "to-screen" in output and "to-file *" in output


def recorder(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "LANG": "C.UTF-8"}
    return subprocess.run([PYTHON, "-m", "hostd.record.main", *args], env=env,
                          capture_output=True, timeout=60, **kw)


def test_pipes_keep_stdout_stderr_apart_masked_and_the_status(tmp_path):
    cast = tmp_path / "pipe.cast"
    r = recorder("--file", str(cast), "--", "sh", "-c",
                 f"cat; echo out {SECRET}; echo err password=hunter2 >&2; exit 9",
                 input=b"from stdin\n")
    assert r.returncode == 9
    assert r.stdout.startswith(b"from stdin\nout ") and SECRET.encode() not in r.stdout
    assert r.stderr.startswith(b"err ") and b"hunter2" not in r.stderr
    output = "".join(e[2] for e in events(cast) if e[1] == "o")
    assert "from stdin" in output and SECRET not in output and "hunter2" not in output


def test_pipes_binary_output_passes_unchanged_without_masking(tmp_path):
    data = os.urandom(300_000)
    src = tmp_path / "blob"
    src.write_bytes(data)
    r = recorder("--file", str(tmp_path / "bin.cast"), "--no-mask", "--", "cat", str(src))
    assert r.returncode == 0 and r.stdout == data


def test_a_killed_command_kills_the_recorder_with_the_same_signal(tmp_path):
    r = recorder("--file", str(tmp_path / "k.cast"), "--", "sh", "-c", "kill -TERM $$",
                 stdin=subprocess.DEVNULL)
    assert r.returncode == -15


def test_usage_errors_are_named(tmp_path):
    assert recorder("--", "true").returncode == 2  # neither --token nor --file
    assert recorder("--file", str(tmp_path / "x"), "--bogus", "--", "true").returncode == 2
    r = recorder("--file", str(tmp_path / "x"))
    assert r.returncode == 2 and b"no command given" in r.stderr


def test_typing_into_a_command_that_only_prints_never_stalls_it(tmp_path):
    """Keys the command does not read pile up in the recorder, not in a blocked write:
    its output keeps flowing (before, both sides could wait on each other)."""
    master, slave = os.openpty()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TERM": "xterm"}
    proc = subprocess.Popen(
        [PYTHON, "-m", "hostd.record.main", "--file", str(tmp_path / "flood.cast"), "--no-mask",
         "--", "sh", "-c",  # raw mode: a full input queue blocks the writer (cooked drops)
         "stty raw -echo; sleep 0.5; head -c 3000000 /dev/zero | tr '\\0' x; exit 3"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    os.set_blocking(master, False)
    typed, seen, deadline = 0, 0, time.monotonic() + 60
    keys = b"k" * 4096
    while proc.poll() is None and time.monotonic() < deadline:
        if typed < 400_000:
            try:
                typed += os.write(master, keys)
            except BlockingIOError:
                pass
        try:
            seen += os.read(master, 65536).count(b"x")
        except (BlockingIOError, OSError):
            time.sleep(0.001)
    os.close(master)
    try:
        assert proc.wait(10) == 3, "the recorder failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the recorder; the command has its own
        raise AssertionError("the recorder stalled") from None
    assert typed > 8192 and seen >= 2_900_000  # a little may still be on its way


def test_held_back_output_is_shown_while_the_session_stays_busy(tmp_path):
    """What a masker holds back (it could be the start of a secret) is shown after a
    short idle time even when other output keeps the recorder busy: the command below
    waits, chattering on stderr, until the test has seen its prompt on stdout."""
    go = tmp_path / "go"
    script = (f"printf 'Password: '; while [ ! -e {go} ]; do echo . >&2; sleep 0.01; done;"
              " echo; echo done")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([PYTHON, "-m", "hostd.record.main", "--file", str(tmp_path / "p.cast"),
                             "--", "sh", "-c", script], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        os.set_blocking(proc.stdout.fileno(), False)
        seen, deadline = b"", time.monotonic() + 20
        while b"Password: " not in seen and time.monotonic() < deadline:
            seen += proc.stdout.read() or b""
            time.sleep(0.02)
        assert seen == b"Password: ", "the prompt stayed held back while stderr was busy"
    finally:
        go.touch()
    os.set_blocking(proc.stdout.fileno(), True)
    assert proc.stdout.read() == b"\ndone\n" and proc.wait(30) == 0
