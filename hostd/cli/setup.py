"""`jit setup sudo|pam --enable|--disable`: the parser (each part its own help, so
`jit setup sudo --help` says what the switch does to /etc/sudo.conf) and the command.
The file work is setup_sudo.py's and setup_pam.py's."""

from __future__ import annotations

import argparse
import os

from hostd.cli.common import call, out
from hostd.errors import JitError
from hostd.events import escape
from hostd.paths import client_paths
from hostd.policy import config as config_mod


def cmd_setup(args: argparse.Namespace) -> int:
    """Switch sudo's policy to jit_sudo.so and back; never done by installing."""
    from hostd.cli import setup_sudo as sudoconf

    if args.part == "pam":  # pam-auth-update's jitaccess profile (hostd/cli/setup_pam.py)
        from hostd.cli import setup_pam as pamconf

        return pamconf.setup(args, out, client_paths().root)
    if os.geteuid() != 0:
        raise JitError("permission_denied", "jit setup changes /etc/sudo.conf: run it as root")
    conf = client_paths().sudo_conf
    if args.disable:
        changed = sudoconf.disable(conf)
        return out(args, {"ok": True, "code": "ok", "message": "disabled", "changed": changed},
                    f"sudo's policy is sudoers again ({conf})" if changed
                    else f"jit_sudo.so was not enabled in {conf}")
    # hostd must answer; held grants only (a scheduled one gives nobody root yet)
    grants = call("grant.list", all=True, pending=False)["grants"]
    cfg = config_mod.load(client_paths())
    ways = sudoconf.ways_to_root(cfg, grants)
    lose = sudoconf.uncovered(cfg, sudoconf.sudoers_admins())
    problems = []
    if not ways:
        problems.append("no [[standing]] rule or active grant lets anyone run commands as "
                        "root through jit: nobody could administer this host with sudo")
    if lose:
        problems.append("these users can run anything with sudo today and no [[standing]] "
                        "rule covers them: " + ", ".join(escape(u) for u in lose))
    if problems and not args.force:
        raise JitError("denied", "refusing to enable jit_sudo.so: " + "; ".join(problems)
                       + " (--force overrides)")
    changed = sudoconf.enable(conf)
    return out(args, {"ok": True, "code": "ok", "message": "enabled", "changed": changed,
                       "ways_to_root": ways, "losing_sudo": lose},
                f"sudo's policy is now jit_sudo.so ({conf}; backup "
                f"{sudoconf.backup_path(conf).name}); `jit setup sudo --disable` restores it"
                if changed else f"jit_sudo.so was already enabled in {conf}")


def add_arguments(command, sub) -> None:
    """`jit setup sudo|pam --enable|--disable`: each part its own help."""
    parts = sub.add_parser(
        "setup", help="switch the sudo plugin or pam_jit on or off (root)",
        description="switch the sudo plugin or pam_jit on or off (root); "
                    "`jit setup sudo --help` and `jit setup pam --help` say what each does"
    ).add_subparsers(dest="part", required=True, metavar="PART")
    c = command("sudo", cmd_setup, "make jit_sudo.so sudo's policy, or sudoers again", parts)
    switch = c.add_mutually_exclusive_group(required=True)
    switch.add_argument("--enable", action="store_true",
                        help="put jit_sudo.so's Plugin line in /etc/sudo.conf and comment out "
                             "any other policy plugin (a backup of the file is kept); refused "
                             "if no [[standing]] rule or grant lets anyone reach root, or if "
                             "a user who may sudo today would lose it")
    switch.add_argument("--disable", action="store_true",
                        help="restore /etc/sudo.conf from the backup (or, if it was edited "
                             "since, remove only jitaccess's lines): sudoers decides again")
    c.add_argument("--force", action="store_true",
                   help="enable despite the lockout guard above")
    c = command("pam", cmd_setup, "switch pam_jit (the jitaccess pam-auth-update profile)",
                parts)
    switch = c.add_mutually_exclusive_group(required=True)
    switch.add_argument("--enable", action="store_true",
                        help="pam-auth-update --enable jitaccess: pam_jit gates the users of "
                             "[login] require_grant and registers login sessions; refused if "
                             "the module could not run")
    switch.add_argument("--disable", action="store_true",
                        help="pam-auth-update --disable jitaccess: /etc/pam.d as it was "
                             "without the profile (the choice sticks across upgrades)")
