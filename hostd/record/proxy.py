"""The proxy of `jit-record`, what both paths share (recorder_pty: the command on a
pty of its own; recorder_pipe: on pipes): the command's start as the runas account,
masking, then showing and recording, signals passed on, the exit status passed back.
See hostd/record/main.py for the whole picture and DESIGN.md §13 for the decisions."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import termios
import time

from hostd.record.sinks import FileSink, SinkFailed, make_masker, open_hostd, say

TYPE_CHECKING = False  # not typing's: it costs milliseconds at every start
if TYPE_CHECKING:
    from hostd.record.options import Options

CHUNK = 64 * 1024
IDLE_FLUSH = 0.05  # masked text held back this long is shown (prompts must appear)
HOLD_MAX = 1.0  # a secret still forming is held this long at most ([masking] hold)
HANGUP_GRACE = 10.0  # after a hangup, SIGKILL if the command is still there
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP, signal.SIGWINCH, signal.SIGCHLD,
             signal.SIGALRM)


# the terminal ------------------------------------------------------------------------------

def window_size(fd: int) -> tuple[int, int]:
    """(cols, rows) of a terminal, (80, 24) if it has none."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        if cols and rows:
            return cols, rows
    except OSError:
        pass
    return 80, 24


def set_window_size(fd: int, cols: int, rows: int) -> None:
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    except OSError:
        pass


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue
        except BlockingIOError:
            select.select([], [fd], [])


