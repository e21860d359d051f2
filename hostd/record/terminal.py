"""`jit-record` on a terminal: the command gets a pty of its own, led by a monitor
process (sudo's design) so that job control works for a program run directly."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import termios
import time
import tty

from hostd.record.proxy import (
    CHUNK,
    Recorder,
    child_env,
    exec_command,
    set_window_size,
    window_size,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hostd.record.options import Options


def monitor(opts: Options, env: dict[str, str]) -> None:
    """The pty's session leader (sudo's monitor, in small): the command runs in a
    process group of its own, in the foreground, so it is not orphaned and Ctrl-Z
    stops it (the kernel drops terminal stop signals to an orphaned group). When it
    stops, the monitor stops, the recorder sees that and stops too; SIGCONT comes back
    down the same way. Signals the recorder passes on are relayed to the command's
    group. Exits as the command did. Never returns."""
    try:
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            exec_command(opts, env)
        os.setpgid(pid, pid)  # both sides, so neither races the other
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        _foreground(pid)

        def relay(sig: int, _frame) -> None:
            try:
                os.killpg(pid, sig)
            except OSError:
                pass

        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGTSTP):
            signal.signal(sig, relay)
        for sig in (signal.SIGCHLD, signal.SIGWINCH, signal.SIGCONT):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        while True:
            _, status = os.waitpid(pid, os.WUNTRACED)
            if os.WIFSTOPPED(status):
                try:  # a job of the command's own (a moderation pause) keeps the terminal
                    fg = os.tcgetpgrp(0)
                except OSError:
                    fg = pid
                os.kill(os.getpid(), signal.SIGSTOP)  # until the recorder continues us
                _foreground(fg)
                relay(signal.SIGCONT, None)
                continue
            break
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    finally:
        os._exit(1)


def _foreground(pgrp: int) -> None:
    try:
        os.tcsetpgrp(0, pgrp)
    except OSError:
        pass


def session_groups(sid: int) -> tuple[list[int], list[int]]:
    """The process groups of the pty session `sid` (the monitor's) other than the
    monitor's own: (the command's group, every other group). From /proc."""
    top, others = set(), set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        ppid, pgrp, session = int(fields[1]), int(fields[2]), int(fields[3])
        if session == sid and pgrp != sid:
            (top if ppid == sid else others).add(pgrp)
    return sorted(top), sorted(others - top)



class PtyRecorder(Recorder):
    """Terminal on both ends: the command gets a pty of its own."""

    def raw_tty(self) -> None:
        if self.saved_tty is not None:
            tty.setraw(0, termios.TCSADRAIN)  # never TCSAFLUSH: typeahead is the user's

    def restore_tty(self) -> None:
        if self.saved_tty is not None:
            try:
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved_tty)
            except termios.error:
                pass

    def fg_pgrp(self) -> int:
        try:
            return os.tcgetpgrp(self.master)
        except OSError:
            return 0

    def pause(self, on: bool) -> None:
        """Stop every process group of the pty's session, the command's (a shell)
        first so it cannot see its jobs stop and take the terminal back; continue them
        in the other order, then the monitor (which stopped when the command did and
        gives the terminal back to the job that had it)."""
        self.paused = on
        self.block_input(on)
        top, others = session_groups(self.pid)
        for pgrp in (top + others) if on else (others + top):
            try:
                os.killpg(pgrp, signal.SIGSTOP if on else signal.SIGCONT)
            except OSError:
                pass
        if not on:
            self.resumed_at = time.monotonic()
            try:
                os.kill(self.pid, signal.SIGCONT)
            except OSError:
                pass

    def block_input(self, on: bool) -> None:
        """Keys stay in the terminal (unread) while paused."""
        if getattr(self, "stdin_open", False):
            self.poller.modify(0, 0 if on else select.POLLIN)

    def resize(self) -> None:
        cols, rows = window_size(0)
        set_window_size(self.master, cols, rows)
        self.record("resize", cols, rows)

    def run(self) -> int:
        cols, rows = window_size(0)
        self.open_sink(cols, rows)
        env = child_env(self.opts)
        self.master, slave = os.openpty()
        # stderr that is not the terminal (`2>file`) stays apart, as with sudo's use_pty
        self.err_r, err_w = os.pipe() if not os.isatty(2) else (-1, -1)
        try:
            termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))
        except termios.error:
            pass
        set_window_size(slave, cols, rows)
        self.install_signals()
        self.pid = os.fork()
        if self.pid == 0:
            signal.set_wakeup_fd(-1)
            os.close(self.master)
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if err_w >= 0:
                os.dup2(err_w, 2)
            if slave > 2:
                os.close(slave)
            self.close_own_fds()  # the monitor execs nothing: CLOEXEC does not apply
            monitor(self.opts, env)
        os.close(slave)
        if err_w >= 0:
            os.close(err_w)
        self.saved_tty = termios.tcgetattr(0)
        self.raw_tty()
        try:
            self.loop()
        finally:
            self.restore_tty()
        return self.finish()

    def loop(self) -> None:
        """Input to the pty is buffered and written without blocking: a command that
        reads no input while it prints must never leave both sides waiting."""
        os.set_blocking(self.master, False)
        self.typed = bytearray()
        self.stdin_open = True
        self.poller = poller = select.poll()
        poller.register(self.master, select.POLLIN)
        poller.register(0, select.POLLIN)
        if self.err_r >= 0:
            poller.register(self.err_r, select.POLLIN)
        poller.register(self.sig_r, select.POLLIN)
        self.sink_fd = self.sink.fileno() if self.sink is not None else None
        if self.sink_fd is not None:
            poller.register(self.sink_fd, select.POLLIN)
        while True:
            events = self.wait(poller)
            if not events:
                if self.status is not None:
                    self.drain_stderr()
                    return  # the command is gone and the pty is quiet
                continue
            for fd, ev in events:
                if self.on_ready(fd, ev):
                    return

    def on_ready(self, fd: int, ev: int) -> bool:
        """Handle one ready descriptor; True when the session is over."""
        if fd == self.master:
            return self.from_pty(ev)
        if fd == self.err_r:
            self.from_stderr()
        elif fd == 0:
            self.from_keys()
        elif fd == self.sig_r:
            self.on_signals(self.pending_signals())
        elif fd == self.sink_fd:
            self.from_hostd()
            if self.sink is None:
                self.poller.unregister(self.sink_fd)
                self.sink_fd = None
        return False

    def pump(self) -> None:
        """Write what was typed as far as the pty takes it; stop reading keys while
        a chunk's worth waits."""
        typed, poller = self.typed, self.poller
        while typed:
            try:
                del typed[:os.write(self.master, typed)]
            except BlockingIOError:
                break
            except OSError:  # the pty is going away
                typed.clear()
        poller.modify(self.master, select.POLLIN | (select.POLLOUT if typed else 0))
        if self.stdin_open:
            if len(typed) >= CHUNK:
                poller.modify(0, 0)  # read no more keys until the command takes these
            else:
                poller.modify(0, select.POLLIN)

    def from_pty(self, ev: int) -> bool:
        """The command's output (or the pty's end: True)."""
        if ev & select.POLLOUT:
            self.pump()
        if not ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            return False
        try:
            data = os.read(self.master, CHUNK)
        except BlockingIOError:
            return False
        except OSError:  # EIO: every holder of the slave closed it
            data = b""
        if not data:
            self.reap_blocking()
            self.drain_stderr()
            return True
        self.emit(1, self.out_masker, data, src=self.master)
        return False

    def from_stderr(self) -> None:
        try:
            data = os.read(self.err_r, CHUNK)
        except OSError:
            data = b""
        if not data or not self.emit(2, self.err_masker, data, src=self.err_r):
            self.poller.unregister(self.err_r)
            os.close(self.err_r)
            self.err_r = -1

    def from_keys(self) -> None:
        """What the user typed: recorded (masked) when input is recorded, then passed on."""
        try:
            data = os.read(0, CHUNK)
        except OSError:
            data = b""
        if not data:  # the user's terminal went away
            self.poller.unregister(0)
            self.stdin_open = False
            self.hang_up()
            return
        if self.record_input:
            masked = self.in_masker.feed(data) if self.in_masker else data
            self.note_held()
            if masked:
                self.record("input", masked)
        self.typed += data
        self.pump()

    def drain_stderr(self) -> None:
        """What the command left in the stderr pipe (never waiting for a writer that
        outlived it)."""
        if self.err_r < 0:
            return
        os.set_blocking(self.err_r, False)
        while True:
            try:
                data = os.read(self.err_r, CHUNK)
            except OSError:
                break
            if not data or not self.emit(2, self.err_masker, data):
                break
        os.close(self.err_r)
        self.err_r = -1

    def reap_blocking(self) -> None:
        if self.status is None:
            _, self.status = os.waitpid(self.pid, 0)

    def on_signals(self, sigs: list[int]) -> None:
        for sig in sigs:
            if sig == signal.SIGCHLD:
                self.reap()
            elif sig == signal.SIGWINCH:
                self.resize()
            elif sig == signal.SIGCONT:
                self.raw_tty()
                self.resize()
            elif sig in (signal.SIGALRM,):
                continue
            elif sig == signal.SIGTSTP:
                self.forward(signal.SIGTSTP)
            else:
                self.forward(sig)

    def forward(self, sig: int) -> None:
        if self.status is None:
            try:
                os.killpg(self.pid, sig)
            except OSError:
                pass
