"""Telling people: a notice on approvers' terminals (like write(1)), and an optional
webhook with a Slack-compatible `text`.

Neither ever delays or changes a decision: terminal writes are non-blocking and bounded,
the webhook runs in a worker thread with a 5 s timeout and retries, and every failure
becomes a `notify_failed` event. All user text goes through events.shown before it is
shown: no control characters, no terminal escapes, no runs of spaces, cut to fit; in the
webhook no markup either (`mrkdwn` off, &<> as entities). On a terminal it sits quoted on
a line of its own after a fixed prefix and never wraps, so a request cannot pass itself
off as something else, not even by padding a reason until it wraps to column 0.
"""

from __future__ import annotations

import json
import os
import stat
import struct
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hostd.events import escape, framed, shown
from hostd.state.journal import Events

if TYPE_CHECKING:
    from hostd.server.ttys import Terminals

UTMP_RECORD = struct.Struct("<hxxi32s4s32s256shhiii4i20s")
USER_PROCESS = 7
WEBHOOK_TIMEOUT = 5.0
WEBHOOK_TRIES = 3
NOTICE_WIDTH = 80  # columns a notice must fit without wrapping
NAME_WIDTH = 32  # user and role names (not free text, but shown the same way)
REASON_WIDTH = NOTICE_WIDTH - len('    reason: "') - 1  # as events.framed cuts it


def logged_in_ttys(utmp: Path) -> list[tuple[str, str]]:
    """(user, tty line) of USER_PROCESS records in utmp."""
    try:
        data = utmp.read_bytes()
    except OSError:
        return []
    out = []
    for off in range(0, len(data) - UTMP_RECORD.size + 1, UTMP_RECORD.size):
        rec = UTMP_RECORD.unpack_from(data, off)
        if rec[0] != USER_PROCESS:
            continue
        line = rec[2].split(b"\0", 1)[0].decode("ascii", "replace")
        user = rec[4].split(b"\0", 1)[0].decode("utf-8", "replace")
        if line and user:
            out.append((user, line))
    return out


def write_tty(path: Path, text: str, owner_uid: int | None = None) -> bool:
    """One non-blocking write to a character device; never a controlling tty, never a
    symlink followed. With `owner_uid`, only to a terminal that user owns and that
    accepts messages (`mesg y`: group write bit set, as write(1) checks). False when it
    could not be written (full, gone, not a tty, not theirs)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_NOFOLLOW
                     | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode):
            return False
        if owner_uid is not None and (st.st_uid != owner_uid or not st.st_mode & stat.S_IWGRP):
            return False
        os.write(fd, text.encode("utf-8", "replace"))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _rdev(path: Path) -> int | None:
    try:
        return os.lstat(path).st_rdev
    except OSError:
        return None


def write_to_tty(dev: Path, text: str, owner_uid: int) -> bool:
    """A notice to a terminal named by utmp: only under /dev, only the user's own."""
    if ".." in dev.parts or not str(dev).startswith("/dev/"):
        return False
    return write_tty(dev, text, owner_uid)