def readable(fd: int) -> bool:
    """Whether `fd` has more to read right now (a busy pty's reads are all short)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def exit_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


# the command -------------------------------------------------------------------------------

def child_env(opts: Options) -> dict[str, str]:
    """The environment sudo gave, with SHELL naming a real shell, never the recorder:
    a shell the command starts must not start another recorder (tlog's rule)."""
    env = dict(os.environ)
    shell = env.get("SHELL", "")
    if not shell or os.path.basename(shell) == "jit-record":
        import pwd

        try:
            env["SHELL"] = pwd.getpwuid(os.getuid() if opts.uid is None else opts.uid).pw_shell \
                or "/bin/sh"
        except KeyError:
            env["SHELL"] = "/bin/sh"
    return env


def exec_command(opts: Options, env: dict[str, str]) -> None:
    """In the forked child: drop to the runas account as sudo would (groups, then gid,
    then uid, all three ids of each), put back default signal dispositions (Python
    ignores SIGPIPE and SIGXFSZ, and exec keeps what is ignored), exec. Never returns."""
    try:
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if opts.gid is not None:
            os.setgroups(opts.groups if opts.groups is not None else [opts.gid])
            os.setresgid(opts.gid, opts.gid, opts.gid)
        if opts.uid is not None:
            os.setresuid(opts.uid, opts.uid, opts.uid)
            if opts.uid != 0 and os.geteuid() == 0:  # never run on as root by mistake
                os._exit(126)
        if opts.command:
            os.execve(opts.command, opts.argv, env)  # noqa: S606 - argv as sudo would run it
        os.execvpe(opts.argv[0], opts.argv, env)  # noqa: S606
    except OSError as exc:
        os.write(2, f"jit-record: {opts.command or opts.argv[0]}: {exc.strerror}\n".encode())
        os._exit(127 if exc.errno == errno.ENOENT else 126)
    finally:
        os._exit(126)


# the proxy ---------------------------------------------------------------------------------

class Recorder:
    """One session: the command, its streams, the sink, and the signals in between."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.start = time.monotonic()
        self.sink = None
        self.record_input = False
        self.record_failure = opts.record_failure
        self.out_masker = None
        self.err_masker = None
        self.in_masker = None
        self.pid = 0
        self.status: int | None = None
        self.saved_tty = None
        self.hangup_at: float | None = None
        self.held_since: float | None = None  # when a masker began holding bytes back
        self.due: float | None = None  # when what the maskers hold is next looked at
        self.hold_max = HOLD_MAX
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_w, False)
        os.set_blocking(self.sig_r, False)
        self.pty = os.isatty(0) and os.isatty(1)
        self.own_group = True  # the command leads a process group of its own
        self.paused = False  # a moderated session without its moderators (issue 23)
        self.resumed_at = -10.0  # a monitor's stop seen just after a resume is the pause's

    def now(self) -> float:
        return time.monotonic() - self.start

    # set-up ----------------------------------------------------------------------------

    def open_sink(self, cols: int, rows: int) -> None:
        opts = self.opts
        if opts.file:
            self.sink = FileSink(opts.file, cols, rows, opts.argv)
            builtins = opts.mask
            self.out_masker = make_masker([], builtins)
            self.err_masker = make_masker([], builtins)
            return
        from hostd.errors import JitError

        try:
            self.sink, answer = open_hostd(opts, cols, rows, self.pty)
        except JitError as exc:
            if self.record_failure != "continue":
                raise SinkFailed(f"cannot start the recording: {exc.message}; the command "
                                 "does not run (record_failure = terminate)") from None
            say(f"cannot start the recording: {exc.message}; the command runs unrecorded "
                "(record_failure = continue)")
            return
        rules = answer.get("masking") or []
        builtins = bool(answer.get("builtins", True))
        self.record_input = bool(answer.get("record_input"))
        hold = answer.get("hold", HOLD_MAX)
        if isinstance(hold, int | float) and not isinstance(hold, bool) and 0 <= hold <= 10:
            self.hold_max = float(hold)
        self.record_failure = str(answer.get("record_failure", opts.record_failure))
        extra = (answer.get("fields") or [], answer.get("optional") or [])
        self.out_masker = make_masker(rules, builtins, *extra)
        self.err_masker = make_masker(rules, builtins, *extra)
        self.in_masker = make_masker(rules, builtins, *extra) if self.record_input else None
        if os.isatty(2):
            say(f"this session is recorded ({self.sink.id})")
        if answer.get("moderated"):
            self.wait_for_start()

    def wait_for_start(self) -> None:
        """A moderated role: the command starts only when hostd says a moderator
        watches (`{"start"}`); Ctrl-C or a hang-up (join_timeout) ends it unstarted."""
        from hostd.errors import JitError
        from hostd.events import escape

        say(f"waiting for a moderator to watch this session (jit watch {self.sink.id} "
            "--moderate); Ctrl-C cancels")
        status = "cancelled"
        try:
            while True:
                frame = self.sink.stream.recv(timeout=None)
                if frame is None:
                    raise SinkFailed("jit-hostd closed the recording stream")
                if "start" in frame:
                    say(f"{escape(frame['start'])}: the session starts")
                    return
                if "hangup" in frame:
                    status = "not started"
                    raise SinkFailed(f"hostd ends this session: {escape(frame['hangup'])}")
        except KeyboardInterrupt:
            self._close_unstarted(status)
            raise SinkFailed("cancelled while waiting for a moderator") from None
        except JitError as exc:
            raise SinkFailed(exc.message) from None
        except SinkFailed:
            self._close_unstarted(status)
            raise

    def _close_unstarted(self, status: str) -> None:
        """The recording of a command that never ran ends with why (it verifies)."""
        try:
            self.sink.close(self.now(), status)
        except (SinkFailed, OSError):
            pass
    def install_signals(self) -> None:
        signal.set_wakeup_fd(self.sig_w, warn_on_full_buffer=False)
        for sig in FORWARDED:
            signal.signal(sig, lambda *_: None)
        for sig in (signal.SIGTTOU, signal.SIGTTIN):  # restoring the tty from the background
            signal.signal(sig, signal.SIG_IGN)

    def close_own_fds(self) -> None:
        """In a forked child that does not exec: drop the recorder's own descriptors,
        so hostd sees the stream end when the recorder does, not when the command
        does (others, such as sudo's intercept socket, stay for the command)."""
        own = [self.sig_r, self.sig_w, getattr(self, "err_r", -1)]
        if self.sink is not None and self.sink.fileno() is not None:
            own.append(self.sink.fileno())
        writer = getattr(self.sink, "writer", None)
        if writer is not None and getattr(writer, "_fh", None) is not None:
            own.append(writer._fh.fileno())
        for fd in own:
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass

    def pending_signals(self) -> list[int]:
        try:
            return list(os.read(self.sig_r, 256))
        except BlockingIOError:
            return []

    # recording, with failure as the role says ------------------------------------------

    def record(self, method: str, *args) -> None:
        if self.sink is None:
            return
        try:
            getattr(self.sink, method)(self.now(), *args)
        except (SinkFailed, OSError) as exc:
            self.sink_failed(str(exc))

    def sink_failed(self, why: str) -> None:
        self.sink = None
        if self.record_failure == "continue":
            say(f"{why}: the session is no longer recorded and goes on "
                "(record_failure = continue)")
        else:
            say(f"{why}: ending the session (record_failure = terminate)")
            self.hang_up()

    def hang_up(self) -> None:
        """SIGHUP to the command (its process group when it has one of its own, and the
        pty's foreground group); SIGKILL follows after HANGUP_GRACE."""
        if self.pid and self.status is None:
            self.signal_command(signal.SIGHUP)
            if self.hangup_at is None:
                self.hangup_at = time.monotonic() + HANGUP_GRACE

    def signal_command(self, sig: int) -> None:
        targets = {self.pid, self.fg_pgrp()} if self.own_group else {self.pid}
        for target in targets:
            if target <= 0:
                continue
            try:
                if self.own_group:
                    os.killpg(target, sig)
                else:
                    os.kill(target, sig)
            except OSError:
                pass

    def fg_pgrp(self) -> int:
        return 0

    def from_hostd(self) -> None:
        try:
            frames = self.sink.frames()
        except SinkFailed as exc:
            self.sink_failed(str(exc))
            return
        from hostd.events import escape

        for frame in frames:
            if "hangup" in frame:
                say(f"hostd ends this session: {escape(frame['hangup'])}")
                if self.paused:
                    self.pause(False)  # a stopped command cannot take its SIGHUP
                self.hang_up()
            elif "pause" in frame and not self.paused:
                say(f"session paused: {escape(frame['pause'])}; input is blocked until "
                    "a moderator watches again")
                self.pause(True)
            elif "resume" in frame and self.paused:
                say(f"session resumed: {escape(frame['resume'])}")
                self.pause(False)

    def pause(self, on: bool) -> None:
        """Stop the command (SIGSTOP) and block input, or continue both. The stop is
        ours, not the user's Ctrl-Z: reap() does not follow it (suspend)."""
        self.paused = on
        self.block_input(on)
        if on:
            self.signal_command(signal.SIGSTOP)
            return
        if self.pty and self.pid:  # the monitor stopped when the command did
            try:
                os.kill(self.pid, signal.SIGCONT)
            except OSError:
                pass
        self.signal_command(signal.SIGCONT)

    def block_input(self, on: bool) -> None:
        pass

    def emit(self, fd: int, masker, data: bytes, asked: int = CHUNK, src: int = -1) -> bool:
        """Mask, show, record (`data` from a read of `asked` bytes from `src`). False
        when the reader of `fd` went away."""
        if masker is not None:
            drained = len(data) < asked and (src < 0 or not readable(src))  # show it now
            data = masker.feed(data)
            self.note_held(drained)
        if not data:
            return True
        self.record("output", data)
        try:
            write_all(fd, data)
        except OSError:
            return False
        return True

    def wait(self, poller: select.poll) -> list[tuple[int, int]]:
        """One wait of the proxy loop. Once the command is gone, waits at most 50 ms
        (only what it left in the pipes is still read). A quiet wait shows what the
        maskers held and checks the hang-up grace; returns [] then."""
        self.flush_due()
        timeout = self.timeout()
        if self.status is not None:
            timeout = 0.05 if timeout is None else min(timeout, 0.05)
        try:
            events = poller.poll(None if timeout is None else timeout * 1000)
        except InterruptedError:
            events = []
        if not events:
            self.flush_due()
            self.check_grace()
        return events

    def show_held(self, fd: int, masker, idle: bool = False, hold: bool = False) -> None:
        """Show on `fd` and record what `masker` held back."""
        data = masker.flush(idle, hold)
        if data:
            self.record("output", data)
            try:
                write_all(fd, data)
            except OSError:
                pass

    def flush_maskers(self, idle: bool = False, hold: bool = False) -> None:
        """Show and record what the maskers held back: at the end everything; on an idle
        flush all but a secret still forming, which `hold` keeps until hold_max."""
        for fd, masker in ((1, self.out_masker), (2, self.err_masker)):
            if masker is not None and masker.holding:
                self.show_held(fd, masker, idle, hold)
        if self.in_masker is not None and self.in_masker.holding:
            data = self.in_masker.flush(idle, hold)
            if data:
                self.record("input", data)
        if not self.holding():
            self.held_since = self.due = None
        elif hold:
            self.due = self.held_since + self.hold_max  # only forming secrets are left
        else:
            self.held_since = self.due = None
            self.note_held()

    def holding(self) -> bool:
        return any(m is not None and m.holding
                   for m in (self.out_masker, self.err_masker, self.in_masker))

    def note_held(self, drained: bool = False) -> None:
        """After bytes came: what a masker holds is looked at IDLE_FLUSH after it began
        to be held (a clock per hold), a secret still forming IDLE_FLUSH after its
        latest byte, up to hold_max; at once if their read `drained` the stream (the
        idle flush keeps a forming secret whenever it runs: DESIGN §13)."""
        if not self.holding():
            self.held_since = self.due = None
            return
        now = time.monotonic()
        if self.held_since is None:
            self.held_since = now
        soon = now if drained else now + IDLE_FLUSH
        if self.due is None or self.due > soon:
            self.due = soon

    def flush_due(self) -> None:
        now = time.monotonic()
        if self.due is not None and now >= self.due:
            self.flush_maskers(idle=True, hold=now < self.held_since + self.hold_max)

    def reap(self) -> None:
        if self.status is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG | os.WUNTRACED)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSTOPPED(status):
            if self.paused:  # a pause's SIGSTOP is hostd's, not a Ctrl-Z
                return
            if time.monotonic() - self.resumed_at < 2.0:  # the pause's, seen late
                os.kill(self.pid, signal.SIGCONT)
                return
            self.suspend()
        else:
            self.status = status

    def suspend(self) -> None:
        """The command stopped (Ctrl-Z in a program without job control of its own):
        stop too, so the shell (or sudo) above sees it; on SIGCONT take over again."""
        self.restore_tty()
        os.kill(os.getpid(), signal.SIGSTOP)
        self.raw_tty()
        if self.pty:
            self.resize()
        try:
            os.killpg(self.pid, signal.SIGCONT)
        except OSError:
            pass

    def raw_tty(self) -> None:
        pass

    def restore_tty(self) -> None:
        pass

    def resize(self) -> None:
        pass

    def finish(self) -> int:
        """Close the recording with the command's status and pass the status on."""
        self.flush_maskers()
        for masker in (self.in_masker,):
            if masker is not None and masker.holding:
                data = masker.flush()
                if data:
                    self.record("input", data)
        status = self.status if self.status is not None else 0
        if self.sink is not None:
            try:
                self.sink.close(self.now(), exit_status(status))
            except (SinkFailed, OSError) as exc:
                say(f"the recording could not be closed: {exc}")
        self.restore_tty()
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            signal.set_wakeup_fd(-1)
            signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
            return 128 + sig
        return os.waitstatus_to_exitcode(status)

    def check_grace(self) -> None:
        if self.hangup_at is not None and time.monotonic() > self.hangup_at and \
                self.status is None:
            self.signal_command(signal.SIGKILL)
            self.hangup_at = None

    def timeout(self) -> float | None:
        waits = []
        if self.holding():
            due = self.due if self.due is not None else time.monotonic() + IDLE_FLUSH
            waits.append(max(0.0, due - time.monotonic()))
        if self.hangup_at is not None:
            waits.append(max(0.0, self.hangup_at - time.monotonic()))
        return min(waits) if waits else None
