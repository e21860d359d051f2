"""Recorded sudo sessions, hostd's side: which sudo is recorded, how its command is
wrapped in `jit-record`, the one-time tokens that tie a recorder to its sudo decision,
the open recording files, and retention.

Pure functions and small classes, no event loop: server_record.RecordOps drives them,
writing in the recording threads (never on the loop, never in the ordered worker).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hostd.policy.durations import rfc3339

RECORDER = "/usr/bin/jit-record"
TOKEN_TTL = 60  # seconds between sudo's allow and the recorder's record.open
MAX_TOKENS = 1024  # sudo commands allowed and not yet started under their recorder
RECORDING_ID = re.compile(r"[0-9a-f]{16}")


def should_record(record: str, tty: str, intercepted: bool, sudoedit: bool) -> bool:
    """A role's `record` for one allowed sudo: `always`, `interactive` (sudo has a
    terminal, as user_info's tty says) or `never`. A program a session starts
    (intercepted) is already inside its session's recording; sudoedit runs the editor
    as the user on copies, with nothing privileged on its terminal."""
    if intercepted or sudoedit or record == "never":
        return False
    return record == "always" or bool(tty)


def _info(command_info: tuple[str, ...]) -> dict[str, str]:
    return dict(entry.partition("=")[::2] for entry in command_info)


def wrap(command_info: tuple[str, ...], argv: tuple[str, ...], token: str,
         record_failure: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """command_info and argv that run `jit-record` as root around the command.

    sudo runs the recorder with everything else command_info says (cwd, umask,
    closefrom, use_pty, intercept, the environment), but as root: it must reach hostd
    as root and keep its file descriptors from the command. The recorder then drops
    to the runas uid, gid and group vector hostd computed (passed in its argv, which
    only sudo, as root, hands it) and execs the resolved command with argv[0] as
    decided (`-bash` for -i)."""
    info = _info(command_info)
    wrapped = []
    for entry in command_info:
        key = entry.partition("=")[0]
        if key == "command":
            wrapped.append(f"command={RECORDER}")
        elif key == "runas_user":
            wrapped.append("runas_user=root")
        elif key in ("runas_uid", "runas_gid"):
            wrapped.append(f"{key}=0")
        elif key == "runas_groups":
            wrapped.append("runas_groups=0")
        else:
            wrapped.append(entry)
    args = (RECORDER, "--token", token, "--uid", info["runas_uid"], "--gid",
            info["runas_gid"], "--groups", info.get("runas_groups", info["runas_gid"]),
            "--record-failure", record_failure, "--command", info["command"], "--", *argv)
    return tuple(wrapped), args


@dataclass(frozen=True)
class Session:
    """What hostd knows of a recorded sudo when it allows it: the recording's header
    and events come from here, never from the recorder."""

    user: str
    uid: int
    runas: str
    command: str  # the resolved command line, raw (escaped where shown)
    tty: str
    host: str
    grant_id: str | None
    role: str | None
    record_input: bool
    record_failure: str
    created: float = 0.0


class Tokens:
    """One-time tokens: `issue` at allow, `take` at record.open (once, within
    TOKEN_TTL). Bounded: stale ones go first, then the oldest."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._items: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def issue(self, session: Session) -> str:
        token = secrets.token_urlsafe(24)
        now = self.clock()
        with self._lock:
            if len(self._items) >= MAX_TOKENS:
                self._items = {k: s for k, s in self._items.items()
                               if s.created > now - TOKEN_TTL}
            while len(self._items) >= MAX_TOKENS:
                self._items.pop(next(iter(self._items)))
            self._items[token] = Session(**{**session.__dict__, "created": now})
        return token

    def take(self, token: str) -> Session | None:
        with self._lock:
            session = self._items.pop(token, None)
        if session is None or session.created <= self.clock() - TOKEN_TTL:
            return None
        return session


def new_id() -> str:
    return secrets.token_hex(8)


def mask_text(text: str, rules: list[tuple[str, str]]) -> str:
    """A command line masked as the session's output is (a secret passed as an argument
    must not reach the recording through its header): the host's rules (textmask)."""
    from hostd.masking.text import mask_text as masked

    return masked(text, rules=list(rules))[0]