def entities(text: str) -> str:
    """&, < and > as Slack's entities, so escaped text cannot form a link or mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message_for(kind: str, req: dict, host: str = "") -> str:
    """The one-line summary (the webhook's text), built from shown values only: the
    reason is collapsed, quoted and cut as on a terminal."""
    who, role, rid = shown(req["user"], NAME_WIDTH), shown(req["role"], NAME_WIDTH), req["id"]
    where = f" on {shown(host, NAME_WIDTH)}" if host else ""
    if kind == "created":
        return (f"jit: {who} requests role {role}{where} (request {rid}); "
                f"reason: \"{shown(req['reason'], REASON_WIDTH)}\"")
    return headline(kind, req) + where


def headline(kind: str, req: dict) -> str:
    """The first line of a notice: hostd's words, names, the request id; no free text."""
    who, role, rid = shown(req["user"], NAME_WIDTH), shown(req["role"], NAME_WIDTH), req["id"]
    if kind == "created":
        return f"jit: {who} requests role {role} (request {rid})"
    if kind == "approved":
        return f"jit: request {rid} for role {role} was approved"
    if kind == "denied":
        return f"jit: request {rid} for role {role} was denied"
    return f"jit: request {rid} for role {role} expired unanswered"


def notice_lines(kind: str, req: dict, stamp: str = "") -> list[str]:
    """A terminal notice, line by line: the headline, then each piece of user text framed
    on its own line (see `framed`), then what an approver can type."""
    lines = [stamp + headline(kind, req)]
    if kind == "created":
        lines.append(framed("reason", req["reason"]))
        if req.get("ticket"):
            lines.append(framed("ticket", req["ticket"]))
        if req.get("ends"):  # a window asked for later (hostd's own RFC 3339 times)
            lines.append(f"    window: {req['starts']} to {req['ends']}")
        lines.append(f"    jit approve {req['id']}  |  jit deny {req['id']} --reason ...")
    return lines


def notice_text(kind: str, req: dict, stamp: str = "") -> str:
    """What is written to a terminal: a bell, then the lines, each ended with CR LF."""
    return "\r\n\a" + "".join(line + "\r\n" for line in notice_lines(kind, req, stamp))


class Notifier:
    def __init__(self, events: Events, utmp: Path, uid_of: Callable[[str], int | None],
                 webhook: Callable[[], str], hostname: str,
                 handed_over: Terminals | None = None) -> None:
        """`handed_over`: the session terminals pam_jit handed over (hostd/server/ttys.py),
        written before utmp's lines."""
        self.handed_over = handed_over
        self.events = events
        self.utmp = utmp
        self.uid_of = uid_of
        self.webhook = webhook
        self.hostname = hostname

    def __call__(self, kind: str, req: dict, recipients: list[str]) -> int:
        """Tell the recipients; how many of their terminals took the notice."""
        sent = self.terminals(kind, req, recipients)
        url = self.webhook()
        if url:
            threading.Thread(target=self.post, args=(url, kind, req), daemon=True).start()
        return sent

    def terminals(self, kind: str, req: dict, recipients: list[str]) -> int:
        """Each recipient's terminals: those pam_jit handed over (whatever mesg says),
        then utmp's lines they own with `mesg y` that those did not reach. How many."""
        wanted = set(recipients)
        text = notice_text(kind, req, time.strftime("[%H:%M] "))
        sent, reached = 0, set()
        if self.handed_over is not None:
            for uid in {self.uid_of(u) for u in wanted} - {None}:
                n, devices = self.handed_over.write(uid, text)
                sent, reached = sent + n, reached | devices
        for user, line in logged_in_ttys(self.utmp):
            uid = self.uid_of(user) if user in wanted else None
            dev = Path("/dev") / line
            if uid is not None and _rdev(dev) not in reached and write_to_tty(dev, text, uid):
                sent += 1
        return sent

    def post(self, url: str, kind: str, req: dict) -> bool:
        """POST with retries and backoff; runs in a worker thread."""
        body = json.dumps({
            "text": entities(message_for(kind, req, self.hostname).removeprefix("jit: ")),
            "mrkdwn": False,
            "jitaccess": {"event": kind, "request_id": req["id"], "user": req["user"],
                          "role": req["role"], "state": req["state"],
                          "reason": escape(req["reason"]), "host": self.hostname},
        }).encode()
        error = ""
        for attempt in range(WEBHOOK_TRIES):
            try:
                r = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                           headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(r, timeout=WEBHOOK_TIMEOUT) as resp:  # noqa: S310
                    if 200 <= resp.status < 300:
                        return True
                    error = f"HTTP {resp.status}"
            except Exception as exc:  # any network failure: retry, then log
                error = str(exc)
            if attempt + 1 < WEBHOOK_TRIES:
                time.sleep(0.5 * 2 ** attempt)
        self.events.emit("notify_failed", f"webhook notification failed after "
                         f"{WEBHOOK_TRIES} tries: {error}", request_id=req["id"],
                         user=req["user"], role=req["role"])
        return False
