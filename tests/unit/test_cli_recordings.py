"""`jit sessions`, `jit replay`, `jit verify-recording` on directories of sample
recordings (a sandbox root through JIT_ROOT, or --dir)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from hostd.cli import recordings as cli_recordings
from hostd.cli.main import main
from hostd.record import castfile

A, B, C = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
OUT = ["$ ", "id\r\n", "uid=0(root)\r\n", "$ "]


def make(directory: Path, rid: str, *, user="alice", command=("/bin/bash",),
         timestamp=1796018800, outputs=OUT, close=True) -> str | None:
    directory.mkdir(parents=True, exist_ok=True)
    w = castfile.CastWriter(directory / f"{rid}.cast", {
        "width": 80, "height": 24, "timestamp": timestamp, "id": rid, "user": user,
        "runas": "root", "command": list(command), "grant_id": "g1", "host": "web1",
        "started": castfile.time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                          castfile.time.gmtime(timestamp))})
    for i, text in enumerate(outputs):
        w.output(0.5 * i, text.encode())
    if not close:
        w._fh.flush()
        return None
    return w.close(0.5 * len(outputs), "exit 0")


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("JIT_ROOT", str(tmp_path))
    return tmp_path


def sessions_dir(root: Path) -> Path:
    return root / "var/log/jit/sessions"


def log_digest(root: Path, rid: str, digest: str) -> None:
    """What hostd's events mirror holds after a recorded session (sandbox mode)."""
    path = root / "var/log/jit/events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"JIT_EVENT": "session_recorded", "JIT_RECORDING": rid,
                             "JIT_RECORDING_SHA256": digest}) + "\n")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# jit sessions -------------------------------------------------------------------------------

def test_sessions_lists_every_recording_from_its_header(root, capsys):
    d = sessions_dir(root)
    make(d, B, user="bob", timestamp=1796018900)
    make(d, A, timestamp=1796018800)
    make(d, C, close=False, timestamp=1796019000)
    (d / "notes.txt").write_text("ignored")
    (d / "0123.cast").write_text("ignored: not an id")
    (d / "dddddddddddddddd.cast").write_text("not json\n")
    code, out, _ = run(capsys, "sessions", "--json")
    assert code == 0
    rows = json.loads(out)["sessions"]
    assert [r["id"] for r in rows[:3]] == [A, B, C]
    a = rows[0]
    assert (a["user"], a["runas"], a["command"], a["grant_id"]) == (
        "alice", "root", ["/bin/bash"], "g1")
    assert a["started"] == "2026-11-30T06:06:40Z" and a["ended"] == "2026-11-30T06:06:42Z"
    assert a["duration"] == 2.0 and a["size"] == (d / f"{A}.cast").stat().st_size
    assert a["path"] == str(d / f"{A}.cast") and a["status"] == "exit 0"
    assert rows[2]["ended"] is None  # still being written
    assert rows[3] == {"id": "d" * 16, "path": str(d / ("d" * 16 + ".cast")),
                       "error": "header is not JSON"}


def test_sessions_text_escapes_what_users_typed(root, capsys):
    make(sessions_dir(root), A, user="alice", command=("/bin/echo", "\x1b[2J\njit: ok"))
    code, out, _ = run(capsys, "sessions")
    assert code == 0 and "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 2 and lines[1].startswith(A)
    assert "\\x1b[2J\\njit: ok" in lines[1]


def test_sessions_with_a_directory_option(tmp_path, capsys):
    make(tmp_path / "elsewhere", A)
    code, out, _ = run(capsys, "sessions", "--dir", str(tmp_path / "elsewhere"), "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)["sessions"]] == [A]


def test_sessions_default_directory_is_for_root_and_adm(root, capsys, monkeypatch):
    make(sessions_dir(root), A)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    monkeypatch.setattr(os, "getgroups", lambda: [1000])
    code, out, _ = run(capsys, "sessions", "--json")
    assert code == 1 and json.loads(out)["code"] == "permission_denied"
    adm = cli_recordings.grp.getgrnam("adm").gr_gid
    monkeypatch.setattr(os, "getgroups", lambda: [1000, adm])
    code, out, _ = run(capsys, "sessions", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)["sessions"]] == [A]


