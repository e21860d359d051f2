"""`jit requests --cancel ID`: a requester withdraws their own pending request (op
`access.cancel`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from hostd.cli.common import call, out


def wrap(listing: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`jit requests` lists; with --cancel it withdraws instead."""

    def cmd_requests(args: argparse.Namespace) -> int:
        if getattr(args, "cancel", None):
            return cmd_cancel(args)
        return listing(args)

    return cmd_requests


def cmd_cancel(args: argparse.Namespace) -> int:

    answer = call("access.cancel", id=args.cancel)
    return out(args, answer, f"request {args.cancel} withdrawn")
