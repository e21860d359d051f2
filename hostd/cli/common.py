"""What every `jit` subcommand shares: the usage error, one hostd call, one way to print
an answer (text or `--json`) and turn it into an exit code."""

from __future__ import annotations

import argparse
import json
import sys

from hostd.client import Client
from hostd.errors import EXIT_OK, JitError, exit_code_for
from hostd.events import escape
from hostd.paths import client_paths
from hostd.protocol import request


class UsageError(JitError):
    def __init__(self, message: str) -> None:
        super().__init__("usage", message)


def out(args: argparse.Namespace, answer: dict, text: str | None = None) -> int:
    """Print an answer as JSON or as text; return its exit code."""
    if getattr(args, "json", False):
        print(json.dumps(answer, sort_keys=True))
    elif answer.get("ok"):
        if text:
            print(text)
    else:
        print(f"jit: {answer.get('code')}: {escape(answer.get('message', ''))}", file=sys.stderr)
    return EXIT_OK if answer.get("ok") else exit_code_for(str(answer.get("code")))


def call(op: str, **fields: object) -> dict:
    answer = Client(client_paths().socket, timeout=30).call(request(op, **fields))
    if not answer.get("ok"):
        raise JitError(str(answer.get("code")), str(answer.get("message", "")))
    return answer
