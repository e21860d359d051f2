"""The webhook spool between hostd and jit-webhook.service (hostd/server/spool.py,
webhook.py): notices written whole and root-only, bounded with the oldest dropped and
logged, checked when read, and posted byte for byte as hostd built them to a real HTTP
server on loopback."""

from __future__ import annotations

import http.server
import json
import os
import re
import stat
import threading

import pytest

from hostd.server import notify, webhook
from hostd.server import spool as spool_mod
from hostd.server.spool import Spool, SpoolError
from hostd.state.journal import Events, read_mirror

REQ = {"id": "abcdefgh", "user": "alice", "role": "docker", "state": "pending",
       "reason": "urgent\n\x1b]0;X\x07 <!channel> *b*", "kind": "role", "duration": 60}


class Hook(http.server.BaseHTTPRequestHandler):
    """Records each POST's raw body; answers with the status the test set."""

    bodies: list[bytes] = []
    status = 200
    on_post = None

    def do_POST(self):
        Hook.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        if Hook.on_post is not None:
            Hook.on_post()
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hook():
    Hook.bodies, Hook.status, Hook.on_post = [], 200, None
    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook"
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def box(tmp_path):
    mirror = tmp_path / "events.jsonl"
    return Spool(tmp_path / "webhook"), Events(mirror, journal=False), mirror


def notifier(box, url: str) -> notify.Notifier:
    spool, events, _ = box
    return notify.Notifier(events, spool.base.parent / "utmp", lambda u: None, lambda: url,
                           "web-1", spool=spool)


def failed(mirror) -> list[dict]:
    return [e for e in read_mirror(mirror) if e["JIT_EVENT"] == "notify_failed"]


def test_a_notice_is_written_whole_and_root_only(box):
    spool, _, _ = box
    assert spool.put({"url": "http://127.0.0.1:9/", "body": {"text": "x"}}) == []
    (path,) = spool.pending()
    assert os.listdir(spool.tmp) == [], "renamed out of tmp/: never seen half written"
    for d in (spool.base, spool.tmp, spool.queue):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert spool.load(path) == {"url": "http://127.0.0.1:9/", "body": {"text": "x"}}


def test_a_file_being_written_is_not_in_the_queue(box):
    spool, _, _ = box
    spool.ensure()
    (spool.tmp / "00000000000000000001-aa.json").write_text('{"url": "http://x/", "bo')
    assert spool.pending() == []
    assert spool.clear_stale_tmp(now=os.stat(spool.tmp).st_mtime + 1) == 0, "still young"
    assert spool.clear_stale_tmp(now=os.stat(spool.tmp).st_mtime + 3600) == 1
    assert os.listdir(spool.tmp) == []


def test_names_sort_oldest_first(box):
    spool, _, _ = box
    for i in range(5):
        spool.put({"url": "http://x/", "body": {"n": i}})
    assert [spool.load(p)["body"]["n"] for p in spool.pending()] == [0, 1, 2, 3, 4]


def test_the_queue_is_bounded_oldest_dropped_with_an_event(box, monkeypatch):
    spool, _, mirror = box
    monkeypatch.setattr(spool_mod, "MAX_NOTICES", 3)
    monkeypatch.setattr(Spool.trim, "__defaults__", (3,))
    n = notifier(box, "http://127.0.0.1:9/hook")
    for i in range(5):
        n("created", {**REQ, "id": f"req{i:05d}"}, [])
    kept = [spool.load(p)["about"]["request_id"] for p in spool.pending()]
    assert kept == ["req00002", "req00003", "req00004"]
    events = failed(mirror)
    assert [e["JIT_REQUEST_ID"] for e in events] == ["req00000", "req00001"]
    assert all("spool is full" in e["MESSAGE"] for e in events)


def test_the_default_bound_holds(box):
    spool, _, _ = box
    spool.ensure()
    for i in range(spool_mod.MAX_NOTICES + 7):  # written directly: put() is fsync-bound
        (spool.queue / f"{i:020d}-x.json").write_text('{"url": "http://x/", "body": {}}')
    assert len(spool.trim()) == 7 and len(spool.pending()) == spool_mod.MAX_NOTICES
    assert spool.pending()[0].name == f"{7:020d}-x.json"


def test_an_oversized_notice_is_refused_and_logged(box):
    spool, _, mirror = box
    n = notifier(box, "http://127.0.0.1:9/hook")
    assert n.queue("http://127.0.0.1:9/hook" + "x" * spool_mod.MAX_NOTICE_BYTES,
                   "created", REQ) is False
    assert spool.pending() == []
    (ev,) = failed(mirror)
    assert "could not be queued" in ev["MESSAGE"] and ev["JIT_REQUEST_ID"] == "abcdefgh"


def test_a_spool_that_is_a_symlink_is_refused(box, tmp_path):
    spool, _, mirror = box
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", spool.base)
    assert notifier(box, "http://127.0.0.1:9/hook").queue("http://x/", "created", REQ) is False
    assert os.listdir(tmp_path / "elsewhere") == [] and len(failed(mirror)) == 1


