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
import re
import sys
import time

from hostd.cli.common import call, out
from hostd.client import Client
from hostd.errors import EXIT_OK, JitError, exit_code_for
from hostd.events import escape, shown
from hostd.paths import client_paths
from hostd.record import termsafe

PING_EVERY = 1.0  # seconds: hostd counts a moderator silent for 5 s as gone
TERMINAL_RESET = ("\x18\x1b\\\x0f\x1b(B\x1b[0m\x1b[4l\x1b[?1049l\x1b[?25h\r\n")
ID_HELP = "a live session's id (16 hex digits), as jit sessions --live shows it"


def add_arguments(command) -> None:
    """Wire `watch` and `terminate` into jit's parser (`command` is build_parser's)."""
    c = command("watch", cmd_watch, "follow a live recorded session (its role's approvers, "
                "root; adm observes)")
    c.add_argument("session_id", metavar="ID", help=ID_HELP)
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
    client = Client(client_paths().socket, timeout=30)
    stream = client.stream("session.watch", id=args.session_id,
                           from_start=args.from_start, moderate=args.moderate)
    opened = stream.opened
    tty = sys.stdout.isatty() and not args.json
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
        if isinstance(frame, bytes):  # output, the fast path (_recv)
            data = binascii.a2b_base64(frame)
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


OUTPUT = re.compile(rb'\{"t":[0-9.]+,"o":"([A-Za-z0-9+/=]*)"\}\n')


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


def _recv(stream, timeout: float) -> dict | bytes | None:
    """The next frame; an output frame in the exact form hostd writes it
    (server/watch.py _line) as its base64 bytes, without a JSON parse (at 70 MiB/s
    json.loads alone would take a third of a core)."""
    line = stream.recv_line(timeout)
    if line is None:
        return None
    m = OUTPUT.fullmatch(line)
    return m.group(1) if m is not None else stream.parse(line)
