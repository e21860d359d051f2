"""The pipe path's pause (issue 23, DESIGN §13 "Live watching, the rest"): while a
moderated session is paused the recorder no longer reads stdin (what is typed stays
there, unread, as on the pty path), and reads it again on resume."""

from __future__ import annotations

import os
import select

import pytest

from hostd.record.options import Options
from hostd.record.piped import InputPipe, PipeRecorder


class Poller:
    """select.poll's registrations, kept to be looked at (fd -> event mask)."""

    def __init__(self) -> None:
        self.masks: dict[int, int] = {}

    def register(self, fd: int, mask: int) -> None:
        self.masks[fd] = mask

    def modify(self, fd: int, mask: int) -> None:
        assert fd in self.masks
        self.masks[fd] = mask

    def unregister(self, fd: int) -> None:
        del self.masks[fd]


@pytest.fixture
def piped():
    rec = PipeRecorder(Options())
    read, write = os.pipe()
    poller = Poller()
    rec.feed = InputPipe(rec, poller, write)
    yield rec, poller, read
    os.close(read)
    if rec.feed.fd >= 0:
        os.close(rec.feed.fd)
    for fd in (rec.sig_r, rec.sig_w):
        os.close(fd)


def test_a_pause_stops_reading_stdin_and_a_resume_reads_it_again(piped):
    rec, poller, _ = piped
    assert poller.masks[0] == select.POLLIN
    rec.block_input(True)
    assert poller.masks[0] == 0
    rec.feed.pump()  # the command took what was buffered: still not read while paused
    assert poller.masks[0] == 0
    rec.block_input(False)
    assert poller.masks[0] == select.POLLIN


def test_what_was_typed_before_the_pause_still_reaches_the_command(piped):
    rec, poller, read = piped
    rec.feed.buf += b"typed\n"
    rec.block_input(True)
    rec.feed.pump()
    assert os.read(read, 100) == b"typed\n" and poller.masks[0] == 0


def test_a_pause_after_stdin_ended_changes_nothing(piped):
    rec, poller, _ = piped
    rec.feed.stop_reading()
    rec.block_input(True)
    rec.block_input(False)
    assert 0 not in poller.masks


def test_without_recorded_input_there_is_no_stdin_to_block():
    rec = PipeRecorder(Options())
    try:
        rec.block_input(True)  # stdin is the command's own: the stop is enough
        assert getattr(rec, "feed", None) is None
    finally:
        for fd in (rec.sig_r, rec.sig_w):
            os.close(fd)
