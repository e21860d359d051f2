"""Live watching of a recorded session (issue 23): one Fanout per open recording keeps
a bounded backlog of what the cast records and hands each item to every watcher.

What a watcher sees is exactly what the recording holds: the frames hostd received
from the recorder, which masked them before the user's screen (DESIGN §13 "Masking
happens in the recorder"). Publishing never waits: each watcher has a queue bounded
in bytes, and a watcher whose queue is full is dropped (with the reason), never
waited for, so a stopped terminal or a slow link cannot slow the session down.

No event loop here: a watcher's `wake` is whatever its server task waits on (an
asyncio.Event's set), so this module is tested as plain code.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

BACKLOG_BYTES = 256 * 1024  # the output kept for `jit watch --from-start`
QUEUE_BYTES = 4 * 1024 * 1024  # what one watcher may have unsent before it is dropped
OBSERVER, MODERATOR = "observer", "moderator"

Item = tuple[str, float, object]  # ("o"|"i"|"r", t, bytes | (cols, rows))


def _size(item: Item) -> int:
    data = item[2]
    return len(data) if isinstance(data, bytes | bytearray) else 16


class Watcher:
    """One `jit watch` connection: who, in which mode, and what is queued for it."""

    def __init__(self, user: str, uid: int, mode: str = OBSERVER,
                 wake: Callable[[], None] = lambda: None,
                 limit: int = QUEUE_BYTES) -> None:
        self.user, self.uid, self.mode = user, uid, mode
        self.wake, self.limit = wake, limit
        self.queue: deque[Item] = deque()
        self.size = 0
        self.dropped = ""  # why it was dropped; "" while it is attached
        self.notices: deque[dict] = deque()  # pause, resume: control frames, in order

    def offer(self, items: Iterable[Item]) -> bool:
        """Queue items unless that overfills the queue (False: drop this watcher)."""
        for item in items:
            n = _size(item)
            if self.size + n > self.limit:
                return False
            self.queue.append(item)
            self.size += n
        return True

    def take(self) -> list[Item]:
        """Everything queued, oldest first; the queue is empty after."""
        items = list(self.queue)
        self.queue.clear()
        self.size = 0
        return items


class Fanout:
    """A live session's backlog and watchers. `publish` is called on hostd's loop for
    every frame the recorder sends, before the cast write (the same bytes)."""

    def __init__(self, header: dict, backlog: int = BACKLOG_BYTES) -> None:
        self.header = header
        self.backlog: deque[Item] = deque()
        self.backlog_size = 0
        self.backlog_limit = backlog
        self.trimmed = False  # output older than the backlog is gone (replay has it)
        self.watchers: list[Watcher] = []
        self.ended = ""  # the end status once the session is over

    def publish(self, items: list[Item]) -> list[Watcher]:
        """Keep items in the backlog and queue them for every watcher; the watchers
        dropped because their queue is full are returned (already detached)."""
        for item in items:
            self.backlog.append(item)
            self.backlog_size += _size(item)
        while self.backlog_size > self.backlog_limit and len(self.backlog) > 1:
            self.backlog_size -= _size(self.backlog.popleft())
            self.trimmed = True
        dropped = []
        for w in list(self.watchers):
            if w.offer(items):
                w.wake()
            else:
                self.detach(w, f"dropped: {w.user} did not keep up with the session "
                               f"(more than {w.limit // 1024} KiB unsent)")
                dropped.append(w)
        return dropped

    def attach(self, watcher: Watcher, from_start: bool) -> None:
        """Start watching: with `from_start`, the backlog first (bounded: the queue
        holds at most its limit, the newest end of it)."""
        if from_start:
            kept: list[Item] = []
            size = 0
            for item in reversed(self.backlog):
                size += _size(item)
                if size > watcher.limit:
                    break
                kept.append(item)
            watcher.offer(reversed(kept))
        self.watchers.append(watcher)

    def detach(self, watcher: Watcher, why: str = "") -> None:
        if watcher in self.watchers:
            self.watchers.remove(watcher)
            watcher.dropped = why or "detached"
            watcher.wake()

    def notice(self, frame: dict) -> None:
        """A control frame (paused, resumed) for every watcher, in order with output."""
        for w in self.watchers:
            w.notices.append(frame)
            w.wake()

    def end(self, status: str) -> None:
        """The session is over: every watcher is told and woken, none can attach."""
        self.ended = status or "ended"
        for w in list(self.watchers):
            w.wake()

    def count(self, mode: str) -> int:
        """Watchers in `mode`; moderators by distinct user (one person watching twice
        is one moderator)."""
        if mode == MODERATOR:
            return len({w.uid for w in self.watchers if w.mode == MODERATOR})
        return sum(1 for w in self.watchers if w.mode == mode)
