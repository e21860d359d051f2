"""Warnings before expiry: the schedule (pure), the lines (escaped, one line each), and
writing them to a real pty without ever blocking."""

from __future__ import annotations

import fcntl
import os
import select
import tty
from pathlib import Path

import pytest

from hostd.server import warnings as ew

EXP = 1_800_000_000


@pytest.mark.parametrize("now,ahead,due", [
    (EXP - 3600, [(EXP - 300, 300), (EXP - 60, 60)], None),  # activated long before
    (EXP - 301, [(EXP - 300, 300), (EXP - 60, 60)], None),
    (EXP - 300, [(EXP - 60, 60)], 300),  # exactly due: given now
    (EXP - 200, [(EXP - 60, 60)], 300),  # restarted 200 s before expiry: the 5-min one now
    (EXP - 30, [], 60),  # restarted in the last minute: only the 1-min one, now
    (EXP, [], None),  # over: nothing
    (EXP + 5, [], None),
])
def test_schedule(now, ahead, due):
    assert ew.schedule(EXP, now) == (ahead, due)


def test_a_warning_given_already_is_not_given_again():
    assert ew.schedule(EXP, EXP - 200, {300}) == ([(EXP - 60, 60)], None)
    assert ew.schedule(EXP, EXP - 30, {300, 60}) == ([], None)
    assert ew.schedule(EXP, EXP - 3600, {300}) == ([(EXP - 60, 60)], None)


def test_a_short_grant_gets_the_warnings_that_fit():
    """A 2-minute grant: the 5-min warning at once, the 1-min one on time."""
    assert ew.schedule(EXP, EXP - 120) == ([(EXP - 60, 60)], 300)


@pytest.mark.parametrize("seconds,text", [(298.7, "4 min 58 s"), (60, "1 min 0 s"),
                                          (59.9, "59 s"), (-3, "0 s")])
def test_time_left(seconds, text):
    assert ew.left_text(seconds) == text


def test_warning_line_names_the_role_the_time_and_what_follows():
    line = ew.warning_line("docker", EXP, EXP - 300, "terminate-sessions")
    assert line == ("jit: your grant of role docker ends in 5 min 0 s (at 08:00:00 UTC); "
                    "sessions opened under it will be ended")
    assert "running shells keep them" in ew.warning_line("docker", EXP, EXP - 60,
                                                         "keep-sessions")


def test_lines_escape_what_they_show():
    line = ew.revoked_line("db\x1b[2J\nroot", "bob\r\nyou have mail", "terminate-sessions")
    assert "\x1b" not in line and "\n" not in line and "\r" not in line
    assert "db\\x1b[2J\\nroot" in line and line.endswith("sessions opened under it end now")
    text = ew.terminal_text(line)
    assert text.startswith("\r\n\a") and text.endswith("\r\n") and text.count("\n") == 2


@pytest.fixture
def pty():
    master, slave = os.openpty()
    tty.setraw(slave)  # what is read back is what was written (no \n -> \r\n)
    yield Path(os.ttyname(slave)), master
    os.close(master)
    os.close(slave)


def read_all(fd: int) -> bytes:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        out += chunk
    return out


def test_a_users_own_pty_is_found(pty):
    path, _ = pty
    assert path in ew.user_ttys(Path("/dev"), os.getuid(), [])


def test_session_ttys_are_named_once_and_checked(pty):
    path, _ = pty
    name = str(path.relative_to("/dev"))
    unused_uid = 59_999  # owns no pts: only the session's tty is found
    assert ew.user_ttys(Path("/dev"), unused_uid, [name, "/dev/" + name]) == [path]
    assert ew.user_ttys(Path("/dev"), unused_uid, ["../etc/passwd", "pts/x", "", "sda"]) == []


def test_warn_writes_one_line_to_the_users_terminal(pty):
    path, master = pty
    name = str(path.relative_to("/dev"))
    assert ew.warn(Path("/dev"), 59_999, [name], "jit: hello") == 1
    assert read_all(master) == b"\r\n\ajit: hello\r\n"


def test_a_full_terminal_never_blocks(pty):
    """Nobody reads the terminal: writes fail once it is full, and return at once."""
    path, master = pty
    flags = fcntl.fcntl(master, fcntl.F_GETFL)
    fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    results = [ew.write_tty(path, "x" * 4096) for _ in range(64)]
    assert results[0] and not all(results)


def test_only_character_devices_are_written(tmp_path):
    (tmp_path / "pts").mkdir()
    (tmp_path / "pts" / "0").write_text("")
    os.symlink("/dev/null", tmp_path / "pts" / "1")
    assert ew.user_ttys(tmp_path, os.getuid(), ["pts/0", "pts/1"]) == [
        tmp_path / "pts" / "0", tmp_path / "pts" / "1"]  # named by a session: tried...
    assert not ew.write_tty(tmp_path / "pts" / "0", "x")  # ... but not a tty
    assert not ew.write_tty(tmp_path / "pts" / "1", "x")  # ... and no symlink followed
    assert (tmp_path / "pts" / "0").read_text() == ""
