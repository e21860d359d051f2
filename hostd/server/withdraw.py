"""`access.cancel` (`jit requests --cancel ID`): a requester withdraws their own pending
request. A function of its own so the op's hook in the Server class stays one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hostd.server.connections import Server


async def op_access_cancel(server: Server, args: dict, uid: int) -> dict:
    req = await server.run(server.requests.withdraw, uid, args["id"])
    return {"ok": True, "code": "ok", "message": f"request {req['id']} cancelled",
            "request": req}
