"""`jit reload`: check the policy, have a running hostd re-read it, say what happened.

`systemctl reload jit-hostd` fails while hostd is idle (it is socket-activated) and,
like SIGHUP, cannot say that a broken policy was refused. This command checks the files
as check-config does, then asks hostd (op `config.reload`) and prints hostd's own answer:
exit 0 when the policy is in force (or hostd is not running: it reads it when it starts),
2 when it was refused.
"""

from __future__ import annotations

import argparse
import os

from hostd.cli.common import call, out
from hostd.errors import JitError
from hostd.events import escape
from hostd.paths import client_paths
from hostd.policy import config as config_mod

HELP = "check the policy and have hostd re-read it now (root)"


def cmd_reload(args: argparse.Namespace) -> int:

    if os.geteuid() != 0:
        raise JitError("permission_denied", "jit reload makes hostd re-read its policy: "
                                            "run it as root")
    paths = client_paths()
    try:
        config_mod.load(paths)
    except JitError as exc:
        raise JitError("config_error", f"{exc.message} (not reloaded: hostd keeps the "
                                       "policy it has)") from None
    try:
        answer = call("config.reload")
    except JitError as exc:
        if exc.code != "unreachable":
            raise
        return out(args, {"ok": True, "code": "ok", "reloaded": False,
                           "message": "policy ok; hostd is not running"},
                    f"{paths.config}: ok; hostd is not running (it reads this policy when "
                    "it starts: at first use or at boot)")
    answer["reloaded"] = True
    return out(args, answer, f"{paths.config}: reloaded; hostd now serves roles "
                f"{', '.join(escape(r) for r in answer['roles']) or '(none)'}")


