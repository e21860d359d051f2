"""`jit-hostd --webhook-send` (jit-webhook.service): POST the notices hostd queued in
the spool (hostd/server/spool.py) to the webhook, then exit.

hostd itself opens no network socket (its unit denies AF_INET/AF_INET6 and every IP
address); this process is the only part of jitaccess besides the IdP fetcher that may.
It sends each notice as hostd built it (escaping and cutting happen in hostd, in
notify.webhook_body: the sender adds nothing), one at a time, oldest first, with a 5 s
timeout and 3 tries (waits of 0.5 and 1 s between them). A notice is removed once
delivered or once its tries are spent; a failure is a `notify_failed` event, as it was
when hostd posted in a thread. jit-webhook.path starts it again while `queue/` is not
empty, so notices queued while it runs, or while it was down, are sent too.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hostd.paths import Paths
from hostd.server.spool import Spool, SpoolError
from hostd.state.journal import Events

WEBHOOK_TIMEOUT = 5.0
WEBHOOK_TRIES = 3
RUN_BUDGET = 300.0  # seconds a run starts new notices for; the path unit starts the next


def post(url: str, body: bytes, sleep: Callable[[float], None] = time.sleep) -> str:
    """POST with retries and backoff: "" when delivered (2xx), else the last error."""
    if not url.startswith(("https://", "http://")):
        return "not an http(s) URL"
    error = ""
    for attempt in range(WEBHOOK_TRIES):
        try:
            r = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                       headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(r, timeout=WEBHOOK_TIMEOUT) as resp:  # noqa: S310
                if 200 <= resp.status < 300:
                    return ""
                error = f"HTTP {resp.status}"
        except Exception as exc:  # any network failure: retry, then log
            error = str(exc) or type(exc).__name__
        if attempt + 1 < WEBHOOK_TRIES:
            sleep(0.5 * 2 ** attempt)
    return error


def send_one(spool: Spool, path: Path, events: Events,
             sleep: Callable[[float], None] = time.sleep) -> bool:
    """Deliver one queued notice and remove it; False (and an event) when it failed."""
    try:
        notice = spool.load(path)
    except SpoolError as exc:
        spool.remove(path)
        events.emit("notify_failed", f"webhook notice {path.name} dropped: {exc}")
        return False
    error = post(notice["url"], json.dumps(notice["body"]).encode(), sleep)
    spool.remove(path)
    if not error:
        return True
    who = notice.get("about", {})
    events.emit("notify_failed", f"webhook notification failed after {WEBHOOK_TRIES} "
                f"tries: {error}", request_id=who.get("request_id"), user=who.get("user"),
                role=who.get("role"))
    return False


def drain(spool: Spool, events: Events, sleep: Callable[[float], None] = time.sleep,
          budget: float = RUN_BUDGET) -> tuple[int, int]:
    """Send until the queue is empty (notices queued meanwhile included) or `budget`
    seconds have passed (within the unit's timeout: the path unit starts the next run
    while notices are left): (sent, failed)."""
    sent = failed = 0
    spool.clear_stale_tmp()
    deadline = time.monotonic() + budget
    while batch := spool.pending():
        for path in batch:
            if time.monotonic() >= deadline:
                return sent, failed
            if not path.exists():  # dropped by hostd meanwhile (the queue was full)
                continue
            if send_one(spool, path, events, sleep):
                sent += 1
            else:
                failed += 1
    return sent, failed


def main(paths: Paths) -> int:
    """The unit's one run: drain the spool, say what was done."""
    events = Events(mirror=paths.events_mirror if paths.sandboxed else None)
    spool = Spool(paths.webhook_spool)
    try:
        spool.ensure()
        sent, failed = drain(spool, events)
    except OSError as exc:  # the spool itself unusable (a notice it cannot remove...)
        print(f"jit-hostd: webhook spool {spool.base}: {exc}", file=sys.stderr)
        return 1
    print(f"jit-hostd: webhook: {sent} sent, {failed} failed")
    return 0
