"""`jit-record` without a terminal on stdin or stdout: no pty, stdout and stderr
through pipes, masked each on its own; stdin relayed only when input is recorded."""

from __future__ import annotations

import fcntl
import os
import select
import signal

from hostd.record.proxy import CHUNK, Recorder, child_env, exec_command, window_size

PIPE_SIZE = 1 << 20  # the command's output pipes: a fast command fills them between reads
PIPE_CHUNK = 256 * 1024  # so a read takes up to this much: fewer, larger frames


class PipeRecorder(Recorder):
    """No terminal on stdin or stdout: no pty; stdout and stderr come through pipes,
    stdin too when input is recorded. The command stays in the recorder's process
    group, so a terminal's Ctrl-C reaches it directly (and is not sent twice)."""

    def run(self) -> int:
        cols, rows = window_size(1 if os.isatty(1) else 0)
        self.open_sink(cols, rows)
        env = child_env(self.opts)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            fcntl.fcntl(out_r, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:  # above /proc/sys/fs/pipe-max-size: the default 64 KiB then
            pass
        in_r = in_w = -1
        if self.record_input:
            in_r, in_w = os.pipe()
        self.install_signals()
        # A process group of its own lets a hang-up reach everything the command
        # started; not when stdin is a terminal, where the command must stay in the
        # foreground group to read it (and gets the terminal's signals directly).
        self.own_group = not os.isatty(0)
        self.pid = os.fork()
        if self.pid == 0:
            if self.own_group:
                os.setpgid(0, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            if in_r >= 0:
                os.dup2(in_r, 0)
            exec_command(self.opts, env)
        if self.own_group:
            try:
                os.setpgid(self.pid, self.pid)  # both sides: no race with the exec
            except OSError:
                pass
        os.close(out_w)
        os.close(err_w)
        if in_r >= 0:
            os.close(in_r)
        self.loop(out_r, err_r, in_w)
        return self.finish()

    def loop(self, out_r: int, err_r: int, in_w: int) -> None:
        poller = select.poll()
        streams = {out_r: (1, self.out_masker), err_r: (2, self.err_masker)}
        for fd in streams:
            poller.register(fd, select.POLLIN)
        poller.register(self.sig_r, select.POLLIN)
        feed = self.feed = InputPipe(self, poller, in_w) if in_w >= 0 else None
        sink_fd = self.sink.fileno() if self.sink is not None else None
        if sink_fd is not None:
            poller.register(sink_fd, select.POLLIN)
        while streams or self.status is None:
            # once the command is gone: what it left in the pipes, then stop (not what
            # it left running writes)
            events = self.wait(poller)
            if not events:
                if self.status is not None:
                    for fd in streams:
                        os.close(fd)
                    return
                continue
            for fd, _ev in events:
                if fd in streams:
                    try:
                        data = os.read(fd, PIPE_CHUNK)
                    except OSError:
                        data = b""
                    out, masker = streams[fd]
                    if not data or not self.emit(out, masker, data, PIPE_CHUNK, fd):
                        if masker is not None and masker.holding:
                            self.show_held(out, masker)
                        poller.unregister(fd)
                        os.close(fd)  # a reader gone: the command gets EPIPE/SIGPIPE
                        del streams[fd]
                elif fd == 0 and feed is not None:
                    feed.read()
                elif feed is not None and fd == feed.fd:
                    feed.pump()
                elif fd == self.sig_r:
                    self.on_signals(self.pending_signals())
                elif fd == sink_fd:
                    self.from_hostd()
                    if self.sink is None:
                        poller.unregister(sink_fd)
                        sink_fd = None
            if not streams and self.status is None:
                _, self.status = os.waitpid(self.pid, 0)

    def on_signals(self, sigs: list[int]) -> None:
        for sig in sigs:
            if sig == signal.SIGCHLD:
                self.reap()
            elif sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
                if self.own_group or not self.from_terminal():
                    self.forward(sig)
            elif sig in (signal.SIGWINCH, signal.SIGALRM):
                if sig == signal.SIGWINCH and os.isatty(1):
                    self.record("resize", *window_size(1))
            else:
                self.forward(sig)

    def from_terminal(self) -> bool:
        """A keyboard signal reached the whole foreground process group, the command
        included: passing it on would deliver it twice."""
        for fd in (0, 1, 2):
            try:
                if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                    return True
            except OSError:
                continue
        return False

    def block_input(self, on: bool) -> None:
        """A pause: stdin is no longer read (what is typed stays in it until resumed)."""
        feed = getattr(self, "feed", None)
        if feed is not None:
            feed.block(on)

    def forward(self, sig: int) -> None:
        if self.status is None:
            self.signal_command(sig)

    def suspend(self) -> None:
        """The command stopped: stop too, then continue it when continued."""
        os.kill(os.getpid(), signal.SIGSTOP)
        self.signal_command(signal.SIGCONT)


class InputPipe:
    """stdin to the command's stdin pipe when input is recorded: recorded (masked),
    buffered, written without blocking, so a command that prints and reads nothing
    never stalls the session; stdin's EOF closes the pipe once it is drained."""

    def __init__(self, recorder: Recorder, poller, fd: int) -> None:
        self.recorder, self.poller, self.fd = recorder, poller, fd
        self.buf = bytearray()
        self.reading = True
        self.blocked = False  # a moderated session's pause: stdin is left unread
        os.set_blocking(fd, False)
        poller.register(0, select.POLLIN)
        poller.register(fd, 0)

    def read(self) -> None:
        try:
            data = os.read(0, CHUNK)
        except OSError:
            data = b""
        if not data:
            self.reading = False
            self.poller.unregister(0)
        else:
            rec = self.recorder
            masked = rec.in_masker.feed(data) if rec.in_masker else data
            rec.note_held()
            if masked:
                rec.record("input", masked)
            self.buf += data
        self.pump()

    def pump(self) -> None:
        if self.fd < 0:
            return
        while self.buf:
            try:
                del self.buf[:os.write(self.fd, self.buf)]
            except BlockingIOError:
                break
            except OSError:  # the command closed its stdin: what is left is dropped
                self.buf.clear()
                if self.reading:
                    self.stop_reading()
        if not self.buf and not self.reading:
            self.poller.unregister(self.fd)
            os.close(self.fd)
            self.fd = -1
            return
        self.poller.modify(self.fd, select.POLLOUT if self.buf else 0)
        self.watch_stdin()

    def watch_stdin(self) -> None:
        """Read stdin while there is room for it and the session is not paused."""
        if self.reading:
            room = len(self.buf) < CHUNK and not self.blocked
            self.poller.modify(0, select.POLLIN if room else 0)

    def block(self, on: bool) -> None:
        self.blocked = on
        self.watch_stdin()

    def stop_reading(self) -> None:
        self.reading = False
        self.poller.unregister(0)


