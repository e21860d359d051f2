"""The recording ops: `record.open`, the wrapping of recorded sudo commands in
`jit-record`, hang-ups when a grant ends, retention.

A recorded session is hung up by the same path that ends a grant's login sessions:
the EndSessions effect (hostd/server/sessions.py) calls `hang_up(grant_id, reason)`,
and a session opened for a grant that has already ended is hung up at once.

Where the writing happens: frames are read and checked on the loop (each at most
64 KiB), and written to the file in `self.recording_pool`, a pool of its own (four
threads), never in the ordered worker: a session that prints 100 MB must not hold up
grants and sudo decisions queued behind it, and a slow disk must not stall the loop.
Each recording awaits its own write before it reads the next frame, so its frames are
written in order and a fast recorder is slowed down by TCP-like backpressure (the
socket buffer fills) rather than by hostd's memory growing.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.events import carried
from hostd.policy.liveness import is_live
from hostd.record.fanout import Fanout
from hostd.record.recordings import (
    Recording,
    Session,
    Tokens,
    enforce_retention,
    should_record,
    wrap,
)
from hostd.server.ops import Caller
from hostd.state.store import Store
from hostd.wire import MAX_RAW, RAW, RECORD_FRAME

log = logging.getLogger("jit-hostd")

SESSIONS_DIR = Path("/var/log/jit/sessions")
MAX_STATUS = 64


def _frame_items(frame: dict) -> tuple[list, str | None]:
    """A recorder frame as write items, or the end status; bad_request otherwise."""
    t = frame.get("t")
    if not isinstance(t, int | float) or isinstance(t, bool) or not 0 <= t < 10**9:
        raise JitError("bad_request", "a frame needs t, seconds since the start")
    keys = set(frame) - {"t"}
    if len(keys) != 1:
        raise JitError("bad_request", "a frame has exactly one of o, i, r, end")
    key = keys.pop()
    value = frame[key]
    if key in ("o", "i"):
        if not isinstance(value, str):
            raise JitError("bad_request", f"frame {key} must be base64 text")
        try:
            data = binascii.a2b_base64(value, strict_mode=True)
        except (binascii.Error, ValueError):
            raise JitError("bad_request", f"frame {key} is not base64") from None
        return [(key, float(t), data)], None
    if key == "r":
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10000
                           for v in value)):
            raise JitError("bad_request", "frame r is [cols, rows]")
        return [("r", float(t), (value[0], value[1]))], None
    if key == "end":
        if not isinstance(value, str) or len(value) > MAX_STATUS:
            raise JitError("bad_request", "frame end is the command's status")
        return [], value
    raise JitError("bad_request", f"unknown frame {key[:16]!r}")


async def _next_frame(channel, raw: bool) -> tuple[list, str | None, float] | None:
    """The recorder's next frame as (write items, end status, t); None when it closed.
    On a `raw` stream output and input may come as raw frames (wire.RECORD_FRAME: no
    JSON, no base64 on hostd's loop), anything else as a JSON line."""
    if raw:
        try:
            first = await channel.reader.readexactly(1)
            if first[0] == RAW:
                head = first + await channel.reader.readexactly(RECORD_FRAME.size - 1)
                _, kind, t, size = RECORD_FRAME.unpack(head)
                if kind not in (b"o", b"i") or not (0 <= t < 10**9 and math.isfinite(t)):
                    raise JitError("bad_request", "a raw frame is o or i, with t >= 0")
                if size > MAX_RAW:
                    raise JitError("bad_request", f"a raw frame carries at most "
                                                  f"{MAX_RAW // 1024} KiB")
                data = await channel.reader.readexactly(size)
                return [(kind.decode(), t, data)], None, t
        except asyncio.IncompleteReadError:
            return None  # closed, or closed within a frame: went away either way
    else:
        first = b""
    frame = await channel.recv(first)
    if frame is None:
        return None
    items, status = _frame_items(frame)
    return items, status, float(frame["t"])


def _weight(item) -> int:
    """What a write item counts for in a batch's bound: its bytes (a resize: 1)."""
    data = item[2] if isinstance(item, tuple) else None
    return len(data) if isinstance(data, bytes | bytearray) else 1


class _Pipeline:
    """One recording's writes: at most one batch in the pool while the loop reads the
    next frames, which form the next batch (submitted as soon as the one before is
    done, whether or not more frames come). Order is kept; past MAX_BATCH frames or
    MAX_BYTES waiting the loop stops reading this recorder, so memory stays bounded
    and the recorder is slowed down by its socket filling (backpressure)."""

    MAX_BATCH = 64  # frames
    MAX_BYTES = 2 * 1024 * 1024  # of data waiting, whatever the frames' size (a resize: 1)

    def __init__(self, pool: ThreadPoolExecutor, rec: Recording) -> None:
        self.loop = asyncio.get_running_loop()
        self.pool, self.rec = pool, rec
        self.batch: list = []
        self.size = 0
        self.inflight: asyncio.Future | None = None

    def full(self) -> bool:
        return len(self.batch) >= self.MAX_BATCH or self.size >= self.MAX_BYTES

    def _submit(self) -> None:
        batch, self.batch, self.size = self.batch, [], 0
        self.inflight = self.loop.run_in_executor(self.pool, self.rec.write, batch)
        self.inflight.add_done_callback(self._done)

    def _done(self, fut: asyncio.Future) -> None:
        if fut is not self.inflight or fut.cancelled() or fut.exception() is not None:
            return  # a failed write stays in `inflight`, for add() or drain() to raise
        self.inflight = None
        if self.batch:
            self._submit()

    async def add(self, items: list) -> None:
        self.batch.extend(items)
        self.size += sum(_weight(item) for item in items)
        if self.inflight is None:
            self._submit()
        while self.inflight is not None and (self.inflight.done() or self.full()):
            fut = self.inflight
            await fut  # raises a failed write's error
            if self.inflight is fut:
                self.inflight = None
                if self.batch:
                    self._submit()

    async def drain(self) -> None:
        while self.inflight is not None or self.batch:
            if self.inflight is None:
                self._submit()
            fut = self.inflight
            await fut
            if self.inflight is fut:
                self.inflight = None


class RecordOps:
    """record.open, the wrapping of recorded commands, hang-ups and retention."""

    def __init__(self, core: Core, reader: Store, sessions_dir: Path = SESSIONS_DIR) -> None:
        self.core, self.reader = core, reader
        self.sessions_dir = sessions_dir
        self.record_tokens = Tokens()
        self.recording_pool = ThreadPoolExecutor(max_workers=4,
                                                 thread_name_prefix="jit-recording")
        self.live_recordings: dict[str, Recording] = {}
        self._channels: dict[str, object] = {}  # recording id -> its stream, for hang_up
        self.fanouts: dict[str, Fanout] = {}  # live sessions' watchers (server/watch.py)
        self.on_open = lambda rec, fanout, channel: None  # WatchOps: moderation starts
        self.on_close = lambda rec: None

    # sudo.check: which allowed command is recorded, and how ---------------------------------

    def wrap_allowed(self, asked, d, allow: dict) -> dict | None:
        """The allow answer wrapped in jit-record when the role says so, else None;
        standing rules (no role) follow a role's defaults (`interactive`, `terminate`)."""
        role = self.core.config.roles.get(d.source.role) if d.source and d.source.role \
            else None
        record = role.record if role else "interactive"
        req = asked.request
        if not should_record(record, req.tty, req.intercepted, req.sudoedit):
            return None
        failure = role.record_failure if role else "terminate"
        session = Session(user=req.user, uid=req.uid, runas=req.runas_user, command=d.line,
                          tty=req.tty, host=self.core.host.hostname,
                          grant_id=d.source.grant_id or None if d.source else None,
                          role=role.name if role else None,
                          record_input=role.record_input if role else False,
                          record_failure=failure)
        token = self.record_tokens.issue(session)
        info, argv = wrap(tuple(allow["command_info"]), tuple(allow["argv"]), token, failure)
        return {**allow, "command_info": list(info), "argv": list(argv)}

    # record.open -------------------------------------------------------------------------

    async def op_record_open(self, args: dict, caller: Caller, channel) -> dict:
        session = self.record_tokens.take(args["token"])
        if session is None:
            raise JitError("not_found", "unknown, used or expired recording token")
        loop = asyncio.get_running_loop()
        config = self.core.config
        rules = [(name, rx.pattern) for name, rx in config.masking]
        try:
            rec = await loop.run_in_executor(
                self.recording_pool, Recording.create, self.sessions_dir, session,
                args.get("width", 80), args.get("height", 24), args.get("term", ""),
                self.core.clock(), rules, args.get("pty", True))
        except OSError as exc:
            self._record_event("recording_failed", None, session,
                               f"recording of {session.user}'s sudo could not start: "
                               f"{exc.strerror or exc}", reason=str(exc))
            raise JitError("internal", "the recording could not be started") from None
        self.live_recordings[rec.id] = rec
        self._record_event("recording_started", rec, session,
                           f"recording {rec.id} started: {session.user} as {session.runas}")
        try:
            raw = bool(args.get("raw"))  # raw frames may come (an old recorder: lines)
            opened = {"ok": True, "code": "ok", "message": f"recording {rec.id}", "id": rec.id,
                      "masking": [list(rule) for rule in rules],
                      "builtins": True,  # the built-in rules always apply on this path
                      "fields": list(config.masking_fields),
                      "optional": list(config.masking_optional),
                      "hold": config.masking_hold,
                      "record_input": session.record_input,
                      "record_failure": session.record_failure,
                      "moderated": self._moderated(session), "raw": raw}
            if not await channel.send(opened):
                return await self._record_failed(rec, "the recorder went away at the start")
            self._channels[rec.id] = channel  # from now on, hang_up finds it
            fanout = self.fanouts[rec.id] = Fanout(dict(rec.writer.header))
            ended = self._ended(session.grant_id)
            if ended is not None:  # ended before the session started
                await self._hang_up_one(rec, ended)
            self.on_open(rec, fanout, channel)
            return await self._record_frames(rec, channel, raw)
        finally:
            self._channels.pop(rec.id, None)
            self.live_recordings.pop(rec.id, None)
            fanout = self.fanouts.pop(rec.id, None)
            if fanout is not None:
                fanout.end(rec.status or "interrupted")
            self.on_close(rec)

    def _moderated(self, session: Session) -> bool:
        """Whether the recorder must wait for `{"start"}`: the role has moderation."""
        role = self.core.config.roles.get(session.role) if session.role else None
        return bool(role and role.moderation)

    async def _record_frames(self, rec: Recording, channel, raw: bool = False) -> dict:
        loop = asyncio.get_running_loop()
        writes = _Pipeline(self.recording_pool, rec)
        while True:
            try:
                frame = await _next_frame(channel, raw)
                if frame is None:
                    return await self._record_failed(rec, "the recorder went away without "
                                                          "an end frame", writes)
                items, status, t = frame
                if items and rec.id in self.fanouts:  # watchers: the bytes the cast gets
                    self.fanouts[rec.id].publish(items)
            except JitError as exc:
                await self._record_failed(rec, f"bad frame: {exc.message}", writes)
                raise
            try:
                if items:
                    await writes.add(items)
                if status is not None:
                    await writes.drain()
                    digest = await loop.run_in_executor(self.recording_pool, rec.close,
                                                        t, status)
                    self._record_event("recording_closed", rec, rec.session,
                                       f"recording {rec.id} closed: {rec.session.command} "
                                       f"({status})", decision=status,
                                       recording_sha256=digest)
                    return {"ok": True, "code": "ok", "message": f"recording {rec.id} closed",
                            "id": rec.id, "sha256": digest}
            except (OSError, ValueError) as exc:  # disk full; a frame castfile refuses
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                await self._record_failed(rec, f"cannot write: {why}")
                raise JitError("internal", "the recording could not be written") from None

    async def _record_failed(self, rec: Recording, why: str,
                             writes: _Pipeline | None = None) -> dict:
        """Write what came, close it (so its chain can be checked) and say why."""
        loop = asyncio.get_running_loop()
        if writes is not None:
            try:
                await writes.drain()
            except (OSError, ValueError) as exc:
                why = f"{why}; and a write failed: {exc}"
        digest = ""
        try:
            digest = await loop.run_in_executor(self.recording_pool, rec.close, 0.0,
                                                "interrupted")
        except Exception as exc:  # the file itself is the problem (disk full)
            why = f"{why}; closing failed: {exc}"
        self._record_event("recording_failed", rec, rec.session,
                           f"recording {rec.id} ended abnormally: {why}", reason=why,
                           recording_sha256=digest or None)
        return {"ok": False, "code": "bad_request", "message": why}

    def _ended(self, grant_id: str | None) -> str | None:
        """Why the session's grant no longer holds (`grant ID revoked`), None while it
        does or for a standing rule. Read with no await after the session was listed,
        so an ending either comes later (and finds it) or is seen here."""
        if not grant_id:
            return None
        g = self.reader.get_grant(grant_id)
        if g is not None and is_live(g, self.core.clock()):
            return None
        state = "expired" if g is None or g["state"] == "active" else g["state"]
        return f"grant {grant_id} {state}"

    async def hang_up(self, grant_id: str, reason: str) -> None:
        """The grant ended ("expired", "revoked", "policy changed"): hang up every
        recorded session it allowed (from the ending path, sessions.py)."""
        why = f"grant {grant_id} {'expired' if reason == 'expired' else 'revoked'}"
        await asyncio.gather(*(self._hang_up_one(rec, why)
                               for rec in list(self.live_recordings.values())
                               if rec.session.grant_id == grant_id and rec.id in self._channels))

    async def _hang_up_one(self, rec: Recording, reason: str,
                           approver: str | None = None) -> bool:
        """Hang one session up, once (False: it was already); `approver` is who ended
        it with `jit terminate` (server/watch.py), None for an ending or moderation."""
        channel = self._channels.pop(rec.id, None)  # once per session
        if channel is None:
            return False
        self.core.events.emit("session_terminated", f"recorded sudo session {rec.id} "
                              f"of {rec.session.user} hung up: {reason}",
                              **carried("session_terminated", rec.session, recording=rec.id,
                                        session_id=rec.id, reason=reason,
                                        approver=approver))
        await channel.send({"hangup": reason})
        return True

    async def terminate(self, rec: Recording, reason: str,
                        approver: str | None = None) -> bool:
        """End one live session (jit terminate, moderation: server/watch.py)."""
        return await self._hang_up_one(rec, reason, approver)

    def control(self, rid: str):
        """The recorder's stream of a live session, to send it start, pause, resume
        (server/watch.py); None once it is hung up or gone."""
        return self._channels.get(rid)

    def _record_event(self, event: str, rec: Recording | None, session: Session, message: str,
                      **extra: object) -> None:
        """An event about a recorded sudo: what its type declares (events.carried), from
        the session hostd allowed and the recording's id (None before it exists)."""
        rid = rec.id if rec else None
        self.core.events.emit(event, message, **carried(event, session, recording=rid,
                                                        session_id=rid, **extra))

    def close_recordings(self) -> None:
        """hostd stops: close what is open (its chain then verifies, ending
        "hostd stopped"), each a recording_failed event, then stop the pool. The
        recorders see the stream end and follow record_failure."""
        closing = [(rec, self.recording_pool.submit(rec.close, 0.0, "hostd stopped"))
                   for rec in list(self.live_recordings.values())]
        for rec, done in closing:
            try:
                digest = done.result(timeout=10)
            except Exception as exc:  # a full disk: say so, never hang the shutdown
                digest, why = "", f"hostd stopped; closing failed: {exc}"
            else:
                why = "hostd stopped"
            self._record_event("recording_failed", rec, rec.session,
                               f"recording {rec.id} ended: {why}", reason=why,
                               recording_sha256=digest or None)
        self.live_recordings.clear()
        self.recording_pool.shutdown(wait=False)

    # retention (the sweep) ------------------------------------------------------------------

    async def sweep_recordings(self) -> list[tuple[str, int, str]]:
        """`[recording] max_age` and `max_total_size`, in the recording pool; one
        `recording_removed` event per file."""
        config = self.core.config
        loop = asyncio.get_running_loop()
        removed = await loop.run_in_executor(
            self.recording_pool, enforce_retention, self.sessions_dir, self.core.clock(),
            config.recording_max_age, config.recording_max_total_size,
            set(self.live_recordings))
        for rid, size, reason in removed:
            self.core.events.emit("recording_removed", f"recording {rid} removed: {reason}",
                                  recording=rid, reason=f"{reason} ({size} bytes)")
        return removed
