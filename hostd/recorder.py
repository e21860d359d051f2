"""`jit-record`: the session recorder (DESIGN.md §9), a pty proxy in the manner of tlog.

    jit-record --token T [--uid U --gid G --groups G,...] [--record-failure MODE]
               [--command PATH] -- ARGV...          (as sudo runs it, for hostd)
    jit-record --file PATH [--no-mask] -- ARGV...   (a local recording, no hostd)

With a terminal on stdin and stdout the command runs on a pty of its own: the user's
terminal goes to raw mode, keys go to the pty, the pty's output is masked and then
shown and recorded; window-size changes (SIGWINCH) follow, a stopped command stops the
recorder, signals are passed on, and the command's exit status (or the signal that
killed it) becomes the recorder's. Without a terminal (pipes, redirects) there is no
pty: stdout and stderr come through pipes, masked each on its own, and stdin is passed
through untouched unless input is recorded.

With `--token` hostd alone writes the recording: `record.open` answers with the masking
rules, `record_input` and `record_failure`, then takes frames (output, input, resize,
end). If hostd goes away mid-session, `record_failure` decides: `terminate` hangs the
command up, `continue` carries on unrecorded; either way the recorder says so on
stderr. sudo runs the recorder as root with the argv hostd built; the recorder drops to
the runas uid, gid and groups (`--uid/--gid/--groups`) for the command, as sudo would.

Starts fast: standard library and hostd's stdlib client only, no asyncio; the masking
and asciicast modules are imported only when needed. Output moves in 64 KiB reads; with
no masking rules nothing looks at the bytes in Python.
"""

from __future__ import annotations

import binascii
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import termios
import time
import tty

RECORDER = "/usr/bin/jit-record"
SOCKET = "/run/jit/hostd.sock"
CHUNK = 64 * 1024
FRAME = 32 * 1024  # raw bytes per frame: its base64 fits hostd's 64 KiB line
IDLE_FLUSH = 0.05  # masked text held back this long is shown (prompts must appear)
HANGUP_GRACE = 10.0  # after a hangup, SIGKILL if the command is still there
SEND_TIMEOUT = 10.0
FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGCONT, signal.SIGTSTP, signal.SIGWINCH, signal.SIGCHLD,
             signal.SIGALRM)
USAGE = ("usage: jit-record [--token T] [--uid U --gid G --groups G,...] "
         "[--record-failure terminate|continue] [--command PATH] [--file PATH] "
         "[--no-mask] [--socket PATH] -- COMMAND [ARG...]")


class Usage(Exception):
    pass


def say(text: str) -> None:
    """A line from the recorder itself, on stderr: `\\r\\n` since the terminal may be raw."""
    try:
        os.write(2, f"\r\njit-record: {text}\r\n".encode())
    except OSError:
        pass


# options -----------------------------------------------------------------------------------

class Options:
    def __init__(self) -> None:
        self.token = ""
        self.socket = SOCKET
        self.uid: int | None = None
        self.gid: int | None = None
        self.groups: list[int] | None = None
        self.record_failure = "terminate"
        self.command = ""
        self.file = ""
        self.mask = True
        self.argv: list[str] = []


def parse_args(argv: list[str]) -> Options:
    """By hand, not argparse: the recorder starts on every recorded sudo."""
    opts = Options()
    i = 0
    valued = {"--token", "--socket", "--uid", "--gid", "--groups", "--record-failure",
              "--command", "--file"}
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.argv = argv[i + 1:]
            break
        if arg == "--no-mask":
            opts.mask = False
            i += 1
            continue
        if arg not in valued or i + 1 >= len(argv):
            raise Usage(f"unknown option {arg!r}" if arg not in valued else f"{arg} needs a value")
        value = argv[i + 1]
        i += 2
        try:
            if arg == "--uid":
                opts.uid = int(value)
            elif arg == "--gid":
                opts.gid = int(value)
            elif arg == "--groups":
                opts.groups = [int(g) for g in value.split(",") if g]
            else:
                setattr(opts, arg[2:].replace("-", "_"), value)
        except ValueError:
            raise Usage(f"{arg} must be a number") from None
    if not opts.argv:
        raise Usage("no command given")
    if opts.record_failure not in ("terminate", "continue"):
        raise Usage("--record-failure is terminate or continue")
    if bool(opts.token) == bool(opts.file):
        raise Usage("give --token (recorded by hostd) or --file (a local recording)")
    if opts.token and not opts.mask:  # hostd decides what is masked
        raise Usage("--no-mask is for local recordings only")
    return opts


