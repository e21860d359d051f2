"""jit setup pam's checks of the stacks pam-auth-update writes, and jit grants --sessions."""

from __future__ import annotations

import os

from hostd.cli import setup_pam as pamconf

SKIP = "account\t[success=1 default=ignore]\tpam_succeed_if.so quiet uid eq 0"
OURS = "account\trequired\tpam_jit.so"
SERVICE = "account\t[success=1 default=ignore]\tpam_succeed_if.so quiet service in jit-sudo"
UNIX = "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so"


def test_stack_has_module():
    assert pamconf.stack_has_module(f"{UNIX}\n{SKIP}\n{OURS}\n")
    assert not pamconf.stack_has_module(f"{UNIX}\n# {OURS}\n")
    assert pamconf.stack_has_module("session optional /lib/x86_64-linux-gnu/security/pam_jit.so\n")
    assert not pamconf.stack_has_module("session optional pam_jit.so.bak\n")
    # the pam_python line of earlier versions is not the module (the upgrade replaces it)
    assert not pamconf.stack_has_module(
        "account required pam_python.so /usr/lib/jitaccess/pam_jit.py\n")


def test_root_skips_only_when_the_skip_is_right_before_the_module():
    assert pamconf.root_skips(f"{UNIX}\n{SKIP}\n{OURS}\n")
    assert pamconf.root_skips(f"{UNIX}\n")  # no module, nothing to skip
    assert not pamconf.root_skips(f"{UNIX}\n{OURS}\n")
    assert not pamconf.root_skips(f"{SKIP}\n{UNIX}\n{OURS}\n")
    assert pamconf.root_skips(f"{SKIP.replace('success=1', 'success=2')}\n{SERVICE}\n{OURS}\n")
    assert not pamconf.root_skips(f"{SKIP}\n{SERVICE}\n{OURS}\n")  # jumps short of it
    assert not pamconf.root_skips(f"{SKIP.replace('success=1', 'success=x')}\n{OURS}\n")


def test_the_shipped_profile_puts_the_skip_first():
    from pathlib import Path

    profile = (Path(__file__).resolve().parents[2] / "pam/pam-configs/jitaccess").read_text()
    account = profile.split("Account:\n", 1)[1].split("Session", 1)[0]
    lines = ["account\t" + line.strip() for line in account.splitlines() if line.strip()]
    assert pamconf.root_skips("\n".join(lines)) and pamconf.stack_has_module("\n".join(lines))
    assert "Default: yes" in profile and "Session-Interactive-Only: yes" in profile
    # sudo is not a login, and hostd's own service (jit-sudo) never loads the module,
    # in either stack
    for section in ("Account:", "Session:"):
        block = profile.split(section, 1)[1].split(":\n", 1)[0]
        assert "service in jit-sudo:sudo:sudo-i" in block


def test_preflight_names_what_is_missing(tmp_path):
    problems = pamconf.preflight(tmp_path)
    assert any("pam-configs/jitaccess" in p for p in problems)
    assert any("pam_jit.so is missing" in p for p in problems)
    module = tmp_path / "lib/x86_64-linux-gnu/security/pam_jit.so"
    module.parent.mkdir(parents=True)
    module.write_text("not an ELF object\n")
    os.chmod(module, 0o644)
    assert any("not a root-owned ELF file" in p for p in pamconf.preflight(tmp_path))
    module.write_bytes(b"\x7fELF" + bytes(60))
    if os.geteuid() == 0:  # owned by root: a usable module
        assert not any("pam_jit.so" in p for p in pamconf.preflight(tmp_path))
    os.chmod(module, 0o666)
    assert any("not a root-owned ELF file" in p for p in pamconf.preflight(tmp_path))


def test_sessions_table():
    rows = [{"id": "3", "user": "alice", "pid": 42, "tty": "tty1", "service": "login",
             "opened": 1_800_000_000, "closed": None, "grants": ["0123456789ab"]},
            {"id": None, "user": "b\x1bob", "pid": 7, "tty": "", "service": "",
             "opened": 1_800_000_000, "closed": 1_800_000_060, "grants": []}]
    text = pamconf.sessions_table(rows, True)
    head, first, second = text.splitlines()
    assert head.split() == ["SESSION", "USER", "PID", "TTY", "SERVICE", "OPENED", "(UTC)",
                            "CLOSED", "GRANTS"]
    assert first.split()[:5] == ["3", "alice", "42", "tty1", "login"]
    assert "0123456789ab" in first
    assert "\x1b" not in second and "b\\x1bob" in second
    assert pamconf.sessions_table([], False) == "no registered login sessions"
