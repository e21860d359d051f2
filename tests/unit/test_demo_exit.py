"""tests/e2e/demo.py: a failed step ends the demo with a message and a non-zero exit
status (it used to print "(exit status 1)" and go on to exit 0). No container is booted:
a fake box answers the commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E) not in sys.path:
    sys.path.insert(0, str(E2E))

import demo  # noqa: E402
from container import CommandFailed  # noqa: E402


class FakeBox:
    """Answers every command with exit 0 and empty output, except those in `answers`
    (keyed by the command's first words); records whether it was closed."""

    name = "fake"

    def __init__(self, answers: dict[str, tuple[int, str]] | None = None,
                 boot_error: Exception | None = None) -> None:
        self.answers = answers or {}
        self.boot_error = boot_error
        self.closed = False

    def run(self, argv, user=None, check=True, timeout=None):
        line = argv if isinstance(argv, str) else " ".join(argv)
        rc, out = next((v for k, v in self.answers.items() if line.startswith(k)), (0, ""))
        proc = subprocess.CompletedProcess(argv, rc, out, "refused" if rc else "")
        if check and rc:
            raise CommandFailed(proc, [line])
        return proc

    def boot(self) -> float:
        if self.boot_error:
            raise self.boot_error
        return 0.0

    def close(self) -> None:
        self.closed = True


def test_failed_request_step_fails_the_demo(capsys):
    box = FakeBox({"jit request": (1, "")})
    with pytest.raises(CommandFailed):
        demo.request_flow(demo.Narrator(box))


def test_no_pending_request_fails_the_demo(capsys):
    box = FakeBox({"jit requests --json": (0, json.dumps({"ok": True, "requests": []}))})
    with pytest.raises(demo.StepFailed, match="no pending request"):
        demo.request_flow(demo.Narrator(box))


def test_main_exits_non_zero_with_a_message_and_closes_the_box(monkeypatch, capsys):
    box = FakeBox(boot_error=RuntimeError("systemd did not come up"))
    monkeypatch.setattr(demo, "find_deb", lambda: Path("/nonexistent/jitaccess.deb"))
    monkeypatch.setattr(demo.Container, "create", classmethod(lambda cls, prefix: box))
    assert demo.main([]) == 1
    err = capsys.readouterr().err
    assert "demo: FAILED in step '1. Install the package': systemd did not come up" in err
    assert box.closed
