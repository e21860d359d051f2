"""jit setup pam's checks of the stacks pam-auth-update writes, and jit grants --sessions."""

from __future__ import annotations

from hostd.cli import setup_pam as pamconf

SKIP = "account\t[success=1 default=ignore]\tpam_succeed_if.so quiet uid eq 0"
OURS = "account\trequired\tpam_python.so /usr/lib/jitaccess/pam_jit.py"
SERVICE = "account\t[success=1 default=ignore]\tpam_succeed_if.so quiet service in jit-sudo"
UNIX = "account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so"


def test_stack_has_module():
    assert pamconf.stack_has_module(f"{UNIX}\n{SKIP}\n{OURS}\n")
    assert not pamconf.stack_has_module(f"{UNIX}\n# {OURS}\n")
    assert not pamconf.stack_has_module("session optional pam_python.so /other.py\n")


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
    # hostd's own PAM service never loads pam_python.so (it would run in hostd's
    # interpreter without the GIL), in either stack
    for section in ("Account:", "Session:"):
        block = profile.split(section, 1)[1].split(":\n", 1)[0]
        assert "service in jit-sudo:sudo:sudo-i" in block


def test_preflight_names_what_is_missing(tmp_path):
    problems = pamconf.preflight(tmp_path)
    assert any("pam-configs/jitaccess" in p for p in problems)
    assert any("libpam-python" in p for p in problems)
    assert any("pam_jit.py is missing" in p for p in problems)
    module = tmp_path / "usr/lib/jitaccess/pam_jit.py"
    module.parent.mkdir(parents=True)
    module.write_text("def broken(:\n")
    assert any("does not compile" in p for p in pamconf.preflight(tmp_path))


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
