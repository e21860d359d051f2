"""Warnings on a user's terminals before a grant ends (5 and 1 minute ahead) and when
it is revoked.

The schedule is pure (`schedule`), so it is tested without a clock; the server keeps
one loop timer per warning and, after a restart, gives at once the latest warning
whose time has passed while the grant is still live (a restart inside the last
minutes must not swallow it; it may repeat one given before the restart).

Where: every terminal of the user, which is the TTY of each of the user's logind
sessions (logind says whose it is, whoever owns the device) and each /dev/pts device
owned by the user (terminal windows, tmux panes and ssh logins that are no logind
session of their own). mesg is not asked: like shutdown's wall from root, the warning
is about the user's own access. Writes are one line, non-blocking, in a side thread;
a terminal that is full or gone loses the warning, never hostd's time.
"""

from __future__ import annotations

import os
import re
import stat
import time
from pathlib import Path

from hostd.events import shown
from hostd.server.notify import write_tty
from hostd.server.ttys import Terminals

LEADS = (300, 60)  # seconds before expiry
NAME_WIDTH = 32
TTY_NAME = re.compile(r"(pts/\d{1,6}|tty[A-Za-z]{0,4}\d{0,4})")
MAX_TTYS = 64  # terminals written per warning: bounded time in the side thread


def schedule(exp: int, now: float, given: set[int] | frozenset[int] = frozenset()
             ) -> tuple[list[tuple[int, int]], int | None]:
    """(warnings still ahead as (when, lead), the one to give now or None). Of the leads
    already passed while the grant is live, only the nearest to expiry is given now;
    leads in `given` were given already by this process."""
    ahead = [(exp - lead, lead) for lead in LEADS if exp - lead > now and lead not in given]
    passed = [lead for lead in LEADS if exp - lead <= now < exp]
    now_lead = min(passed) if passed else None
    if now_lead is not None and now_lead in given:
        now_lead = None
    return sorted(ahead), now_lead


def left_text(seconds: float) -> str:
    """`4 min 58 s`, `59 s`: the time left, rounded down to the second."""
    s = max(0, int(seconds))
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


def warning_line(role: str, exp: int, now: float, mode: str) -> str:
    """The warning before expiry: hostd's words and names only, escaped, one line."""
    until = time.strftime("%H:%M:%S UTC", time.gmtime(exp))
    then = ("sessions opened under it will be ended" if mode == "terminate-sessions"
            else "its groups are removed (running shells keep them)")
    return (f"jit: your grant of role {shown(role, NAME_WIDTH)} ends in "
            f"{left_text(exp - now)} (at {until}); {then}")


def revoked_line(role: str, by: str, mode: str) -> str:
    then = ("sessions opened under it end now" if mode == "terminate-sessions"
            else "its groups are removed (running shells keep them)")
    return (f"jit: your grant of role {shown(role, NAME_WIDTH)} was revoked by "
            f"{shown(by, NAME_WIDTH)}; {then}")


def terminal_text(line: str) -> str:
    """A bell and the line on a fresh line of its own, CR LF ended (raw-mode safe)."""
    return "\r\n\a" + line + "\r\n"


def user_ttys(dev: Path, uid: int, session_ttys: list[str]) -> list[Path]:
    """The terminals to warn: the user's logind sessions' TTYs (names only, checked)
    and /dev/pts devices the user owns; each device once."""
    found: list[Path] = []
    for name in session_ttys:
        if name and TTY_NAME.fullmatch(name.removeprefix("/dev/")):
            found.append(dev / name.removeprefix("/dev/"))
    try:
        entries = sorted(os.listdir(dev / "pts"), key=lambda n: (len(n), n))
    except OSError:
        entries = []
    for name in entries:
        if not name.isdigit():
            continue
        try:
            st = os.lstat(dev / "pts" / name)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_uid == uid:
            found.append(dev / "pts" / name)
    seen: set[Path] = set()
    out = []
    for p in found:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out[:MAX_TTYS]


def warn(dev: Path, uid: int, session_ttys: list[str], line: str,
         terminals: Terminals | None = None) -> int:
    """Write `line` to each of the user's terminals; how many took it. The terminals
    pam_jit handed over come first (whatever mesg says); the paths then only reach the
    devices those did not."""
    text = terminal_text(line)
    sent, reached = terminals.write(uid, text) if terminals is not None else (0, set())
    return sent + sum(write_tty(p, text) for p in user_ttys(dev, uid, session_ttys)
                      if not reached or _rdev(p) not in reached)


def _rdev(path: Path) -> int | None:
    try:
        return os.lstat(path).st_rdev
    except OSError:
        return None
