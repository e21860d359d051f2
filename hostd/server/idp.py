"""The identity-provider ops: idp.activate, idp.roles (issue 21; CONTRACTS §B).

Both run in the ordered worker (activation changes state; both read the key cache,
which the worker's one thread keeps parsed). An `unknown_key` answer means the
provider may have rotated its keys: the family asks for one refresh of that issuer's
cache (IdpRefresh: at most once a minute) before it answers, and the caller tries
again once the fetcher has run.
"""

from __future__ import annotations

import logging

from hostd.core.idp import IdpActivations
from hostd.errors import JitError
from hostd.server.ops import Caller
from hostd.server.worker import Worker
from hostd.state.idpcache import IdpRefresh

log = logging.getLogger("jit-hostd")


class IdpOps:
    """idp.activate, idp.roles."""

    def __init__(self, activations: IdpActivations, worker: Worker,
                 refresh: IdpRefresh) -> None:
        self.activations, self.worker, self.refresh = activations, worker, refresh

    async def op_idp_activate(self, args: dict, caller: Caller) -> dict:
        try:
            return await self.worker.run(self.activations.activate, args, caller.uid)
        except JitError as exc:
            await self._on_refusal(exc, args)
            raise

    async def op_idp_roles(self, args: dict, caller: Caller) -> dict:
        try:
            return await self.worker.run(self.activations.roles, args["token"],
                                         args.get("issuer"), caller.uid)
        except JitError as exc:
            await self._on_refusal(exc, args)
            raise

    async def _on_refusal(self, exc: JitError, args: dict) -> None:
        if exc.code != "unknown_key":
            return
        name = self._issuer_of(args)
        if name is None:
            return
        try:
            if await self.refresh.request(name):
                exc.message += f"; a refresh of {name}'s keys was started, try again shortly"
        except Exception as err:
            log.warning("could not start the key refresh of %s: %s", name, err)

    def _issuer_of(self, args: dict) -> str | None:
        """The issuer the token was checked against (named, or found by its iss)."""
        from hostd.policy.idptoken import decode_unverified, pick_issuer

        try:
            _token, _header, claims = decode_unverified(args["token"])
            return pick_issuer(claims, self.activations.core.config.oidc,
                               args.get("issuer")).name
        except JitError:
            return None
