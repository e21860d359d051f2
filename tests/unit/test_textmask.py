"""hostd/masking/text.py: one masker for every sink. Command lines in events are
masked with the host's rules and JIT_MASKED counts what was masked per rule."""

from __future__ import annotations

import json
import re

from hostd.masking import text as textmask
from hostd.policy.config import Config
from hostd.state.journal import Events


def test_an_event_command_line_is_masked_and_counted(tmp_path):
    mirror = tmp_path / "events.jsonl"
    ev = Events(mirror=mirror, journal=False)
    rec = ev.emit("sudo_allowed", "sudo allowed for alice as root", user="alice",
                  command="/usr/bin/mysql -u root -pS3cretPW shop", runas="root")
    assert rec["JIT_COMMAND"] == "/usr/bin/mysql -u root -p******** shop"
    assert rec["JIT_MASKED"] == "command_password=1"
    assert "S3cretPW" not in mirror.read_text()
    assert json.loads(mirror.read_text())["JIT_COMMAND"] == rec["JIT_COMMAND"]


def test_an_event_without_secrets_has_no_masked_field(tmp_path):
    rec = Events(mirror=tmp_path / "e", journal=False).emit(
        "sudo_allowed", "x", command="/usr/bin/ls -la /root")
    assert rec["JIT_COMMAND"] == "/usr/bin/ls -la /root" and "JIT_MASKED" not in rec


def test_the_host_rules_apply_once_configured():
    try:
        textmask.configure(Config(masking=(("ticket", re.compile(r"TICKET-[0-9]{6}")),),
                                  masking_fields=("pin",)))
        out, counts = textmask.mask_text("deploy TICKET-424242 pin=1234")
        assert out == "deploy ************* pin=****"
        assert counts == {"ticket": 1, "field": 1}
    finally:
        textmask.configure(Config())
    assert textmask.mask_text("TICKET-424242")[0] == "TICKET-424242"


def test_colour_codes_in_a_command_line_do_not_hide_a_secret():
    out, _ = textmask.mask_text("echo \x1b[31mAKIA\x1b[0mIOSFODNN7EXAMPLE")
    assert out == "echo \x1b[31m****\x1b[0m****************"


def test_the_message_quoting_a_command_is_masked_too(tmp_path):
    rec = Events(mirror=tmp_path / "e", journal=False).emit(
        "recording_closed", "recording 1 closed: alice ran mysql -pS3cret x (exit 1)",
        command="mysql -pS3cret x")
    assert "S3cret" not in json.dumps(rec) and "mysql -p****** x" in rec["MESSAGE"]


def test_a_reloaded_policy_masks_event_command_lines_with_its_own_rules(tmp_path):
    """The policy a reload gives Core (ReloadOps sets core.config) is the one events mask
    with: a rule added by the reload hides what the first policy showed."""
    from fakes import FakeAccounts

    from hostd.core.lifecycle import Core
    from hostd.policy.hostmatch import HostFacts
    from hostd.state.store import Store

    events = Events(mirror=tmp_path / "events.jsonl", journal=False)
    core = Core(Config(), Store(tmp_path / "state.db"), FakeAccounts(), events,
                HostFacts("h", "", ()))
    try:
        line = "/usr/bin/deploy TICKET-424242"
        assert events.emit("sudo_allowed", "x", command=line)["JIT_COMMAND"] == line
        core.config = Config(masking=(("ticket", re.compile(r"TICKET-[0-9]{6}")),))
        rec = events.emit("sudo_allowed", "x", command=line)
        assert rec["JIT_COMMAND"] == "/usr/bin/deploy *************"
        assert rec["JIT_MASKED"] == "ticket=1"
    finally:
        core.store.close()
        textmask.configure(Config())
