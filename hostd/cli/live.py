"""`jit watch`, `jit terminate`, `jit sessions --live` (issue 23): live recorded
sessions, through hostd (ops session.watch, session.terminate, session.list).

A watched session's output is the recording's (masked by the recorder) and goes to
stdout through the same terminal-safety filter as `jit replay` (termsafe.py: the
recorded user chose those bytes); every message of ours goes to stderr, after a reset
of the terminal's state when stdout is a terminal, so output cannot pass for them.
"""

from __future__ import annotations

import argparse
import binascii
import codecs
import struct
import sys
import time

from hostd.cli.common import call, out
from hostd.client import Client
from hostd.errors import EXIT_OK, JitError, exit_code_for
from hostd.events import escape, shown
from hostd.paths import client_paths
from hostd.record import termsafe
from hostd.wire import MAX_LINE

PING_EVERY = 1.0  # seconds: hostd counts a moderator silent for 5 s as gone
TERMINAL_RESET = ("\x18\x1b\\\x0f\x1b(B\x1b[0m\x1b[4l\x1b[?1049l\x1b[?25h\r\n")
ID_HELP = "a live session's id (16 hex digits), as jit sessions --live shows it"


def add_arguments(command) -> None:
    """Wire `watch` and `terminate` into jit's parser (`command` is build_parser's)."""
    c = command("watch", cmd_watch, "follow a live recorded session (its role's approvers, "
                "root; adm observes)")
    c.add_argument("session_id", metavar="ID", help=ID_HELP)
    c._option_string_actions["--json"].help = argparse.SUPPRESS  # refused (cmd_watch)
    c.add_argument("--from-start", action="store_true",
                   help="show the output kept so far (at most 256 KiB) before the live output")
    c.add_argument("--moderate", action="store_true",
                   help="watch as a moderator: a moderated role's session runs only while "
                        "enough moderators watch")
    c = command("terminate", cmd_terminate, "end a live recorded session (its role's "
                "approvers, root); the user sees who ended it and why")
    c.add_argument("session_id", metavar="ID", help=ID_HELP)
    c.add_argument("--reason", required=True, metavar="TEXT",
                   help="why (shown to the user, logged in session_terminated)")


def cmd_terminate(args: argparse.Namespace) -> int:
    answer = call("session.terminate", id=args.session_id, reason=args.reason)
    return out(args, answer, escape(answer["message"]))


def cmd_live_sessions(args: argparse.Namespace) -> int:
    """`jit sessions --live`: the live recorded sessions the caller may watch."""
    answer = call("session.list")
    rows = answer["sessions"]
    if args.json or not rows:
        return out(args, answer, "no live sessions")
    print(f"{'ID':16}  {'USER':12} {'RUNAS':10} {'ROLE':12} {'STATE':8} {'WATCHING':>8}  "
          "COMMAND")
    for r in rows:
        watching = f"{r['watchers']}+{r['moderators']}m" if r["moderators"] else \
            str(r["watchers"])
        print(f"{r['id']:16}  {shown(r['user'], 12):12} {shown(r['runas'], 10):10} "
              f"{shown(r['role'] or '-', 12):12} {shown(r['state'], 8):8} {watching:>8}  "
              f"{shown(r['command'], 60)}")
    return EXIT_OK


