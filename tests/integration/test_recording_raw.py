"""record.open's raw frames (DESIGN §13 "Live watching, the rest"): a recorder that asks
for `raw` may send output and input as RS-framed bytes, hostd writes exactly those
bytes into the hash-chained cast; a recorder that does not ask keeps JSON lines; a bad
raw frame is a named error that ends the recording, never a traceback or a hang."""

from __future__ import annotations

import json

import pytest
from sandbox import Sandbox
from test_recording import RECORD_POLICY, activate, check, closed, token_of

from hostd.client import Client
from hostd.record.castfile import iter_cast, verify
from hostd.wire import MAX_RAW, RAW, RECORD_FRAME


@pytest.fixture
def box():
    b = Sandbox(RECORD_POLICY)
    b.start()
    yield b
    b.cleanup()


def _open(box, raw: bool):
    activate(box, "rec")
    token = token_of(check(box, ["/usr/bin/id"], runas="alice"))
    fields = {"raw": True} if raw else {}
    return Client(box.socket_path, trusted=True).stream("record.open", token=token, **fields)


def _send_raw(stream, kind: bytes, t: float, data: bytes, length: int | None = None) -> None:
    size = len(data) if length is None else length
    stream.client._sock.sendall(RECORD_FRAME.pack(RAW, kind, t, size) + data)


def _cast(box, rid: str):
    path = box.root / f"var/log/jit/sessions/{rid}.cast"
    return path, list(iter_cast(path)[1])


def test_raw_frames_land_in_the_cast_byte_for_byte_between_json_frames(box):
    stream = _open(box, raw=True)
    assert stream.opened["raw"] is True
    rid = stream.opened["id"]
    big = bytes(range(32, 127)) * (MAX_RAW // 90)  # more than one frame holds
    _send_raw(stream, b"o", 0.1, b"hello\r\n")
    stream.send({"t": 0.2, "r": [100, 30]})
    _send_raw(stream, b"o", 0.3, big[:MAX_RAW])
    _send_raw(stream, b"o", 0.3, big[MAX_RAW:])
    _send_raw(stream, b"o", 0.4, b"")  # an empty frame is harmless
    stream.send({"t": 0.5, "o": "YnllCg=="})  # a JSON line still works on a raw stream
    stream.send({"t": 0.6, "end": "exit 0"})
    answer = stream.recv(timeout=10)
    assert answer["ok"] and len(answer["sha256"]) == 64, answer
    assert closed(box, rid)["JIT_RECORDING_SHA256"] == answer["sha256"]
    path, events = _cast(box, rid)
    assert verify(path, answer["sha256"]).ok
    output = "".join(text for _, code, text in events if code == "o")
    assert output == "hello\r\n" + big.decode() + "bye\n"
    assert [text for _, code, text in events if code == "r"] == ["100x30"]


def test_a_recorder_that_does_not_ask_gets_lines_only(box):
    stream = _open(box, raw=False)
    assert stream.opened["raw"] is False
    _send_raw(stream, b"o", 0.1, b"hello\n")  # not a JSON line: refused by name
    answer = stream.recv(timeout=10)
    assert answer["code"] == "bad_request", answer
    (failed,) = box.wait_for(lambda: box.events("recording_failed"))
    assert failed["JIT_RECORDING"] == stream.opened["id"]


def _refused(box, frame_kind: bytes, t: float, length: int) -> dict:
    stream = _open(box, raw=True)
    _send_raw(stream, b"o", 0.1, b"kept\n")
    _send_raw(stream, frame_kind, t, b"", length=length)
    answer = stream.recv(timeout=10)
    (failed,) = box.wait_for(lambda: box.events("recording_failed"))
    path, events = _cast(box, stream.opened["id"])
    assert verify(path, failed["JIT_RECORDING_SHA256"]).ok  # what came is kept, chained
    assert "kept\n" in [text for _, _, text in events]
    return answer


def test_a_raw_frame_over_max_raw_is_refused_before_it_is_read(box):
    answer = _refused(box, b"o", 0.2, MAX_RAW + 1)
    assert answer["code"] == "bad_request", answer
    assert f"{MAX_RAW // 1024} KiB" in answer["message"], answer


def test_a_raw_frame_of_an_unknown_kind_or_time_is_refused(box):
    answer = _refused(box, b"x", 0.2, 0)
    assert answer["code"] == "bad_request" and "o or i" in answer["message"], answer


def test_a_raw_frame_with_a_negative_time_is_refused(box):
    answer = _refused(box, b"o", -1.0, 0)
    assert answer["code"] == "bad_request", answer


def test_a_recorder_gone_within_a_raw_frame_ends_the_recording_as_gone(box):
    stream = _open(box, raw=True)
    rid = stream.opened["id"]
    _send_raw(stream, b"o", 0.1, b"whole\n")
    stream.client._sock.sendall(RECORD_FRAME.pack(RAW, b"o", 0.2, 100) + b"cut")
    stream.close()
    (failed,) = box.wait_for(lambda: box.events("recording_failed"))
    assert failed["JIT_RECORDING"] == rid
    assert "without an end frame" in failed["JIT_REASON"], json.dumps(failed)
    _, events = _cast(box, rid)
    assert [text for _, _, text in events if text.startswith(("whole", "cut"))] == ["whole\n"]