# jit replay ---------------------------------------------------------------------------------

def test_replay_writes_the_output_and_keeps_its_own_words_on_stderr(root, capfdbinary):
    make(sessions_dir(root), A, outputs=["jit: end of replay (status: ok)\r\n", "$ "])
    code = main(["replay", A, "--speed", "1000", "--idle-limit", "0"])
    out, err = capfdbinary.readouterr()
    assert code == 0
    assert out == b"jit: end of replay (status: ok)\r\n$ "  # the recording, nothing else
    err_lines = err.decode().splitlines()
    assert err_lines[0].startswith(f"jit: replaying {A}: alice as root")
    assert err_lines[-1] == f"jit: end of replay of {A} (status: exit 0)"


def test_play_keeps_the_pace_divided_by_speed_and_caps_pauses():
    now = [0.0]
    slept = []

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    events = [(0.0, "o", "a"), (2.0, "o", "b"), (2.0, "r", "1x1"), (12.0, "o", "c"),
              (12.5, "i", "x"), (13.0, "o", "d"), (13.0, "m", "end")]
    out = io.BytesIO()
    last = cli_recordings.play(iter(events), out, speed=2.0, idle_limit=3.0, sleep=sleep,
                               clock=lambda: now[0])
    assert out.getvalue() == b"abcd" and last == (13.0, "m", "end")
    assert slept == [1.0, 1.5, 0.5]  # 2/2, min(10, 3)/2, 1/2


def test_replay_refuses_bad_ids_and_missing_recordings(root, capsys):
    code, out, _ = run(capsys, "replay", "../../etc/passwd", "--json")
    assert code == 2 and json.loads(out)["code"] == "usage"
    code, out, _ = run(capsys, "replay", A, "--json")
    assert code == 1 and json.loads(out)["code"] == "not_found"
    code, out, _ = run(capsys, "replay", A, "--speed", "0", "--json")
    assert code == 2 and json.loads(out)["code"] == "usage"


def test_replay_of_a_malformed_file_says_so(root, capsys):
    sessions_dir(root).mkdir(parents=True)
    (sessions_dir(root) / f"{A}.cast").write_text('{"version": 2}\n')
    code, out, _ = run(capsys, "replay", A, "--json")
    assert code == 1 and json.loads(out)["code"] == "malformed"


def test_replay_export_script(root, capsys, tmp_path):
    make(sessions_dir(root), A)
    target = tmp_path / "out"
    target.mkdir()
    code, out, _ = run(capsys, "replay", A, "--export-script", str(target), "--json")
    answer = json.loads(out)
    assert code == 0 and answer["log"] == str(target / f"{A}.log")
    data = (target / f"{A}.log").read_bytes()
    assert "".join(OUT).encode() in data
    assert (target / f"{A}.timing").read_text().count("\n") == len(OUT)
    code, out, _ = run(capsys, "replay", A, "--export-script", str(target), "--json")
    assert code == 1 and "exists already" in json.loads(out)["message"]


# jit verify-recording -----------------------------------------------------------------------

def test_verify_ok_against_the_logged_digest(root, capsys):
    digest = make(sessions_dir(root), A)
    log_digest(root, A, digest)
    code, out, _ = run(capsys, "verify-recording", A)
    assert code == 0 and out.startswith(f"{A}: ok: chain intact") and digest in out
    code, out, _ = run(capsys, "verify-recording", A, "--json")
    answer = json.loads(out)
    assert (answer["ok"], answer["digest"], answer["digest_from"]) == (True, digest,
                                                                       "the journal")


def test_verify_catches_an_edit(root, capsys):
    d = sessions_dir(root)
    digest = make(d, A)
    log_digest(root, A, digest)
    path = d / f"{A}.cast"
    path.write_bytes(path.read_bytes().replace(b"uid=0(root)", b"uid=1(root)"))
    code, out, err = run(capsys, "verify-recording", A)
    assert code == 1 and out == ""
    assert err.startswith(f"jit: tampered: {A}: chain broken") and "first bad line" in err


