"""hostd/server/ttys.py's registry: terminals held per PAM process, written per user,
dropped at close_session, when the process is gone, or when the terminal hangs up."""

from __future__ import annotations

import os
import subprocess
import sys

from hostd.server.ttys import Terminal, Terminals, _is_terminal


def held(fd: int, pid: int, uid: int) -> Terminal:
    rdev = _is_terminal(fd)
    assert rdev is not None
    return Terminal(fd, pid, uid, rdev)


def test_write_reaches_the_users_terminals_and_close_pid_lets_go(tmp_path):
    terms = Terminals(tmp_path / "terminal.sock", lambda name: None)
    m1, s1 = os.openpty()
    m2, s2 = os.openpty()
    try:
        assert terms.add(held(os.dup(s1), os.getpid(), 1001))
        assert terms.add(held(os.dup(s2), os.getpid(), 1002))
        n, devices = terms.write(1001, "hello\r\n")
        assert (n, devices) == (1, {os.fstat(s1).st_rdev})
        assert os.read(m1, 100).startswith(b"hello\r")  # as the tty shows it (onlcr)
        assert terms.close_pid(os.getpid()) == 2
        assert terms.write(1001, "again") == (0, set())
    finally:
        for fd in (m1, s1, m2, s2):
            os.close(fd)


def test_a_gone_process_or_a_hung_up_terminal_is_dropped(tmp_path):
    terms = Terminals(tmp_path / "terminal.sock", lambda name: None)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    master, slave = os.openpty()
    assert terms.add(held(os.dup(slave), int(gone.stdout), 1001))
    assert terms.write(1001, "x") == (0, set())  # its PAM process is gone
    assert terms.users() == set()
    assert terms.add(held(os.dup(slave), os.getpid(), 1001))
    os.close(master)  # the other side hangs up: writes fail with EIO
    os.close(slave)
    assert terms.write(1001, "x") == (0, set())
    assert terms.users() == set()


def test_only_a_tty_counts():
    r, w = os.pipe()
    try:
        assert _is_terminal(r) is None
        assert _is_terminal(9999) is None
    finally:
        os.close(r)
        os.close(w)
