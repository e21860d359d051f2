"""Live sessions (issue 23): `session.list`, `session.watch`, `session.terminate`, and
the moderation of sessions whose role demands moderators.

Who may: a session's role's approvers and root; group adm may observe (it reads the
recordings already: recordings.READERS_GROUP), never moderate or terminate; a
session's own user never. A watcher is fed by the session's Fanout
(hostd/record/fanout.py), never waited for: one that cannot keep up is dropped.

Moderation (hostd/policy/moderation.py is the rule): one task per moderated session
re-evaluates the rule whenever a watcher comes or goes, and at join_timeout; it tells
the recorder `start`, `pause`, `resume` on its stream, or hangs the session up.
Moderators send a frame at least every second; one silent for GONE_AFTER (5 s), or
whose connection closes, is gone (T#36881: a dropped moderator must not leave the
session waiting on a dead connection).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import struct
from collections import OrderedDict

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.events import carried
from hostd.policy import moderation as rule
from hostd.policy.approvals import clean_reason, in_members
from hostd.record.fanout import MODERATOR, OBSERVER, Fanout, Watcher
from hostd.record.recordings import READERS_GROUP, RECORDING_ID, Recording, readers_gid
from hostd.server.ops import Caller
from hostd.server.record import RecordOps
from hostd.wire import encode

log = logging.getLogger("jit-hostd")

SEND_TIMEOUT = 10.0  # a watcher whose socket takes nothing this long is gone
SOCKET_AHEAD = 256 * 1024  # bytes left in asyncio's buffer before a watcher is waited on


class _Moderated:
    """One moderated session's rule, carried out: start, pause, resume, terminate."""

    def __init__(self, ops: WatchOps, rec: Recording, fanout: Fanout,
                 m: rule.Moderation) -> None:
        self.ops, self.rec, self.fanout, self.m = ops, rec, fanout, m
        self.loop = asyncio.get_running_loop()
        self.state, self.since = rule.WAITING, self.loop.time()
        self.changed = asyncio.Event()
        self.task = self.loop.create_task(self.run())

    async def run(self) -> None:
        try:
            while self.state != rule.ENDED and not self.fanout.ended:
                self.changed.clear()
                now = self.loop.time()
                state, action, why = rule.step(self.m, self.state,
                                               self.fanout.count(MODERATOR), self.since, now)
                if action is not None:
                    self.state, self.since = state, now
                    await self.act(action, why)
                    continue
                wait = None if state == rule.RUNNING else \
                    max(0.0, self.since + self.m.join_timeout - now)
                try:
                    await asyncio.wait_for(self.changed.wait(), wait)
                except TimeoutError:
                    pass
        except Exception:  # a bug must not leave the session stuck: end it
            log.exception("moderation of %s failed; ending it", self.rec.id)
            await self.ops.recordings.terminate(self.rec, "moderation failed")

    async def act(self, action: str, why: str) -> None:
        rec, channel = self.rec, self.ops.recordings.control(self.rec.id)
        if action == rule.TERMINATE:
            await self.ops.recordings.terminate(rec, why)
            return
        if channel is None:
            return
        await channel.send({action: why})
        if action == rule.START:
            self.fanout.notice({"started": why})
            return
        event = "session_paused" if action == rule.PAUSE else "session_resumed"
        self.fanout.notice({"paused" if action == rule.PAUSE else "resumed": why})
        self.ops.core.events.emit(event, f"recorded sudo session {rec.id} of "
                                         f"{rec.session.user} {event[8:]}: {why}",
                                  **carried(event, rec.session, recording=rec.id,
                                            session_id=rec.id, reason=why))


