"""The listener: accepts on hostd.sock and answers quick calls without the streams
machinery; everything else goes to Server.handle on asyncio streams, as before.

Most connections are one quick call and a close: pam_jit's three per login, the sudo
plugin's check, `jit status`. asyncio's server gives each one a task to accept it, a
StreamReader, a StreamWriter and a task to serve it, and wakes several times to read
one line, write one answer and see the end (benchmarks/pam_hostd_cpu.py: most of
hostd's CPU per login). Here the listening socket is a plain reader callback: a
connection is accepted, its credentials taken from the kernel (SO_PEERCRED), its
bytes read into a buffer as they come; each complete line of a `call` op is answered
by one task (Server.call, the same checks and handlers as the streams path) and the
answer sent on the socket directly. A line of a `wait` or `stream` op, a line over
PEEK_MAX, or an answer the socket cannot take at once hands the connection, with
what was read and not yet answered, to asyncio streams (Server.handle), which serve it
to its end exactly as they serve every connection.

Bounds are the streams path's: the per-uid and global connection limits
(connections.Limits, taken at accept), IDLE_TIMEOUT between requests, MAX_LINE.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from hostd.errors import JitError
from hostd.protocol import CALL, MAX_LINE, OPS, decode, encode
from hostd.server.connections import peer_credentials
from hostd.server.ops import Caller

if TYPE_CHECKING:
    from hostd.server.connections import Server

log = logging.getLogger("jit-hostd")

PEEK_MAX = 16 * 1024  # a quick request is one line of at most this; longer: streams
ACCEPT_BATCH = 64  # connections accepted per wake-up before other work gets a turn


class Listener:
    """hostd.sock's accept loop; `close` stops accepting and ends the quick connections
    (those handed to streams end with the loop, as under asyncio's server)."""

    def __init__(self, server: Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.open: set[_Quick] = set()
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the next wake-up tries again
                log.warning("accept on hostd.sock failed: %s", exc)
                return
            conn.setblocking(False)
            _Quick(self, conn).start()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for quick in list(self.open):
            quick.close()


class _Quick:
    """One connection on the quick path: read, answer calls, hand over or close.
    Between requests it waits (a reader callback and the idle timer); while a request
    is answered it reads nothing, so requests are answered in order."""

    def __init__(self, listener: Listener, conn: socket.socket) -> None:
        self.listener, self.server, self.conn = listener, listener.server, conn
        self.loop = listener.loop
        self.buf = b""
        self.caller: Caller | None = None
        self.reading = False
        self.idle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        try:
            pid, uid, gid = peer_credentials(self.conn)
        except OSError:
            self.conn.close()
            return
        if not self.server.limits.admit(uid):
            try:  # one short line into an empty socket buffer: it fits
                self.conn.send(encode(JitError("busy", "hostd is busy; try again").to_wire()))
            except OSError:
                pass
            self.conn.close()
            return
        self.caller = Caller(uid, pid, gid)
        self.listener.open.add(self)
        self._readable()  # the request is often there already: no wake-up for it

    def _wait(self) -> None:
        """Wait for more of the next request, or the end (idempotent); the idle timeout
        runs from the first wait for a request, as the streams path's readline."""
        if self.idle is None:
            self.idle = self.loop.call_later(self.server.idle_timeout, self.close)
        if not self.reading:
            self.loop.add_reader(self.conn.fileno(), self._readable)
            self.reading = True

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.conn.fileno())
            self.reading = False
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None

    def _readable(self) -> None:
        try:
            chunk = self.conn.recv(PEEK_MAX)
        except (BlockingIOError, InterruptedError):
            self._wait()
            return
        except OSError:
            self.close()
            return
        if not chunk:  # the client closed its end: a half line is refused as by streams
            if self.buf:
                self._refuse(JitError("bad_request", "request not ended by a newline"))
            self.close()
            return
        self.buf += chunk
        self._next()

    def _next(self) -> None:
        """Act on the buffer: answer its first line, hand over, or wait for more."""
        end = self.buf.find(b"\n")
        if end < 0:
            if len(self.buf) >= PEEK_MAX:
                self._hand_over()  # long or unended: the streams path's bounds decide
            else:
                self._wait()
            return
        line = self.buf[:end + 1]
        name = args = error = None
        try:
            name, args = decode(line)
        except JitError as exc:  # answered as the streams path answers it
            error = exc
        if name is not None and OPS[name].kind != CALL:
            self._hand_over()
            return
        self.buf = self.buf[end + 1:]
        self._stop_reading()
        task = self.loop.create_task(self._answer(name, args, error))
        task.add_done_callback(_log_failure)

    async def _answer(self, name: str | None, args: dict | None,
                      error: JitError | None) -> None:
        answer = error.to_wire() if error is not None else \
            await self.server.call(name, args, self.caller)
        data = encode(answer)
        try:
            sent = self.conn.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):  # a full socket: the streams path waits for it
            self._hand_over(data[sent:])
        elif self in self.listener.open:
            self._next()  # a pipelined request, or wait for the next one (or the end)

    def _refuse(self, error: JitError) -> None:
        """A last answer before closing (the client may still read: shutdown(SHUT_WR))."""
        try:
            self.conn.send(encode(error.to_wire()))
        except OSError:
            pass

    def _hand_over(self, unsent: bytes = b"") -> None:
        """The rest of the connection on asyncio streams (Server.handle): what was read
        and not answered is its reader's first bytes, `unsent` its writer's."""
        self._stop_reading()
        self.listener.open.discard(self)
        self.server.limits.release(self.caller.uid, False)  # handle() takes its own
        task = self.loop.create_task(self._streams(self.buf, unsent))
        task.add_done_callback(_log_failure)

    async def _streams(self, read: bytes, unsent: bytes) -> None:
        reader = asyncio.StreamReader(limit=MAX_LINE + 1, loop=self.loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self.loop)
        reader.feed_data(read)  # before the transport reads anything more
        try:
            transport, _ = await self.loop.connect_accepted_socket(lambda: protocol,
                                                                   sock=self.conn)
        except OSError:
            self.conn.close()
            return
        writer = asyncio.StreamWriter(transport, protocol, reader, self.loop)
        if unsent:
            writer.write(unsent)
        await self.server.handle(reader, writer)

    def close(self) -> None:
        self._stop_reading()
        if self in self.listener.open:
            self.listener.open.discard(self)
            self.server.limits.release(self.caller.uid, False)
        self.conn.close()


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("quick connection failed", exc_info=task.exception())
