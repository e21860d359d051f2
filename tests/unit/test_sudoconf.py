"""jit setup sudo: the sudo.conf switch, pure text and real files."""

from __future__ import annotations

from hostd.cli import setup_sudo as sudoconf

DEBIAN = """#
# Default /etc/sudo.conf file
#
# Sudo plugins:
#   Plugin plugin_name plugin_path plugin_options ...
#Plugin sudoers_policy sudoers.so
#Plugin sudoers_io sudoers.so
Set disable_coredump false
"""


def test_enable_adds_the_line_once_and_disable_restores_byte_for_byte(tmp_path):
    conf = tmp_path / "sudo.conf"
    conf.write_text(DEBIAN)
    assert sudoconf.enable(conf) is True
    text = conf.read_text()
    assert text.splitlines()[:2] == [sudoconf.MARK, sudoconf.PLUGIN_LINE]
    assert sudoconf.enabled(text) and text.count(sudoconf.PLUGIN_LINE) == 1
    assert sudoconf.enable(conf) is False and conf.read_text() == text
    assert sudoconf.disable(conf) is True
    assert conf.read_text() == DEBIAN
    assert not sudoconf.backup_path(conf).exists()
    assert sudoconf.disable(conf) is False


def test_an_active_sudoers_policy_is_commented_out_and_put_back():
    text = "Plugin sudoers_policy sudoers.so\nPlugin sudoers_io sudoers.so\n"
    on = sudoconf.enable_text(text)
    assert "\n" + sudoconf.DISABLED + "Plugin sudoers_policy sudoers.so\n" in on
    assert "\nPlugin sudoers_io sudoers.so\n" in on, "I/O plugins stay"
    assert sudoconf.disable_text(on) == text


def test_later_edits_survive_disable(tmp_path):
    conf = tmp_path / "sudo.conf"
    conf.write_text(DEBIAN)
    sudoconf.enable(conf)
    conf.write_text(conf.read_text() + "Set group_source dynamic\n")
    sudoconf.disable(conf)
    assert conf.read_text() == DEBIAN + "Set group_source dynamic\n"


def test_missing_file_is_created_and_removed_cleanly(tmp_path):
    conf = tmp_path / "sudo.conf"
    assert sudoconf.enable(conf)
    assert sudoconf.enabled(conf.read_text())
    assert sudoconf.disable(conf)
    assert conf.read_text() == ""


def test_commented_plugin_line_is_not_taken_for_enabled():
    assert not sudoconf.enabled("#" + sudoconf.PLUGIN_LINE + "\n")
