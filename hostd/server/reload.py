"""Re-reading the policy: SIGHUP and the `config.reload` op (`jit reload`) share one path.

SIGHUP cannot answer anyone, so an admin never learnt that a broken policy was refused;
the op runs the same reload and answers with the outcome (DESIGN.md §13 "An admin's
first hour").
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.paths import Paths
from hostd.policy import config as config_mod
from hostd.server.ops import Caller
from hostd.server.worker import Worker

log = logging.getLogger("jit-hostd")


def write_login_gate(paths: Paths, cfg: config_mod.Config) -> None:
    """The [login] rules pam_jit applies when hostd cannot answer (hostd/policy/logins.py),
    written whenever a policy loads; a broken policy keeps the last good file."""
    from hostd.policy.logins import write_gate

    try:
        write_gate(paths.login_gate, cfg)
    except OSError as exc:
        log.warning("could not write %s: %s", paths.login_gate, exc)


class ReloadOps:
    """config.reload, and the SIGHUP reload that shares its path."""

    def __init__(self, core: Core, worker: Worker, paths: Paths,
                 set_config_error: Callable[[str], None]) -> None:
        """`set_config_error`: the server's broken-policy state, cleared when a policy
        loads."""
        self.core, self.worker, self.paths = core, worker, paths
        self.set_config_error = set_config_error

    async def reload(self) -> str:
        """Re-read the policy in the worker; "" when it took, else why it was refused
        (the previous policy stays, and a config_error event says so)."""
        try:
            await self.worker.run(self._apply)
        except JitError as exc:
            self.core.events.emit("config_error", f"reload refused, keeping the previous "
                                  f"configuration: {exc.message}", reason=exc.message)
            return exc.message
        return ""

    def _apply(self) -> None:
        """In the worker: swap the policy, then end grants the new one no longer supports
        (a removed role or issuer), as revocations with reason "policy changed"."""
        self.core.config = config_mod.load(self.paths)
        self.set_config_error("")
        write_login_gate(self.paths, self.core.config)
        self.core.end_unsupported()
        if self.core.revocations is not None:  # an issuer's [revocation] may have changed
            self.core.revocations.reload()

    async def op_config_reload(self, args: dict, caller: Caller) -> dict:
        """`config.reload` (root): reload now and say whether the new policy took."""
        error = await self.reload()
        if error:
            raise JitError("config_error", f"the new policy was refused; hostd keeps the "
                                           f"previous one: {error}")
        cfg = self.core.config
        return {"ok": True, "code": "ok", "message": "policy reloaded",
                "roles": sorted(cfg.roles), "issuers": sorted({*cfg.issuers, *cfg.oidc})}