class WatchOps:
    """session.list, session.watch, session.terminate; moderation of live sessions."""

    def __init__(self, core: Core, recordings: RecordOps, names) -> None:
        self.core, self.recordings, self.names = core, recordings, names
        self.moderated: dict[str, _Moderated] = {}
        recordings.on_open = self._opened
        recordings.on_close = self._closed

    def _opened(self, rec: Recording, fanout: Fanout, channel) -> None:
        role = self.core.config.roles.get(rec.session.role) if rec.session.role else None
        if role is not None and role.moderation is not None:
            self.moderated[rec.id] = _Moderated(self, rec, fanout, role.moderation)

    def _closed(self, rec: Recording) -> None:
        mod = self.moderated.pop(rec.id, None)
        if mod is not None:
            mod.task.cancel()

    def _changed(self, rid: str) -> None:
        mod = self.moderated.get(rid)
        if mod is not None:
            mod.changed.set()

    # who may -----------------------------------------------------------------------------

    async def _who(self, caller: Caller) -> tuple[str, frozenset[str]]:
        name = await self.names.user_by_uid(caller.uid)
        if name is None:
            raise JitError("wrong_user", f"uid {caller.uid} has no local user name")
        return name, await self.names.groups_of(name)

    def _role_approver(self, rec: Recording, name: str, groups: frozenset[str]) -> bool:
        role = self.core.config.roles.get(rec.session.role) if rec.session.role else None
        return role is not None and in_members(role.approvers, name, set(groups))

    def _may(self, rec: Recording, caller: Caller, name: str, groups: frozenset[str],
             what: str) -> None:
        """`what`: observe, moderate or terminate; refused with a named error."""
        if name == rec.session.user or caller.uid == rec.session.uid:
            raise JitError("permission_denied", f"you cannot {what} your own session")
        if self._role_approver(rec, name, groups):
            return
        if what != "moderate" and caller.uid == 0:
            return
        if what == "observe" and READERS_GROUP in groups and readers_gid() is not None:
            return
        raise JitError("not_approver", f"only approvers of role {rec.session.role or '-'} "
                                       f"may {what} session {rec.id}")

    def _live(self, rid: str) -> tuple[Recording, Fanout]:
        if not RECORDING_ID.fullmatch(rid):
            raise JitError("bad_request", "a session id is 16 hex digits")
        rec = self.recordings.live_recordings.get(rid)
        fanout = self.recordings.fanouts.get(rid)
        if rec is None or fanout is None or fanout.ended:
            if (self.recordings.sessions_dir / f"{rid}.cast").exists():
                raise JitError("session_ended", f"session {rid} has ended; "
                                                f"`jit replay {rid}` shows it")
            raise JitError("not_found", f"no live session {rid}")
        return rec, fanout

    # ops -----------------------------------------------------------------------------------

    async def op_session_list(self, args: dict, caller: Caller) -> dict:
        name, groups = await self._who(caller)
        rows = []
        for rid, rec in list(self.recordings.live_recordings.items()):
            fanout = self.recordings.fanouts.get(rid)
            try:
                self._may(rec, caller, name, groups, "observe")
            except JitError:
                continue
            if fanout is None:
                continue
            mod = self.moderated.get(rid)
            meta = fanout.header.get("jit", {})
            rows.append({"id": rid, "user": rec.session.user, "runas": rec.session.runas,
                         "command": meta.get("command", ""), "role": rec.session.role,
                         "started": meta.get("started"), "tty": rec.session.tty,
                         "state": mod.state if mod else "running",
                         "watchers": fanout.count(OBSERVER),
                         "moderators": fanout.count(MODERATOR)})
        return {"ok": True, "code": "ok", "message": f"{len(rows)} live sessions",
                "sessions": rows}

    async def op_session_terminate(self, args: dict, caller: Caller) -> dict:
        rec, _ = self._live(args["id"])
        name, groups = await self._who(caller)
        self._may(rec, caller, name, groups, "terminate")
        why = clean_reason(args["reason"])
        if not await self.recordings.terminate(rec, f"ended by {name}: {why}", name):
            raise JitError("session_ended", f"session {rec.id} is already ending")
        return {"ok": True, "code": "ok", "message": f"session {rec.id} of "
                f"{rec.session.user} terminated", "id": rec.id}

    async def op_session_watch(self, args: dict, caller: Caller, channel) -> dict:
        rec, fanout = self._live(args["id"])
        name, groups = await self._who(caller)
        moderate = bool(args.get("moderate"))
        self._may(rec, caller, name, groups, "moderate" if moderate else "observe")
        wake = asyncio.Event()
        w = Watcher(name, caller.uid, MODERATOR if moderate else OBSERVER, wake.set)
        fanout.attach(w, bool(args.get("from_start")))
        self._watch_event("session_watch_started", rec, w, None)
        mod = self.moderated.get(rec.id)
        self._changed(rec.id)
        why, answer = "the watcher went away", {"ok": False, "code": "unreachable",
                                                 "message": "watcher gone"}
        try:
            opened = {"ok": True, "code": "ok", "message": f"watching {rec.id}",
                      "id": rec.id, "mode": w.mode, "header": fanout.header,
                      "state": mod.state if mod else rule.RUNNING,
                      "trimmed": bool(args.get("from_start")) and fanout.trimmed}
            if await channel.send(opened):
                why, answer = await self._pump(fanout, w, channel, wake,
                                               bool(args.get("raw")))
            return answer
        finally:
            fanout.detach(w)
            self._changed(rec.id)
            self._watch_event("session_watch_ended", rec, w, why)

    def _watch_event(self, event: str, rec: Recording, w: Watcher, why: str | None) -> None:
        verb = "started" if why is None else f"stopped ({why})"
        self.core.events.emit(event, f"{w.user} {verb} watching session {rec.id} of "
                                     f"{rec.session.user} as {w.mode}",
                              **carried(event, rec.session, recording=rec.id,
                                        session_id=rec.id, approver=w.user, mode=w.mode,
                                        **({} if why is None else {"reason": why})))

    async def _pump(self, fanout: Fanout, w: Watcher, channel, wake: asyncio.Event,
                    raw: bool = False) -> tuple[str, dict]:
        """Send what is queued, as it comes, until the session ends, the watcher goes
        or is dropped. (why, the final answer)."""
        listener = asyncio.ensure_future(_listen(channel, w))
        listener.add_done_callback(lambda _: wake.set())  # one event to wait on: no task
        try:
            while True:
                wake.clear()
                lines = [part for item in w.take() if item[0] in ("o", "r")
                         for part in (_raw(*item) if raw else (_line(*item),))]
                lines += [encode(n) for n in _notices(w)]
                stuck = await _deliver(channel, lines, w, listener) if lines else None
                if stuck is not None:
                    return stuck, {"ok": False, "code": "too_slow", "message": stuck}
                if w.dropped and w.dropped != "detached":
                    return w.dropped, {"ok": False, "code": "too_slow", "message": w.dropped}
                if fanout.ended and not w.queue:
                    return "the session ended", {
                        "ok": True, "code": "ok", "end": fanout.ended,
                        "message": f"the session ended ({fanout.ended})"}
                if listener.done():
                    return listener.result(), {"ok": True, "code": "ok",
                                               "message": "stopped watching"}
                await wake.wait()  # output, a drop, the end, or the listener done
        finally:
            listener.cancel()


