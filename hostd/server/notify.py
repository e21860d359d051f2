"""Telling people: a notice on approvers' terminals (like write(1)), and an optional
webhook with a Slack-compatible `text`.

Neither ever delays or changes a decision: terminal writes are non-blocking and bounded,
and the webhook's body is built here and queued in the spool (hostd/server/spool.py) for
jit-webhook.service to post (hostd/server/webhook.py: 5 s timeout, retries): hostd opens
no network socket. Every failure becomes a `notify_failed` event. All user text goes
through events.shown before it is shown: no control characters, no terminal escapes, no
runs of spaces, cut to fit; in the webhook no markup either (`mrkdwn` off, &<> as
entities). On a terminal it sits quoted on a line of its own after a fixed prefix and
never wraps, so a request cannot pass itself off as something else, not even by padding
a reason until it wraps to column 0.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hostd.events import escape, framed, shown
from hostd.server.spool import Spool
from hostd.state.journal import Events

if TYPE_CHECKING:
    from hostd.server.ttys import Terminals

UTMP_RECORD = struct.Struct("<hxxi32s4s32s256shhiii4i20s")
USER_PROCESS = 7
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
                 handed_over: Terminals | None = None, spool: Spool | None = None) -> None:
        """`handed_over`: the session terminals pam_jit handed over (hostd/server/ttys.py),
        written before utmp's lines. `spool`: where webhook notices are queued for
        jit-webhook.service (none: the webhook is not used)."""
        self.handed_over = handed_over
        self.spool = spool
        self.events = events
        self.utmp = utmp
        self.uid_of = uid_of
        self.webhook = webhook
        self.hostname = hostname

    def __call__(self, kind: str, req: dict, recipients: list[str]) -> int:
        """Tell the recipients; how many of their terminals took the notice."""
        sent = self.terminals(kind, req, recipients)
        url = self.webhook()
        if url and self.spool is not None:
            self.queue(url, kind, req)
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

    def queue(self, url: str, kind: str, req: dict) -> bool:
        """Hand the webhook notice to jit-webhook.service through the spool. A notice
        that cannot be queued, and each old one dropped to keep the spool bounded, is a
        `notify_failed` event."""
        notice = {"url": url, "body": webhook_body(kind, req, self.hostname),
                  "about": {"request_id": req["id"], "user": req["user"], "role": req["role"]}}
        try:
            dropped = self.spool.put(notice)
        except (OSError, ValueError) as exc:
            self.events.emit("notify_failed", f"webhook notice could not be queued: {exc}",
                             request_id=req["id"], user=req["user"], role=req["role"])
            return False
        for old in dropped:
            about = old.get("about", {})
            self.events.emit("notify_failed", "webhook notice dropped unsent: the spool "
                             "is full (the webhook has not answered)",
                             request_id=about.get("request_id"), user=about.get("user"),
                             role=about.get("role"))
        return True


def webhook_body(kind: str, req: dict, host: str) -> dict:
    """The webhook's JSON body, exactly as the sender posts it: `text` one line of shown
    values with &<> as entities, `mrkdwn` off, `jitaccess.reason` escaped data."""
    return {
        "text": entities(message_for(kind, req, host).removeprefix("jit: ")),
        "mrkdwn": False,
        "jitaccess": {"event": kind, "request_id": req["id"], "user": req["user"],
                      "role": req["role"], "state": req["state"],
                      "reason": escape(req["reason"]), "host": host},
    }