def _note(text: str, tty: bool) -> None:
    if tty:
        sys.stdout.write(TERMINAL_RESET)
        sys.stdout.flush()
    print(f"jit: {text}", file=sys.stderr, flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    if args.json:  # stdout carries the session's own bytes: no JSON document fits there
        return out(args, {"ok": False, "code": "usage", "message":
                          "jit watch shows the session's output on stdout; --json does not "
                          "apply (jit sessions --live --json lists the live sessions, "
                          "jit replay ID --json gives a recording as JSON)"})
    client = Client(client_paths().socket, timeout=30)
    stream = client.stream("session.watch", id=args.session_id, raw=True,
                           from_start=args.from_start, moderate=args.moderate)
    opened = stream.opened
    tty = sys.stdout.isatty()
    meta = opened.get("header", {}).get("jit", {})
    _note(f"watching {opened['id']} as {opened['mode']}: {shown(meta.get('user'), 32)} as "
          f"{shown(meta.get('runas'), 32)}: {shown(meta.get('command'), 70)}"
          + ("; output before the last 256 KiB is only in the recording"
             if opened.get("trimmed") else "")
          + (f"; {opened['state']}" if opened.get("state") != "running" else "")
          + "; Ctrl-C stops watching", False)
    try:
        answer = _follow(stream, tty)
    except KeyboardInterrupt:
        stream.close()
        _note(f"stopped watching {opened['id']}", tty)
        return 130
    if answer.get("ok"):
        _note(f"session {opened['id']} ended ({shown(answer.get('end', '?'), 40)})"
              if "end" in answer else escape(answer.get("message", "")), tty)
        return EXIT_OK
    _note(f"{answer.get('code')}: {escape(answer.get('message', ''))}", tty)
    return exit_code_for(str(answer.get("code")))


def _follow(stream, tty: bool) -> dict:
    """Frames until the last answer: output filtered to stdout, moderation noted."""
    flt = termsafe.TerminalFilter()
    text = codecs.getincrementaldecoder("utf-8")("replace")
    outb = sys.stdout.buffer
    pinged = time.monotonic()
    while True:
        if time.monotonic() - pinged >= PING_EVERY:
            _ping(stream)
            pinged = time.monotonic()
        try:
            frame = _recv(stream, PING_EVERY)
        except JitError as exc:
            if exc.code != "timeout":
                raise
            continue
        if frame is None:
            return {"ok": False, "code": "unreachable", "message": "hostd closed the stream"}
        if isinstance(frame, bytes):  # output, raw (_recv)
            data = frame
            if data.isascii() and not flt.busy() and b"\x1b" not in data \
                    and b"\x05" not in data:
                outb.write(data)  # nothing to filter, nothing to decode
            else:
                outb.write(flt.feed(text.decode(data)).encode("utf-8", "replace"))
            outb.flush()
        elif "o" in frame:
            data = binascii.a2b_base64(str(frame["o"]))
            outb.write(flt.feed(text.decode(data)).encode("utf-8", "replace"))
            outb.flush()
        elif "ok" in frame:
            outb.write(flt.feed(text.decode(b"", final=True)).encode("utf-8", "replace"))
            outb.flush()
            return frame
        else:
            for key in ("started", "paused", "resumed"):
                if key in frame:
                    _note(f"session {key}: {escape(frame[key])}", tty)




def _ping(stream) -> None:
    """A sign of life; hostd may have ended the stream already, with its last answer
    still to be read, so a failed send is not an error here (the read says)."""
    sock = stream.client._sock
    if sock is None:
        return
    try:
        sock.settimeout(PING_EVERY)
        sock.sendall(b'{"ping":1}\n')
    except OSError:
        pass


HEADER = struct.Struct(">BdI")  # a raw output frame: RS, t, length (server/watch.py _raw)
RAW = 0x1E


def _recv(stream, timeout: float) -> dict | bytes | None:
    """The next frame of a raw watch: a JSON line as its object, a raw output frame as
    its bytes (no base64 to decode: at 70 MiB/s that alone took a third of a core per
    watcher), None when hostd closed the stream."""
    client, buf = stream.client, stream.client._buf  # what was read past the answer
    deadline = time.monotonic() + timeout
    while True:
        if buf and buf[0] == RAW:
            if len(buf) >= HEADER.size:
                end = HEADER.size + HEADER.unpack_from(buf)[2]
                if len(buf) >= end:
                    with memoryview(buf) as view:
                        data = bytes(view[HEADER.size:end])
                    del buf[:end]
                    return data
        elif buf:
            end = buf.find(b"\n")
            if end >= 0:
                line = bytes(buf[:end + 1])
                del buf[:end + 1]
                return stream.parse(line)
            if len(buf) > MAX_LINE:
                raise JitError("unreachable", "frame from jit-hostd too large")
        sock = client._sock
        left = deadline - time.monotonic()
        if sock is None:
            return None
        if left <= 0:
            raise JitError("timeout", "no frame from jit-hostd in time")
        try:
            sock.settimeout(left)
            chunk = sock.recv(1 << 18)
        except TimeoutError:
            raise JitError("timeout", "no frame from jit-hostd in time") from None
        except OSError as exc:
            raise JitError("unreachable", f"lost connection to jit-hostd: {exc}") from None
        if not chunk:
            return None
        buf += chunk
