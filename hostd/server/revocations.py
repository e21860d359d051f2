"""`revocations.reload` and `revocations.status` (docs/REVOCATIONS.md).

The reload runs in the ordered worker like every change: reading two small files and
verifying one signature per issuer, then ending what the lists revoke. The path unit
jit-revocations.path runs `jit revocations reload` when a list file is written.
"""

from __future__ import annotations

from hostd.core.lifecycle import Core
from hostd.errors import JitError
from hostd.server.ops import Caller
from hostd.server.worker import Worker


class RevocationOps:
    """The revocation lists' handler family."""

    def __init__(self, core: Core, worker: Worker) -> None:
        self.core, self.worker = core, worker

    def _lists(self):
        if self.core.revocations is None:
            raise JitError("config_error", "revocation lists are not kept by this hostd")
        return self.core.revocations

    async def op_revocations_reload(self, args: dict, caller: Caller) -> dict:
        """Re-read every issuer's list; answer per issuer: seq in force, error, ended."""
        issuers = await self.worker.run(self._lists().reload)
        ended = sum(len(v["ended"]) for v in issuers.values())
        return {"ok": True, "code": "ok", "issuers": issuers,
                "message": f"{len(issuers)} issuers with revocation lists, "
                           f"{ended} grants ended"}

    async def op_revocations_status(self, args: dict, caller: Caller) -> dict:
        """What `jit revocations status` prints (counts only: no entry is shown)."""
        return {"ok": True, "code": "ok",
                "issuers": await self.worker.run(self._lists().status)}