# where the session goes ----------------------------------------------------------------------

class SinkFailed(Exception):
    """The recording cannot go on (hostd gone, disk full)."""


class FileSink:
    """A local asciicast file (`--file`): no hostd, the user's own recording."""

    def __init__(self, path: str, width: int, height: int, argv: list[str]) -> None:
        from pathlib import Path

        from .castfile import CastWriter

        header = {"version": 2, "width": width, "height": height,
                  "timestamp": int(time.time()), "command": " ".join(argv),
                  "env": {"TERM": os.environ.get("TERM", ""),
                          "SHELL": os.environ.get("SHELL", "")}}
        self.writer = CastWriter(Path(path), header)
        self.id = os.path.basename(path)

    def fileno(self) -> int | None:
        return None

    def output(self, t: float, data: bytes) -> None:
        self.writer.output(t, data)

    def input(self, t: float, data: bytes) -> None:
        self.writer.input(t, data)

    def resize(self, t: float, cols: int, rows: int) -> None:
        self.writer.resize(t, cols, rows)

    def frames(self) -> list[dict]:
        return []

    def close(self, t: float, status: str) -> str:
        return self.writer.close(t, status)


class HostdSink:
    """Frames to hostd over the `record.open` stream, built as bytes (no json.dumps on
    the data path): `{"t":T,"o":"BASE64"}`, at most FRAME raw bytes each."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.sock = stream.client._sock
        self.sock.settimeout(SEND_TIMEOUT)
        self.id = stream.opened.get("id", "")

    def fileno(self) -> int:
        return self.sock.fileno()

    def _send(self, line: bytes) -> None:
        try:
            self.sock.sendall(line)
        except OSError as exc:
            raise SinkFailed(f"lost the connection to jit-hostd ({exc.strerror or exc})") \
                from None

    def _data(self, key: bytes, t: float, data: bytes) -> None:
        for start in range(0, len(data), FRAME):
            chunk = binascii.b2a_base64(data[start:start + FRAME], newline=False)
            self._send(b'{"t":%.6f,"%s":"%s"}\n' % (t, key, chunk))

    def output(self, t: float, data: bytes) -> None:
        self._data(b"o", t, data)

    def input(self, t: float, data: bytes) -> None:
        self._data(b"i", t, data)

    def resize(self, t: float, cols: int, rows: int) -> None:
        self._send(b'{"t":%.6f,"r":[%d,%d]}\n' % (t, cols, rows))

    def frames(self) -> list[dict]:
        """What hostd sent (a hangup); SinkFailed when it closed the stream."""
        from .errors import JitError

        try:
            frame = self.stream.recv(timeout=SEND_TIMEOUT)
        except JitError as exc:
            raise SinkFailed(exc.message) from None
        if frame is None:
            raise SinkFailed("jit-hostd closed the recording stream")
        return [frame]

    def close(self, t: float, status: str) -> str:
        import json

        from .errors import JitError

        self._send(json.dumps({"t": round(t, 6), "end": status[:64]}).encode() + b"\n")
        try:
            while True:
                frame = self.stream.recv(timeout=SEND_TIMEOUT)
                if frame is None:
                    raise SinkFailed("jit-hostd closed the stream before the recording's end")
                if "ok" in frame:
                    break
        except JitError as exc:
            raise SinkFailed(exc.message) from None
        finally:
            self.stream.close()
        if not frame.get("ok"):
            raise SinkFailed(str(frame.get("message", "the recording could not be closed")))
        return str(frame.get("sha256", ""))


def open_hostd(opts: Options, width: int, height: int, pty_mode: bool):
    """record.open with the one-time token: (sink, the answer)."""
    from .client import Client

    client = Client(opts.socket, timeout=SEND_TIMEOUT, trusted=True)
    stream = client.stream("record.open", token=opts.token, width=width, height=height,
                           term=os.environ.get("TERM", "")[:64], pty=pty_mode)
    return HostdSink(stream), stream.opened


def make_masker(rules: list, builtins: bool):
    """A Masker, or None when there is nothing to mask (the fast path)."""
    if not rules and not builtins:
        return None
    from .masking import Masker

    return Masker([(str(n), str(r)) for n, r in rules], builtins=builtins)


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
                os.kill(os.getpid(), signal.SIGSTOP)  # until the recorder continues us
                _foreground(pid)
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
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_w, False)
        os.set_blocking(self.sig_r, False)
        self.pty = os.isatty(0) and os.isatty(1)
        self.own_group = True  # the command leads a process group of its own

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
        from .errors import JitError

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
        self.record_failure = str(answer.get("record_failure", opts.record_failure))
        self.out_masker = make_masker(rules, builtins)
        self.err_masker = make_masker(rules, builtins)
        self.in_masker = make_masker(rules, builtins) if self.record_input else None
        if os.isatty(2):
            say(f"this session is recorded ({self.sink.id})")

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
        for frame in frames:
            if "hangup" in frame:
                from .events import escape

                say(f"hostd ends this session: {escape(frame['hangup'])}")
                self.hang_up()

    def emit(self, fd: int, masker, data: bytes) -> bool:
        """Mask, show, record. False when the reader of `fd` went away."""
        if masker is not None:
            data = masker.feed(data)
            self.note_held()
        if not data:
            return True
        self.record("output", data)
        try:
            write_all(fd, data)
        except OSError:
            return False
        return True

    def flush_maskers(self) -> None:
        """Show and record what the maskers held back (IDLE_FLUSH after it came)."""
        self.held_since = None
        for fd, masker in ((1, self.out_masker), (2, self.err_masker)):
            if masker is not None and masker.holding:
                data = masker.flush()
                if data:
                    self.record("output", data)
                    try:
                        write_all(fd, data)
                    except OSError:
                        pass
        if self.in_masker is not None and self.in_masker.holding:
            data = self.in_masker.flush()
            if data:
                self.record("input", data)

    def holding(self) -> bool:
        return any(m is not None and m.holding
                   for m in (self.out_masker, self.err_masker, self.in_masker))

    def note_held(self) -> None:
        """Start the idle clock when a masker begins to hold bytes back: they are shown
        IDLE_FLUSH later at the latest, however busy the session is meanwhile."""
        if not self.holding():
            self.held_since = None
        elif self.held_since is None:
            self.held_since = time.monotonic()

    def flush_due(self) -> None:
        if self.held_since is not None and time.monotonic() >= self.held_since + IDLE_FLUSH:
            self.flush_maskers()

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
            since = self.held_since if self.held_since is not None else time.monotonic()
            waits.append(max(0.0, since + IDLE_FLUSH - time.monotonic()))
        if self.hangup_at is not None:
            waits.append(max(0.0, self.hangup_at - time.monotonic()))
        return min(waits) if waits else None


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
        master = self.master
        os.set_blocking(master, False)
        typed = bytearray()
        stdin_open = True
        poller = select.poll()
        poller.register(master, select.POLLIN)
        poller.register(0, select.POLLIN)
        if self.err_r >= 0:
            poller.register(self.err_r, select.POLLIN)

        def pump() -> None:
            while typed:
                try:
                    del typed[:os.write(master, typed)]
                except BlockingIOError:
                    break
                except OSError:  # the pty is going away
                    typed.clear()
            poller.modify(master, select.POLLIN | (select.POLLOUT if typed else 0))
            if stdin_open:
                if len(typed) >= CHUNK:
                    poller.modify(0, 0)  # read no more keys until the command takes these
                else:
                    poller.modify(0, select.POLLIN)

        poller.register(self.sig_r, select.POLLIN)
        sink_fd = self.sink.fileno() if self.sink is not None else None
        if sink_fd is not None:
            poller.register(sink_fd, select.POLLIN)
        while True:
            self.flush_due()
            timeout = self.timeout()
            if self.status is not None:
                timeout = 0.05 if timeout is None else min(timeout, 0.05)
            try:
                events = poller.poll(None if timeout is None else timeout * 1000)
            except InterruptedError:
                events = []
            if not events:
                self.flush_maskers()
                self.check_grace()
                if self.status is not None:
                    self.drain_stderr()
                    return  # the command is gone and the pty is quiet
                continue
            for fd, ev in events:
                if fd == master:
                    if ev & select.POLLOUT:
                        pump()
                    if not ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        continue
                    try:
                        data = os.read(master, CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:  # EIO: every holder of the slave closed it
                        data = b""
                    if not data:
                        self.reap_blocking()
                        self.drain_stderr()
                        return
                    self.emit(1, self.out_masker, data)
                elif fd == self.err_r:
                    try:
                        data = os.read(fd, CHUNK)
                    except OSError:
                        data = b""
                    if not data or not self.emit(2, self.err_masker, data):
                        poller.unregister(fd)
                        os.close(fd)
                        self.err_r = -1
                elif fd == 0:
                    try:
                        data = os.read(0, CHUNK)
                    except OSError:
                        data = b""
                    if not data:  # the user's terminal went away
                        poller.unregister(0)
                        stdin_open = False
                        self.hang_up()
                        continue
                    if self.record_input:
                        masked = self.in_masker.feed(data) if self.in_masker else data
                        self.note_held()
                        if masked:
                            self.record("input", masked)
                    typed += data
                    pump()
                elif fd == self.sig_r:
                    self.on_signals(self.pending_signals())
                elif fd == sink_fd:
                    self.from_hostd()
                    if self.sink is None:
                        poller.unregister(sink_fd)
                        sink_fd = None

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
        feed = InputPipe(self, poller, in_w) if in_w >= 0 else None
        sink_fd = self.sink.fileno() if self.sink is not None else None
        if sink_fd is not None:
            poller.register(sink_fd, select.POLLIN)
        while streams or self.status is None:
            self.flush_due()
            timeout = self.timeout()
            if self.status is not None:  # what the command left in the pipes, then stop:
                timeout = 0.05 if timeout is None else min(timeout, 0.05)  # not what
            try:                                                # it left running writes
                events = poller.poll(None if timeout is None else timeout * 1000)
            except InterruptedError:
                events = []
            if not events:
                self.flush_maskers()
                self.check_grace()
                if self.status is not None:
                    for fd in streams:
                        os.close(fd)
                    return
                continue
            for fd, _ev in events:
                if fd in streams:
                    try:
                        data = os.read(fd, CHUNK)
                    except OSError:
                        data = b""
                    out, masker = streams[fd]
                    if not data or not self.emit(out, masker, data):
                        if masker is not None and masker.holding:
                            self.emit_tail(out, masker)
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

    def emit_tail(self, fd: int, masker) -> None:
        data = masker.flush()
        if data:
            self.record("output", data)
            try:
                write_all(fd, data)
            except OSError:
                pass

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
        if self.reading:
            self.poller.modify(0, select.POLLIN if len(self.buf) < CHUNK else 0)

    def stop_reading(self) -> None:
        self.reading = False
        self.poller.unregister(0)


def main(argv: list[str] | None = None) -> int:
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except Usage as exc:
        print(f"jit-record: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    recorder = PtyRecorder(opts) if os.isatty(0) and os.isatty(1) else PipeRecorder(opts)
    from .errors import JitError

    try:
        return recorder.run()
    except SinkFailed as exc:
        print(f"jit-record: {exc}", file=sys.stderr)
        return 1
    except JitError as exc:
        print(f"jit-record: cannot start the recording: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ImportError) as exc:
        print(f"jit-record: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