def header(rid: str, session: Session, width: int, height: int, term: str,
           now: float, pty: bool = True) -> dict:
    """The asciicast v2 header: asciinema reads version, size, timestamp, env, title;
    `jit` holds who ran what (the `jit sessions` listing). `session.command` is
    already masked (Recording.create)."""
    return {"version": 2, "width": width, "height": height, "timestamp": int(now),
            "env": {"TERM": term}, "title": f"{session.user} as {session.runas}: "
                                           f"{session.command}"[:256],
            "jit": {"id": rid, "user": session.user, "uid": session.uid,
                    "runas": session.runas, "command": session.command,
                    "tty": session.tty, "host": session.host,
                    "grant_id": session.grant_id, "role": session.role,
                    "record_input": session.record_input, "pty": pty, "started": rfc3339(int(now)),
                    "session_id": rid}}


READERS_GROUP = "adm"  # reads recordings as it reads /var/log (jit(1): sessions, verify)


def open_dir(path: Path) -> None:
    """/var/log/jit/sessions: root's, readable by group adm (2750 root:adm: files made in
    it get the group), created if missing; 0700 on a host without an adm group."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(f"{path} is not a directory of hostd's own")
    gid = readers_gid()
    mode = 0o700 if gid is None else 0o2750
    if gid is not None and st.st_gid != gid:
        os.chown(path, -1, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def readers_gid() -> int | None:
    import grp

    try:
        return grp.getgrnam(READERS_GROUP).gr_gid
    except KeyError:
        return None


@dataclass
class Recording:
    """One open recording: its file's writer and what the events say about it. Used
    by one recording thread at a time (the server awaits each write)."""

    id: str
    session: Session
    writer: object  # castfile.CastWriter
    path: Path
    written: int = 0
    inputs: int = 0
    closed: bool = False
    digest: str = ""
    status: str = ""  # the end status once closed (`exit 0`, `interrupted`)
    lock: threading.Lock = field(default_factory=threading.Lock)  # writes, and a close

    @classmethod
    def create(cls, directory: Path, session: Session, width: int, height: int,
               term: str, now: float, rules: list[tuple[str, str]],
               pty: bool = True) -> Recording:
        from hostd.record.castfile import CastWriter

        open_dir(directory)
        rid = new_id()
        path = directory / f"{rid}.cast"
        shown = replace(session, command=mask_text(session.command, rules))
        writer = CastWriter(path, header(rid, shown, width, height, term, now, pty),
                            mode=0o600 if readers_gid() is None else 0o640)
        return cls(rid, session, writer, path)

    def write(self, items: list[tuple[str, float, object]]) -> None:
        with self.lock:
            self._write(items)

    def _write(self, items: list[tuple[str, float, object]]) -> None:
        for kind, t, data in items:
            if kind == "o":
                self.writer.output(t, data)
                self.written += len(data)
            elif kind == "i":
                self.writer.input(t, data)
                self.inputs += len(data)
            else:
                self.writer.resize(t, *data)

    def close(self, t: float, status: str) -> str:
        with self.lock:
            if not self.closed:
                self.closed = True
                self.status = status
                self.digest = self.writer.close(t, status)
            return self.digest


def retention_plan(files: list[tuple[str, float, int]], now: float, max_age: int,
                   max_total: int) -> list[tuple[str, str]]:
    """Which recordings to remove, oldest first: (id, reason). `files` are (id, mtime,
    size) of closed recordings; 0 means no limit."""
    out: list[tuple[str, str]] = []
    keep = []
    for rid, mtime, size in sorted(files, key=lambda f: (f[1], f[0])):
        if max_age and mtime < now - max_age:
            out.append((rid, "older than max_age"))
        else:
            keep.append((rid, size))
    total = sum(size for _, size in keep)
    for rid, size in keep:
        if not max_total or total <= max_total:
            break
        out.append((rid, "over max_total_size"))
        total -= size
    return out


def enforce_retention(directory: Path, now: float, max_age: int, max_total: int,
                      active: set[str]) -> list[tuple[str, int, str]]:
    """Remove what retention_plan says; open recordings are never touched. Returns
    (id, size, reason) of each file removed."""
    if not (max_age or max_total) or not directory.is_dir():
        return []
    files, sizes = [], {}
    with os.scandir(directory) as it:
        for entry in it:
            rid = entry.name[:-5] if entry.name.endswith(".cast") else ""
            if not RECORDING_ID.fullmatch(rid) or rid in active:
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                files.append((rid, st.st_mtime, st.st_size))
                sizes[rid] = st.st_size
    removed = []
    for rid, reason in retention_plan(files, now, max_age, max_total):
        try:
            os.unlink(directory / f"{rid}.cast")
        except FileNotFoundError:
            continue
        removed.append((rid, sizes[rid], reason))
    return removed
