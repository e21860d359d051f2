"""An admin's first hour on a booted Debian 12 with the .deb installed (issue 20): the
key directory the README names, `jit reload` on a socket-activated daemon, group adm
reading recordings' directory, bash completion, `jit --version`."""

from __future__ import annotations

from jithost import Host


def test_the_issuer_key_directory_ships_root_owned(host: Host) -> None:
    out = host.box.run(["stat", "-c", "%U:%G %a", "/etc/jit/keys"]).stdout.split()
    assert out == ["root:root", "755"]


def test_jit_reload_reloads_and_a_broken_policy_is_refused_with_exit_2(host: Host) -> None:
    box = host.box
    r = box.run(["jit", "reload"], check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reloaded; hostd now serves roles" in r.stdout
    assert box.run(["systemctl", "is-active", "jit-hostd.service"]).stdout.strip() == "active"
    saved = box.run(["cat", "/etc/jit/jit.toml"]).stdout
    try:
        box.run(["sh", "-c", "printf '[roles.x]\\ngroups = 3\\n' >> /etc/jit/jit.toml"])
        r = box.run(["jit", "reload"], check=False)
        assert r.returncode == 2 and r.stderr.startswith("jit: config_error: ")
        assert "not reloaded" in r.stderr
    finally:
        box.write("/etc/jit/jit.toml", saved, mode=0o644)
    assert box.run(["jit", "reload"], check=False).returncode == 0


def test_recordings_directory_is_readable_by_adm(host: Host) -> None:
    out = host.box.run(["stat", "-c", "%U:%G %a", "/var/log/jit", "/var/log/jit/sessions"])
    assert out.stdout.split() == ["root:root", "755", "root:adm", "2750"]


def test_bash_completion_is_shipped_and_completes(host: Host) -> None:
    code = ("source /usr/share/bash-completion/completions/jit; COMP_WORDS=(jit audit "
            "--format ''); COMP_CWORD=3; _jit; echo ${COMPREPLY[*]}")
    assert host.box.run(["bash", "-c", code]).stdout.split() == ["text", "json", "ocsf", "ecs"]
    code = ("source /usr/share/bash-completion/completions/jit; COMP_WORDS=(jit request ''); "
            "COMP_CWORD=2; _jit; echo ${COMPREPLY[*]}")
    assert "docker" in host.box.run(["bash", "-c", code]).stdout.split()


def test_jit_version(host: Host) -> None:
    assert host.box.run(["jit", "--version"]).stdout.startswith("jit 0.")
