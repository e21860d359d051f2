"""jit setup sudo against a real hostd in a sandbox root (JIT_ROOT: its etc/sudo.conf)."""

from __future__ import annotations

from sandbox import POLICY

DEBIAN_SUDO_CONF = "# Default /etc/sudo.conf file\n#Plugin sudoers_policy sudoers.so\n" \
                   "Set disable_coredump false\n"
STANDING = '\n[[standing]]\nmembers = ["root"]\nsudo = [ { runas = "root", commands = ["ALL"] } ]\n'


def test_enable_refuses_without_a_way_to_root_then_disable_restores(sandbox):
    conf = sandbox.root / "etc/sudo.conf"
    conf.write_text(DEBIAN_SUDO_CONF)
    rc, out = sandbox.jit_json("setup", "sudo", "--enable")
    assert (rc, out["code"]) == (1, "denied") and "no [[standing]] rule" in out["message"]
    assert conf.read_text() == DEBIAN_SUDO_CONF, "a refusal changes nothing"
    (sandbox.root / "etc/jit/jit.toml").write_text(POLICY + STANDING)
    rc, out = sandbox.jit_json("setup", "sudo", "--enable")
    assert rc == 0 and out["changed"] and out["ways_to_root"] == ["[[standing]] for root"]
    assert "Plugin jit_policy /usr/libexec/jitaccess/jit_sudo.so\n" in conf.read_text()
    assert sandbox.jit("setup", "sudo", "--disable").returncode == 0
    assert conf.read_text() == DEBIAN_SUDO_CONF, "byte for byte"


def test_enable_needs_hostd(sandbox):
    (sandbox.root / "etc/jit/jit.toml").write_text(POLICY + STANDING)
    sandbox.stop()
    rc, out = sandbox.jit_json("setup", "sudo", "--enable")
    assert (rc, out["code"]) == (3, "unreachable")
    assert not (sandbox.root / "etc/sudo.conf").exists()


def test_only_root_switches(sandbox):
    rc, out = sandbox.jit_json("setup", "sudo", "--disable", user="alice")
    assert (rc, out["code"]) == (1, "permission_denied")