def test_verify_catches_a_rewritten_file_by_the_journal_digest(root, capsys):
    d = sessions_dir(root)
    digest = make(d, A)
    log_digest(root, A, digest)
    (d / f"{A}.cast").unlink()
    make(d, A, outputs=["$ ", "nothing to see\r\n"])  # a consistent chain of its own
    code, out, _ = run(capsys, "verify-recording", A, "--json")
    answer = json.loads(out)
    assert code == 1 and answer["code"] == "tampered" and "rewritten" in answer["message"]


def test_verify_without_a_logged_digest_fails_closed(root, capsys):
    make(sessions_dir(root), A)
    code, out, _ = run(capsys, "verify-recording", A, "--json")
    answer = json.loads(out)
    assert code == 1 and answer["code"] == "tampered" and "no digest" in answer["message"]


def test_verify_with_two_logged_digests_fails(root, capsys):
    digest = make(sessions_dir(root), A)
    log_digest(root, A, digest)
    log_digest(root, A, "0" * 64)
    code, out, _ = run(capsys, "verify-recording", A, "--json")
    assert code == 1 and "2 different digests" in json.loads(out)["message"]


def test_verify_with_a_digest_given(tmp_path, capsys):
    digest = make(tmp_path, A)
    code, _, _ = run(capsys, "verify-recording", A, "--dir", str(tmp_path), "--digest", digest)
    assert code == 0
    code, out, _ = run(capsys, "verify-recording", A, "--dir", str(tmp_path),
                       "--digest", "f" * 64, "--json")
    assert code == 1 and json.loads(out)["code"] == "tampered"
    code, out, _ = run(capsys, "verify-recording", A, "--dir", str(tmp_path),
                       "--digest", "xyz", "--json")
    assert code == 2 and json.loads(out)["code"] == "usage"


def test_verify_of_a_missing_recording_exits_2(root, capsys):
    code, out, _ = run(capsys, "verify-recording", B, "--json")
    assert code == 2 and json.loads(out)["code"] == "not_found"
    code, _, err = run(capsys, "verify-recording", B)
    assert code == 2 and err.startswith(f"jit: not_found: no recording {B}")


def test_replay_stops_at_a_malformed_line_and_says_so(root, capfdbinary):
    make(sessions_dir(root), A)
    path = sessions_dir(root) / f"{A}.cast"
    lines = path.read_bytes().split(b"\n")
    i = next(i for i, raw in enumerate(lines) if b"uid=0(root)" in raw)
    lines[i] = b"[1.0, broken"
    path.write_bytes(b"\n".join(lines))
    code = main(["replay", A, "--speed", "1000", "--idle-limit", "0"])
    out, err = capfdbinary.readouterr()
    assert code == 1 and out == b"$ id\r\n"
    assert err.decode().splitlines()[-1].startswith(f"jit: end of replay of {A} (stopped: ")


def test_export_of_a_malformed_recording_leaves_nothing(root, capsys, tmp_path):
    make(sessions_dir(root), A)
    path = sessions_dir(root) / f"{A}.cast"
    path.write_bytes(path.read_bytes().replace(b'"id\\r\\n"]', b'"id\\r\\n"'))
    target = tmp_path / "out"
    target.mkdir()
    code, out, _ = run(capsys, "replay", A, "--export-script", str(target), "--json")
    assert code == 1 and json.loads(out)["code"] == "malformed"
    assert list(target.iterdir()) == []