@pytest.mark.parametrize("content,why", [
    (b"not json", "not JSON"),
    (b'["url", "body"]', "not a notice"),
    (b'{"url": 1, "body": {}}', "not a notice"),
    (b"{" + b" " * spool_mod.MAX_NOTICE_BYTES + b"}", "bytes (at most"),
], ids=["garbage", "list", "url-not-str", "oversized"])
def test_what_is_not_a_notice_is_dropped_with_an_event(box, content, why):
    spool, events, mirror = box
    spool.ensure()
    (spool.queue / "00000000000000000001-x.json").write_bytes(content)
    with pytest.raises(SpoolError, match=re.escape(why)):
        spool.load(spool.pending()[0])
    assert webhook.drain(spool, events) == (0, 1)
    (ev,) = failed(mirror)
    assert why in ev["MESSAGE"] and spool.pending() == []


def test_a_symlinked_notice_is_not_followed(box, tmp_path):
    spool, events, _ = box
    spool.ensure()
    secret = tmp_path / "secret.json"
    secret.write_text('{"url": "http://127.0.0.1:9/", "body": {"s": 1}}')
    os.symlink(secret, spool.queue / "00000000000000000001-x.json")
    with pytest.raises(SpoolError, match="cannot open"):
        spool.load(spool.pending()[0])
    assert webhook.drain(spool, events) == (0, 1) and secret.exists()


def test_the_sender_posts_the_exact_body_and_empties_the_queue(box, hook):
    spool, events, mirror = box
    n = notifier(box, hook)
    n("created", REQ, [])
    n("approved", {**REQ, "state": "approved"}, [])
    assert webhook.drain(spool, events) == (2, 0)
    assert [json.loads(b) for b in Hook.bodies] == [
        notify.webhook_body("created", REQ, "web-1"),
        notify.webhook_body("approved", {**REQ, "state": "approved"}, "web-1")]
    body = json.loads(Hook.bodies[0])
    assert "\x1b" not in body["text"] and "&lt;!channel&gt;" in body["text"]
    assert body["mrkdwn"] is False and body["jitaccess"]["reason"].startswith("urgent\\n")
    assert spool.pending() == [] and failed(mirror) == []


def test_notices_queued_while_sending_are_sent_in_the_same_run(box, hook):
    spool, events, _ = box
    n = notifier(box, hook)
    n("created", REQ, [])
    later = {**REQ, "id": "later000"}
    Hook.on_post = lambda: (n("created", later, []) if len(Hook.bodies) == 1 else None)
    assert webhook.drain(spool, events) == (2, 0)
    assert [json.loads(b)["jitaccess"]["request_id"] for b in Hook.bodies] == [
        "abcdefgh", "later000"]


def test_an_error_status_is_retried_then_logged(box, hook):
    spool, events, mirror = box
    Hook.status = 500
    notifier(box, hook)("created", REQ, [])
    sleeps: list[float] = []
    assert webhook.drain(spool, events, sleeps.append) == (0, 1)
    assert len(Hook.bodies) == 3 and sleeps == [0.5, 1.0]
    (ev,) = failed(mirror)
    assert "HTTP Error 500" in ev["MESSAGE"] and ev["JIT_ROLE"] == "docker"


def test_no_spool_written_without_a_webhook(box):
    spool, _, _ = box
    notifier(box, "")("created", REQ, [])
    assert not spool.base.exists()


NETWORK_CLIENTS = {"urllib.request", "http.client", "requests", "authlib", "httpx"}
SENDERS = {"hostd.server.webhook"}  # the IdP fetcher (hostd/fetch/) joins it at merge


def _network_imports(path) -> set[str]:
    """HTTP client modules a file imports, anywhere in it."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return {n for n in found if n in NETWORK_CLIENTS or n.split(".")[0] in NETWORK_CLIENTS}


def test_only_the_sender_imports_an_http_client():
    """hostd's own modules open no network connection: only the sender imports an HTTP
    client (PyJWT loads urllib.request for its unused JWKS client; the unit's
    RestrictAddressFamilies= is what guarantees no AF_INET socket)."""
    from pathlib import Path

    hostd = Path(__file__).resolve().parents[2] / "hostd"
    users = {".".join(p.relative_to(hostd.parent).with_suffix("").parts):
             _network_imports(p) for p in hostd.rglob("*.py")}
    assert {m for m, found in users.items() if found} <= SENDERS | {
        m for m in users if m.startswith("hostd.fetch")}
    assert users["hostd.server.webhook"] == {"urllib.request"}, "the check sees imports"


def test_a_run_stops_at_its_budget_and_leaves_the_rest_queued(box, hook):
    spool, events, _ = box
    n = notifier(box, hook)
    n("created", REQ, [])
    n("approved", {**REQ, "state": "approved"}, [])
    assert webhook.drain(spool, events, budget=0.0) == (0, 0)
    assert len(spool.pending()) == 2 and Hook.bodies == [], "left for the next run"


def test_an_unusable_spool_is_a_message_not_a_traceback(tmp_path, capsys):
    from hostd.paths import Paths

    paths = Paths.for_root(tmp_path)
    paths.webhook_spool.parent.mkdir(parents=True)
    paths.webhook_spool.write_text("not a directory")
    assert webhook.main(paths) == 1
    err = capsys.readouterr().err
    assert err.startswith("jit-hostd: webhook spool ") and "Traceback" not in err
