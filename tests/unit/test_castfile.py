"""hostd/record/castfile.py: recordings are asciicast v2 that asciinema and scriptreplay play,
and every kind of tampering is caught by the chain or by the journal's digest."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import stat
import subprocess
import termios
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hostd.record import castfile
from hostd.record.castexport import export_events
from hostd.record.castfile import END_PREFIX, CastError, CastWriter, iter_cast, summary, verify


# A recording read back whole: only tests need it (hostd streams with iter_cast).
@dataclass
class Cast:
    """A recording read back: the header object and every event, markers included."""

    path: Path
    header: dict
    events: list[tuple[float, str, str]] = field(default_factory=list)

    @property
    def meta(self) -> dict:
        meta = self.header.get("jit")
        return meta if isinstance(meta, dict) else {}

    @property
    def duration(self) -> float:
        return self.events[-1][0] if self.events else 0.0

    @property
    def status(self) -> str | None:
        """The status on the end line; None if the recording has no end (truncated)."""
        if self.events and self.events[-1][1] == "m" and \
                self.events[-1][2].startswith(END_PREFIX):
            rest = self.events[-1][2][len(END_PREFIX) + 64:]
            return rest[1:] if rest.startswith(" ") else rest
        return None

    def output(self) -> str:
        """Everything the terminal showed, in order."""
        return "".join(d for _, c, d in self.events if c == "o")


def read_cast(path: Path) -> Cast:
    """Read a recording (CastError if malformed, FileNotFoundError if absent). The chain
    is not checked here: verify() does that."""
    header, events = iter_cast(path)
    return Cast(Path(path), header, list(events))


RID = "0123456789abcdef"
HEADER = {"width": 100, "height": 30, "timestamp": 1796018800, "env": {"TERM": "xterm"},
          "id": RID, "user": "alice", "runas": "root", "command": ["/bin/bash", "-i"],
          "grant_id": "g-1", "host": "web1", "started": "2026-11-30T06:00:00Z",
          "session_id": "s-1"}
OUTPUT = ["$ ", "echo héllo\r\n", "héllo\r\n"] + [f"line {i}\r\n" for i in range(150)] + ["$ "]


def record(path: Path, outputs=OUTPUT, status="exit 0") -> str:
    w = CastWriter(path, HEADER)
    for i, text in enumerate(outputs):
        w.output(i * 0.01, text.encode())
    w.resize(2.0, 120, 40)
    w.input(2.1, b"exit\r")
    return w.close(2.5, status)


@pytest.fixture
def cast(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / f"{RID}.cast"
    return path, record(path)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def event_line(lines: list[bytes], text: str) -> int:
    """Index of the output event carrying `text`."""
    return next(i for i, raw in enumerate(lines) if i and json.loads(raw)[2] == text)


# writing and reading ------------------------------------------------------------------

def test_written_file_reads_back_and_verifies(cast):
    path, digest = cast
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    c = read_cast(path)
    assert c.header["version"] == 2 and c.header["width"] == 100
    assert c.meta["user"] == "alice" and c.meta["format"] == castfile.FORMAT
    assert c.output() == "".join(OUTPUT)
    assert c.status == "exit 0" and c.duration == 2.5
    assert ("r" , "120x40") in [(code, text) for _, code, text in c.events]
    assert (2.1, "i", "exit\r") in c.events
    markers = [text for _, code, text in c.events if code == "m"]
    assert len(markers) >= 3  # after the header, every MARK_EVERY events, the end
    v = verify(path, digest)
    assert (v.ok, v.digest, v.first_bad_line, v.complete) == (True, digest, None, True)
    assert verify(path, None).ok


def test_every_event_line_is_a_triple_asciinema_can_unpack(cast):
    path, _ = cast
    for raw in lines_of(path)[1:]:
        _t, code, data = json.loads(raw)  # what asciinema 2.2 does with each line
        assert code in ("o", "i", "r", "m") and isinstance(data, str)


def test_split_utf8_is_kept_for_the_next_call_and_binary_survives(tmp_path):
    path = tmp_path / "a.cast"
    w = CastWriter(path, HEADER)
    data = "é€𝄞".encode()
    for i in range(len(data)):  # one byte at a time: never a replacement character
        w.output(0.1, data[i:i + 1])
    w.output(0.2, b"\xff\xfebin\x00")
    w.output(0.3, b"x" + "€".encode()[:2])  # cut at the end: replaced at close
    w.close(0.4, "exit 0")
    out = read_cast(path).output()
    assert out == "é€𝄞" + "\ufffd\ufffdbin\x00" + "x\ufffd"


def test_times_never_go_backwards_and_bad_values_are_refused(tmp_path):
    path = tmp_path / "a.cast"
    w = CastWriter(path, HEADER)
    w.output(1.5, b"a")
    w.output(1.0, b"b")  # a late timestamp is clamped, not written out of order
    with pytest.raises(ValueError):
        w.output(float("nan"), b"c")
    with pytest.raises(ValueError):
        w.resize(1.0, 0, 10)
    w.close(2.0, "exit 0")
    times = [t for t, _, _ in read_cast(path).events]
    assert times == sorted(times)
    assert verify(path, None).ok


def test_writer_never_opens_an_existing_file_or_a_symlink(tmp_path):
    path = tmp_path / "a.cast"
    path.write_text("x")
    with pytest.raises(FileExistsError):
        CastWriter(path, HEADER)
    assert path.read_text() == "x"
    target = tmp_path / "target"
    link = tmp_path / "b.cast"
    link.symlink_to(target)
    with pytest.raises(OSError):
        CastWriter(link, HEADER)
    assert not target.exists()


def test_header_needs_a_real_size(tmp_path):
    with pytest.raises(ValueError):
        CastWriter(tmp_path / "a.cast", {**HEADER, "width": "80"})
    assert not (tmp_path / "a.cast").exists()


def test_digest_property_follows_the_chain(tmp_path):
    w = CastWriter(tmp_path / "a.cast", HEADER)
    before = w.digest
    w.output(0.1, b"x")
    assert w.digest != before
    final = w.close(0.2, "exit 0")
    assert final == w.digest == w.close(0.3, "again")  # closing twice is harmless


@pytest.mark.parametrize("content,reason", [
    (b"", "empty"),
    (b"not json\n", "header is not JSON"),
    (b'{"version": 1}\n', "not an asciicast v2 header"),
    (b'{"version": 2, "width": 80, "height": 24}\n', "not a jit recording"),
    (b'{"version": 2, "width": 80, "height": 24, "jit": {"format": "jit-cast/2"}}\n',
     "is not jit-cast/1"),
    (b'{"version": 2, "jit": {"format": "jit-cast/1"}}\n[0.1, "o"]\n', r"not \[time, code"),
    (b'{"version": 2, "jit": {"format": "jit-cast/1"}}\n[0.1, "x", "a"]\n', r"not \[time, code"),
    (b'{"version": 2, "jit": {"format": "jit-cast/1"}}\n[0.2, "o", "a"]\n[0.1, "o", "b"]\n',
     "time goes backwards"),
    (b'{"version": 2, "jit": {"format": "jit-cast/1"}}\n[0.1, "o", "a"]', "cut short"),
])
def test_malformed_files_get_a_named_error(tmp_path, content, reason):
    path = tmp_path / "bad.cast"
    path.write_bytes(content)
    with pytest.raises(CastError, match=reason):
        read_cast(path)
    assert not verify(path, None).ok


def test_reading_a_missing_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_cast(tmp_path / "none.cast")
    with pytest.raises(FileNotFoundError):
        verify(tmp_path / "none.cast", None)


# tampering ----------------------------------------------------------------------------

def tampered(path: Path, digest: str, change) -> castfile.Verdict:
    lines = lines_of(path)
    write_lines(path, change(lines))
    v = verify(path, digest)
    assert not v.ok
    return v


def test_edited_output_is_caught_near_the_edit(cast):
    path, digest = cast

    def edit(lines):
        i = event_line(lines, "line 70\r\n")
        lines[i] = lines[i].replace(b"line 70", b"line 7O")
        edit.index = i + 1  # 1-based line number
        return lines
    v = tampered(path, digest, edit)
    assert "chain broken" in v.reason
    assert v.first_bad_line <= edit.index
    assert edit.index - v.first_bad_line < castfile.MARK_EVERY + 1


@pytest.mark.parametrize("which", ["line 3\r\n", "line 149\r\n", "$ "])
def test_a_deleted_line_is_caught(cast, which):
    path, digest = cast

    def delete(lines):
        del lines[event_line(lines, which)]
        return lines
    assert "chain broken" in tampered(path, digest, delete).reason


def test_a_deleted_marker_is_caught(cast):
    path, digest = cast

    def delete(lines):
        i = next(i for i in range(3, len(lines))
                 if json.loads(lines[i])[1] == "m")
        del lines[i]
        return lines
    assert "chain broken" in tampered(path, digest, delete).reason


def test_reordered_lines_are_caught(cast):
    path, digest = cast

    def swap(lines):  # same time stamp, so only the chain can tell
        a = event_line(lines, "line 10\r\n")
        b = event_line(lines, "line 11\r\n")
        ta = json.loads(lines[a])[0]
        lines[a], lines[b] = lines[b], lines[a]
        lines[a] = json.dumps([ta, "o", "line 11\r\n"], ensure_ascii=False).encode()
        lines[b] = json.dumps([ta, "o", "line 10\r\n"], ensure_ascii=False).encode()
        return lines
    assert "chain broken" in tampered(path, digest, swap).reason


def test_moved_lines_with_other_times_are_caught(cast):
    path, digest = cast

    def move(lines):
        i = event_line(lines, "line 20\r\n")
        lines.insert(event_line(lines, "line 40\r\n"), lines.pop(i))
        return lines
    assert not tampered(path, digest, move).ok


@pytest.mark.parametrize("keep", [1, 2, 50, -1])
def test_truncation_is_caught(cast, keep):
    path, digest = cast
    v = tampered(path, digest, lambda lines: lines[:keep])
    assert "truncated" in v.reason and not v.complete


def test_a_line_cut_in_the_middle_is_caught(cast):
    path, digest = cast
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    v = verify(path, digest)
    assert not v.ok and "truncated" in v.reason


def test_an_edited_header_is_caught_at_line_1(cast):
    path, digest = cast

    def edit(lines):
        lines[0] = lines[0].replace(b'"alice"', b'"mallory"')
        return lines
    v = tampered(path, digest, edit)
    assert v.first_bad_line == 1 and "line 1 " in v.reason


def test_lines_after_the_end_are_caught(cast):
    path, digest = cast
    v = tampered(path, digest, lambda lines: [*lines, b'[9.0, "o", "more"]'])
    assert "follows the end line" in v.reason


def test_an_edited_status_is_caught_by_the_journal_digest(cast):
    path, digest = cast

    def edit(lines):
        lines[-1] = lines[-1].replace(b"exit 0", b"exit 1")
        return lines
    v = tampered(path, digest, edit)
    assert v.first_bad_line is None and "hostd logged" in v.reason


def test_a_recomputed_chain_is_caught_only_by_the_journal_digest(cast, tmp_path):
    path, digest = cast
    forged = tmp_path / "forged.cast"
    record(forged, [t.replace("héllo", "hello") for t in OUTPUT])
    os.replace(forged, path)
    assert verify(path, None).ok  # a consistent chain ...
    v = verify(path, digest)      # ... but not the one hostd logged
    assert not v.ok and "digest differs" in v.reason


# players ------------------------------------------------------------------------------

def _on_a_terminal(argv: list[str]) -> bytes:
    """Run argv with a pty as its controlling terminal (asciinema cat opens /dev/tty)
    and its stdout on a pipe (no tty output processing), return stdout."""
    master, slave = os.openpty()

    def ctty() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    try:
        done = subprocess.run(argv, stdin=slave, capture_output=True,
                              start_new_session=True,
                              preexec_fn=ctty, timeout=60, check=False)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def test_asciinema_cat_shows_exactly_what_was_written(cast):
    path, _ = cast
    assert shutil.which("asciinema"), "asciinema is a test dependency (install-deps.sh)"
    assert _on_a_terminal(["asciinema", "cat", str(path)]).decode() == "".join(OUTPUT)


def test_asciinema_play_plays_it_markers_and_all(cast):
    path, _ = cast
    played = _on_a_terminal(["asciinema", "play", "-s", "100", "-i", "0.01", str(path)])
    assert played.decode() == "".join(OUTPUT)


def test_scriptreplay_plays_an_export(cast, tmp_path):
    path, _ = cast
    out_dir = tmp_path / "export"
    out_dir.mkdir()
    log, timing = export_events(path, *iter_cast(path), out_dir)
    assert (log.name, timing.name) == (f"{RID}.log", f"{RID}.timing")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    played = subprocess.run(["scriptreplay", "-t", str(timing), "-d", "1000", str(log)],
                            capture_output=True, timeout=60, check=True).stdout
    # scriptreplay ends with a newline of its own
    assert played == "".join(OUTPUT).encode() + b"\n"
    with pytest.raises(FileExistsError):  # never overwrites
        export_events(path, *iter_cast(path), out_dir)


def test_summary_reads_header_and_end_only(cast):
    path, _ = cast
    row = summary(path)
    assert row["id"] == RID and row["user"] == "alice" and row["runas"] == "root"
    assert row["command"] == ["/bin/bash", "-i"] and row["duration"] == 2.5
    assert row["status"] == "exit 0" and row["ended"] and row["size"] == path.stat().st_size


def test_summary_of_a_recording_still_being_written(tmp_path):
    path = tmp_path / "a.cast"
    w = CastWriter(path, HEADER)
    w.output(0.5, b"x" * 10)
    w._fh.flush()
    row = summary(path)
    assert row["ended"] is False and row["status"] is None
    w.close(1.0, "exit 0")