async def _deliver(channel, lines: list[bytes], w: Watcher,
                   listener: asyncio.Future) -> str | None:
    """Write the lines and wait until the socket takes them; meanwhile the watcher may
    be dropped (its queue filled) or go. None once written, else why it ends."""
    try:
        channel.writer.writelines(lines)
    except (ConnectionError, OSError):
        return "the connection was lost"
    transport = channel.writer.transport
    if transport.is_closing():
        return "the connection was lost"
    if transport.get_write_buffer_size() <= SOCKET_AHEAD:
        return None  # the socket keeps up: no drain to wait for (the loop's hot path)
    drain = asyncio.ensure_future(channel.writer.drain())
    try:
        for _ in range(int(SEND_TIMEOUT)):
            done, _ = await asyncio.wait({drain, listener}, timeout=1.0,
                                         return_when=asyncio.FIRST_COMPLETED)
            if drain in done:
                return "the connection was lost" if drain.exception() else None
            if w.dropped and w.dropped != "detached":
                return w.dropped
            if listener in done:
                return listener.result()
        return f"the watcher took nothing for {SEND_TIMEOUT:g} s"
    finally:
        drain.cancel()


async def _listen(channel, w: Watcher) -> str:
    """The watcher's side of the stream: pings, EOF. A moderator silent for
    GONE_AFTER counts as gone; an observer may be silent."""
    timeout = rule.GONE_AFTER if w.mode == MODERATOR else None
    while True:
        try:
            frame = await asyncio.wait_for(channel.recv(), timeout)
        except TimeoutError:
            return f"no sign of life for {rule.GONE_AFTER:g} s"
        except JitError as exc:
            return f"bad frame: {exc.message}"
        except (ConnectionError, OSError):
            return "the connection was lost"
        if frame is None:
            return "the watcher left"


_WIRE: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
WIRE_CACHE = 256  # output frames whose line is kept, shared by every watcher
LINE_DATA = 32 * 1024  # bytes of output per JSON line (its base64 fits MAX_LINE)


RAW = 0x1E  # a raw output frame's first byte (a JSON line starts with "{")


def _raw(kind: str, t: float, data) -> tuple[bytes, ...]:
    """An output item as a raw frame (`raw` watchers): RS, t as a big-endian double,
    the length as a 32-bit unsigned, the bytes as they are; a resize stays a line."""
    if kind == "r":
        return (encode({"t": round(t, 6), "r": list(data)}),)
    return (struct.pack(">BdI", RAW, t, len(data)), data)


def _line(kind: str, t: float, data) -> bytes:
    """One item as its frame's line; an output frame's line is built once and shared
    by all the session's watchers (the cache holds the data, so its id stays unique)."""
    if kind == "r":
        return encode({"t": round(t, 6), "r": list(data)})
    hit = _WIRE.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    # the recorder's raw frames carry up to 256 KiB: a JSON watcher still gets lines
    # that fit its 64 KiB (one line per LINE_DATA bytes, joined into one write)
    b64 = binascii.b2a_base64
    line = b"".join(b'{"t":%.6f,"o":"%s"}\n' % (t, b64(data[i:i + LINE_DATA], newline=False))
                    for i in range(0, len(data), LINE_DATA))
    _WIRE[id(data)] = (data, line)
    if len(_WIRE) > WIRE_CACHE:
        _WIRE.popitem(last=False)
    return line


def _notices(w: Watcher) -> list[dict]:
    out = list(w.notices)
    w.notices.clear()
    return out
