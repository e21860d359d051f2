"""The pure parts of recording: which sudo is recorded and how it is wrapped, one-time
tokens, frames, retention, the recorder's options."""

from __future__ import annotations

import os

import pytest

from hostd.errors import JitError
from hostd.policy.durations import parse_size
from hostd.record import options as recorder
from hostd.record import proxy as recorder_proxy
from hostd.record import recordings
from hostd.record.recordings import Session, Tokens, retention_plan, should_record, wrap
from hostd.server.record import _frame_items

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INFO = ("command=/usr/bin/psql", "runas_user=postgres", "runas_uid=112", "runas_gid=120",
        "runas_groups=120,44", "cwd=/home/alice", "umask=0022", "closefrom=3", "use_pty=true",
        "intercept=true")


def session(**kw) -> Session:
    base = dict(user="alice", uid=1001, runas="root", command="/usr/bin/id", tty="/dev/pts/1",
                host="h", grant_id="g1", role="ops", record_input=False,
                record_failure="terminate")
    return Session(**{**base, **kw})


@pytest.mark.parametrize("record,tty,intercepted,sudoedit,expected", [
    ("always", "", False, False, True),
    ("always", "/dev/pts/1", False, False, True),
    ("interactive", "/dev/pts/1", False, False, True),
    ("interactive", "", False, False, False),
    ("never", "/dev/pts/1", False, False, False),
    ("always", "/dev/pts/1", True, False, False),  # inside a recorded session already
    ("always", "/dev/pts/1", False, True, False),  # sudoedit: the editor runs as the user
])
def test_which_sudo_is_recorded(record, tty, intercepted, sudoedit, expected):
    assert should_record(record, tty, intercepted, sudoedit) is expected


def test_wrap_runs_the_recorder_as_root_and_hands_it_the_runas_account():
    info, argv = wrap(INFO, ("psql", "-l"), "TOKEN", "continue")
    assert info == ("command=/usr/bin/jit-record", "runas_user=root", "runas_uid=0",
                    "runas_gid=0", "runas_groups=0", *INFO[5:])
    assert argv == ("/usr/bin/jit-record", "--token", "TOKEN", "--uid", "112", "--gid", "120",
                    "--groups", "120,44", "--record-failure", "continue", "--command",
                    "/usr/bin/psql", "--", "psql", "-l")
    opts = recorder.parse_args(list(argv[1:]))
    assert (opts.token, opts.uid, opts.gid, opts.groups, opts.command, opts.argv,
            opts.record_failure) == ("TOKEN", 112, 120, [120, 44], "/usr/bin/psql",
                                     ["psql", "-l"], "continue")


def test_wrap_keeps_a_login_shells_argv0():
    info = ("command=/usr/bin/bash", "runas_user=root", "runas_uid=0", "runas_gid=0",
            "runas_groups=0", "cwd=/root")
    _, argv = wrap(info, ("-bash",), "T", "terminate")
    assert argv[-3:] == ("/usr/bin/bash", "--", "-bash")


def test_a_token_is_good_once_and_for_a_minute():
    now = [1000.0]
    tokens = Tokens(clock=lambda: now[0])
    t1, t2 = tokens.issue(session()), tokens.issue(session(user="bob"))
    assert t1 != t2 and len(t1) >= 32
    assert tokens.take(t1).user == "alice"
    assert tokens.take(t1) is None
    now[0] += recordings.TOKEN_TTL + 1
    assert tokens.take(t2) is None
    assert tokens.take("made-up") is None


def test_tokens_stay_bounded(monkeypatch):
    monkeypatch.setattr(recordings, "MAX_TOKENS", 4)
    tokens = Tokens(clock=lambda: 5.0)
    issued = [tokens.issue(session(uid=i)) for i in range(10)]
    assert len(tokens) == 4
    assert tokens.take(issued[0]) is None and tokens.take(issued[-1]).uid == 9


@pytest.mark.parametrize("text,value", [("1", 1), ("512M", 512 * 1024**2),
                                        ("10g", 10 * 1024**3), ("2T", 2 * 1024**4),
                                        ("4096", 4096), ("3K", 3072)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "0", "10GB", "-1", "1.5G", "lots", "10 G G"])
