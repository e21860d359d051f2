"""Installing the package: hostd is socket-activated, not started by apt."""

from __future__ import annotations

from jithost import Host, grants


def test_apt_install_leaves_hostd_to_socket_activation(host: Host) -> None:
    assert host.state_after_install == "inactive"
    box = host.box
    assert box.run(["systemctl", "is-active", "jit-hostd.socket"]).stdout.strip() == "active"


def test_first_jit_call_starts_hostd_through_the_socket(host: Host) -> None:
    box = host.box
    # Order-independent: stop the service (the socket stays listening), then call.
    box.run(["systemctl", "stop", "jit-hostd.service"])
    before = box.run(["systemctl", "is-active", "jit-hostd.service"], check=False)
    assert before.stdout.strip() == "inactive"
    assert grants(box, user="alice") == []
    after = box.run(["systemctl", "is-active", "jit-hostd.service"], check=False)
    assert after.stdout.strip() == "active"


def test_reconcile_unit_ran_at_boot_before_logins(host: Host) -> None:
    box = host.box
    enabled = box.run(["systemctl", "is-enabled", "jit-reconcile.service"], check=False)
    assert enabled.stdout.strip() == "enabled"
    before = box.run(["systemctl", "show", "-p", "Before", "--value",
                      "jit-reconcile.service"]).stdout.split()
    assert "systemd-user-sessions.service" in before


def test_check_config_accepts_the_scenario_policy(host: Host) -> None:
    proc = host.box.run(["jit", "check-config"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
