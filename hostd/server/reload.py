"""Re-reading the policy: SIGHUP and the `config.reload` op (`jit reload`) share one path.

SIGHUP cannot answer anyone, so an admin never learnt that a broken policy was refused;
the op runs the same reload and answers with the outcome (DESIGN.md §13 "An admin's
first hour").
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hostd.errors import JitError
from hostd.policy import config as config_mod

if TYPE_CHECKING:
    from hostd.paths import Paths
    from hostd.server.connections import Server

log = logging.getLogger("jit-hostd")


async def reload_policy(paths: Paths, server: Server) -> str:
    """Re-read the policy in the worker; "" when it took, else why it was refused (the
    previous policy stays, and a config_error event says so)."""
    try:
        await server.run(apply_reload, paths, server)
    except JitError as exc:
        server.core.events.emit("config_error", f"reload refused, keeping the previous "
                                f"configuration: {exc.message}", reason=exc.message)
        return exc.message
    return ""


def apply_reload(paths: Paths, server: Server) -> None:
    """In the worker: swap the policy, then end grants the new one no longer supports
    (a removed role or issuer), as revocations with reason "policy changed"."""
    from hostd.server.service import write_login_gate

    server.core.config = config_mod.load(paths)
    server.config_error = ""
    write_login_gate(paths, server.core.config)
    server.core.end_unsupported()


async def op_config_reload(server: Server, args: dict, uid: int) -> dict:
    """`config.reload` (root): reload now and say whether the new policy took."""
    if server.paths is None:
        raise JitError("internal", "hostd does not know where its policy is")
    error = await reload_policy(server.paths, server)
    if error:
        raise JitError("config_error", f"the new policy was refused; hostd keeps the "
                                       f"previous one: {error}")
    cfg = server.core.config
    return {"ok": True, "code": "ok", "message": "policy reloaded",
            "roles": sorted(cfg.roles), "issuers": sorted(cfg.issuers)}