def test_bad_sizes_are_named(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_retention_removes_the_old_then_the_oldest_over_the_size():
    files = [("c", 300.0, 10), ("a", 100.0, 10), ("b", 200.0, 10), ("d", 400.0, 10)]
    assert retention_plan(files, now=1000.0, max_age=750, max_total=0) == [
        ("a", "older than max_age"), ("b", "older than max_age")]
    assert retention_plan(files, now=1000.0, max_age=0, max_total=25) == [
        ("a", "over max_total_size"), ("b", "over max_total_size")]
    assert retention_plan(files, now=1000.0, max_age=750, max_total=15) == [
        ("a", "older than max_age"), ("b", "older than max_age"),
        ("c", "over max_total_size")]
    assert retention_plan(files, now=1000.0, max_age=0, max_total=0) == []


def test_enforce_retention_never_touches_open_or_foreign_files(tmp_path):
    names = ["0123456789abcdef", "1123456789abcdef", "2123456789abcdef"]
    for i, name in enumerate(names):
        path = tmp_path / f"{name}.cast"
        path.write_bytes(b"x" * 100)
        os.utime(path, (100 + i, 100 + i))
    (tmp_path / "notes.txt").write_bytes(b"y" * 1000)
    (tmp_path / "ABCDEF0123456789.cast").write_bytes(b"z" * 1000)
    removed = recordings.enforce_retention(tmp_path, 1000.0, 0, 150, active={names[0]})
    assert removed == [(names[1], 100, "over max_total_size")]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes.txt", "ABCDEF0123456789.cast", f"{names[0]}.cast", f"{names[2]}.cast"])


def test_frames_are_checked():
    assert _frame_items({"t": 1.5, "o": "aGk="}) == ([("o", 1.5, b"hi")], None)
    assert _frame_items({"t": 2, "i": ""}) == ([("i", 2.0, b"")], None)
    assert _frame_items({"t": 3, "r": [80, 24]}) == ([("r", 3.0, (80, 24))], None)
    assert _frame_items({"t": 4, "end": "exit 0"}) == ([], "exit 0")
    for bad in ({"o": "aGk="}, {"t": -1, "o": ""}, {"t": True, "o": ""}, {"t": 1},
                {"t": 1, "o": "aGk=", "i": ""}, {"t": 1, "o": "###"}, {"t": 1, "o": 5},
                {"t": 1, "r": [0, 24]}, {"t": 1, "r": [80]}, {"t": 1, "r": [True, 2]},
                {"t": 1, "end": "x" * 65}, {"t": 1, "x": 1}):
        with pytest.raises(JitError) as err:
            _frame_items(bad)
        assert err.value.code == "bad_request", bad


@pytest.mark.parametrize("argv,problem", [
    ([], "no command"), (["--", "true"], "--token"), (["--token", "t"], "no command"),
    (["--token", "t", "--file", "f", "--", "x"], "--token"),
    (["--token", "t", "--uid", "x", "--", "x"], "number"),
    (["--token", "t", "--record-failure", "maybe", "--", "x"], "terminate or continue"),
    (["--token", "t", "--no-mask", "--", "x"], "local"),
    (["--bogus", "--", "x"], "unknown option"), (["--token"], "needs a value"),
])
def test_recorder_usage_errors(argv, problem):
    with pytest.raises(recorder.Usage, match=problem):
        recorder.parse_args(argv)


def test_recorder_options_keep_the_commands_own_dashes():
    opts = recorder.parse_args(["--file", "f.cast", "--no-mask", "--", "ls", "--", "-l"])
    assert (opts.file, opts.mask, opts.argv) == ("f.cast", False, ["ls", "--", "-l"])


def test_exit_status_text():
    assert recorder_proxy.exit_status(0) == "exit 0"
    assert recorder_proxy.exit_status(3 << 8) == "exit 3"
    assert recorder_proxy.exit_status(9) == "signal 9"


def test_the_recorder_imports_no_asyncio_and_no_masking_until_asked():
    import subprocess
    import sys

    probe = ("import sys, hostd.record.main, hostd.record.terminal, hostd.record.piped; "
             "print(sorted(m for m in ('asyncio', 'hostd.masking.masker', 'hostd.record.castfile', "
             "'argparse', 'json', 'typing', 'dataclasses') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


def test_the_client_imports_neither_the_op_table_nor_dataclasses():
    """jit-record opens a client on every recorded sudo: the op table (dataclasses,
    inspect) and pathlib cost it ~20 ms of start-up, so hostd.client imports hostd.wire."""
    import subprocess
    import sys

    probe = ("import sys, hostd.client; print(sorted(m for m in ('hostd.protocol', "
             "'dataclasses', 'pathlib', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "[]"


class _Slow:
    """A Recording stand-in whose writes take a while and may fail."""

    def __init__(self, fail_at: int = -1) -> None:
        self.written: list = []
        self.fail_at = fail_at

    def write(self, items: list) -> None:
        import time

        time.sleep(0.002)
        for item in items:
            if item == self.fail_at:
                raise OSError(28, "No space left on device")
            self.written.append(item)


def test_the_write_pipeline_keeps_order_batches_and_bounds_what_waits():
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hostd.server.record import _Pipeline

    async def run(rec) -> int:
        pipe = _Pipeline(ThreadPoolExecutor(max_workers=4), rec)
        most = 0
        for i in range(500):
            await pipe.add([i])
            most = max(most, len(pipe.batch))
        await pipe.drain()
        return most

    rec = _Slow()
    most = asyncio.run(run(rec))
    assert rec.written == list(range(500))
    assert most < _Pipeline.MAX_BATCH

    failing = _Slow(fail_at=100)
    with pytest.raises(OSError):
        asyncio.run(run(failing))
    assert failing.written == list(range(100))


def test_the_write_pipeline_bounds_the_bytes_waiting_too():
    """Raw frames carry up to 256 KiB: 64 of them would be 16 MiB per recording."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from hostd.server.record import _Pipeline

    frame = b"x" * (256 * 1024)

    async def run(rec) -> int:
        pipe = _Pipeline(ThreadPoolExecutor(max_workers=4), rec)
        most = 0
        for i in range(40):
            await pipe.add([("o", float(i), frame)])
            most = max(most, pipe.size)
        await pipe.drain()
        return most

    rec = _Slow()
    most = asyncio.run(run(rec))
    assert [t for _, t, _ in rec.written] == [float(i) for i in range(40)]
    assert most < _Pipeline.MAX_BYTES


def test_the_header_comes_from_hostd_and_masks_the_command_line():
    s = session(command="/usr/bin/aws configure set key AKIAIOSFODNN7EXAMPLE TICKET-123456")
    masked = recordings.mask_text(s.command, [("ticket", r"TICKET-[0-9]{6}")])
    assert "AKIAIOSFODNN7EXAMPLE" not in masked and "TICKET-123456" not in masked
    assert masked.startswith("/usr/bin/aws configure set key ")
    head = recordings.header("0123456789abcdef", s, 120, 40, "xterm", 1796000000.0, pty=False)
    assert (head["width"], head["height"], head["env"]) == (120, 40, {"TERM": "xterm"})
    jit = head["jit"]
    assert (jit["id"], jit["user"], jit["runas"], jit["grant_id"], jit["role"], jit["pty"],
            jit["started"]) == ("0123456789abcdef", "alice", "root", "g1", "ops", False,
                                "2026-11-30T00:53:20Z")


def test_the_command_gets_a_real_shell_never_the_recorder(monkeypatch):
    opts = recorder.parse_args(["--file", "x", "--", "true"])
    monkeypatch.setenv("SHELL", "/usr/bin/jit-record")
    assert recorder_proxy.child_env(opts)["SHELL"] != "/usr/bin/jit-record"
    monkeypatch.setenv("SHELL", "/bin/zsh")
    assert recorder_proxy.child_env(opts)["SHELL"] == "/bin/zsh"
    monkeypatch.delenv("SHELL")
    assert recorder_proxy.child_env(opts)["SHELL"].startswith("/")