def test_sessions_survives_hostile_headers(tmp_path, capsys):
    """A file in a directory given with --dir can say anything in its header."""
    header = {"version": 2, "width": 80, "height": 24, "timestamp": 1e300,
              "jit": {"format": "jit-cast/1", "id": ["x"], "user": {"a": 1},
                      "runas": "\x1b[2Jroot", "command": 7, "started": "\x1b]52;c;eA==\x07"}}
    (tmp_path / f"{A}.cast").write_text(json.dumps(header) + '\n[1.5, "o", "x"]\n')
    header2 = dict(header, timestamp="yesterday", jit=dict(header["jit"], started=None))
    (tmp_path / f"{B}.cast").write_text(json.dumps(header2) + "\n")
    code, out, _ = run(capsys, "sessions", "--dir", str(tmp_path))
    assert code == 0 and "\x1b" not in out and "\x07" not in out
    assert len(out.splitlines()) == 3
    code, out, _ = run(capsys, "sessions", "--dir", str(tmp_path), "--json")
    rows = json.loads(out)["sessions"]
    assert code == 0 and [r["id"] for r in rows] == [A, B]
    assert rows[0]["error"] == "id in the header differs from the file name"
    assert rows[0]["ended"] is None and rows[1]["started"] is None


def test_a_fifo_or_a_symlink_named_like_a_recording_is_not_opened(tmp_path, capsys):
    os.mkfifo(tmp_path / f"{A}.cast")  # opening it for reading would wait for a writer
    make(tmp_path / "real", B)
    (tmp_path / f"{B}.cast").symlink_to(tmp_path / "real" / f"{B}.cast")
    code, out, _ = run(capsys, "sessions", "--dir", str(tmp_path), "--json")
    rows = {r["id"]: r for r in json.loads(out)["sessions"]}
    assert code == 0 and rows[A]["error"] == "not a regular file"
    assert rows[B]["error"].startswith("cannot open")
    code, out, _ = run(capsys, "replay", A, "--dir", str(tmp_path), "--json")
    assert code == 1 and json.loads(out)["code"] == "malformed"
    code, out, _ = run(capsys, "verify-recording", A, "--dir", str(tmp_path), "--digest",
                       "0" * 64, "--json")
    assert code == 1 and json.loads(out)["message"].startswith("not a regular file")


# jit replay --json ---------------------------------------------------------------------------

def test_replay_json_is_the_recording_as_one_object_without_pacing(root, capsys, monkeypatch):
    monkeypatch.setattr(cli_recordings.time, "sleep", lambda s: pytest.fail("paced"))
    make(sessions_dir(root), A, outputs=["$ ", "ok\x1b]52;c;cm0gLXJmIH4K\x07\r\n"])
    code, out, err = run(capsys, "replay", A, "--json")
    answer = json.loads(out)
    assert (code, err) == (0, "")
    assert (answer["ok"], answer["code"], answer["id"], answer["end"]) == (True, "ok", A,
                                                                          "exit 0")
    assert answer["header"]["jit"]["user"] == "alice" and answer["header"]["width"] == 80
    shown = "".join(text for _, kind, text in answer["events"] if kind == "o")
    assert shown == "$ ok\r\n"  # the clipboard write is left out, as `jit replay` does
    assert [t for t, kind, _ in answer["events"] if kind == "o"] == [0.0, 0.5]


def test_replay_json_of_a_recording_without_an_end(root, capsys):
    make(sessions_dir(root), A, close=False)
    code, out, _ = run(capsys, "replay", A, "--json")
    answer = json.loads(out)
    assert code == 0 and answer["end"] is None
    assert "".join(e[2] for e in answer["events"] if e[1] == "o") == "".join(OUT)


def test_replay_json_stopped_by_a_malformed_line_is_still_one_object(root, capsys):
    make(sessions_dir(root), A)
    path = sessions_dir(root) / f"{A}.cast"
    lines = path.read_bytes().split(b"\n")
    i = next(i for i, raw in enumerate(lines) if b"uid=0(root)" in raw)
    lines[i] = b"[1.0, broken"
    path.write_bytes(b"\n".join(lines))
    code, out, _ = run(capsys, "replay", A, "--json")
    answer = json.loads(out)
    assert (code, answer["ok"], answer["code"]) == (1, False, "malformed")
    assert answer["message"].startswith("stopped: ") and answer["end"] is None
    assert "".join(e[2] for e in answer["events"] if e[1] == "o") == "$ id\r\n"
