"""Commands and options added to `jit`'s parser outside build_parser (issue 20): `jit
reload`, `jit requests --cancel`, `jit --version`, the help's epilogs. main() calls
`extend` once, so the parser's own layout (hostd/cli/main.py) stays one place to read.
"""

from __future__ import annotations

import argparse

from hostd import __version__


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _add_fetcher_commands(sub: argparse._SubParsersAction) -> None:
    """`jit login`, `jit idp refresh|status`, `jit revocations fetch` (issue 21)."""
    from hostd.cli import idp as cli_idp
    from hostd.cli import login as cli_login

    def command(name, func, help_text, parent=sub):
        c = parent.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--json", action="store_true", help="print one JSON object")
        c.set_defaults(func=func)
        return c

    cli_login.add_arguments(command)
    cli_idp.add_arguments(sub, command)


def extend(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the commands and options of hostd/cli/reload.py and requests.py."""
    from hostd.cli import helptext
    from hostd.cli import idp_token as cli_idp_token
    from hostd.cli import reload as cli_reload
    from hostd.cli import requests as cli_requests
    from hostd.cli import revocations as cli_revocations

    parser.add_argument("--version", action="version", version=f"jit {__version__}")
    sub = _subparsers(parser)
    c = sub.add_parser("reload", help=cli_reload.HELP, description=cli_reload.HELP)
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cli_reload.cmd_reload)
    cli_revocations.add_arguments(sub)  # jit revocations build|reload|status
    _add_fetcher_commands(sub)
    requests = sub.choices["requests"]
    requests.add_argument("--cancel", metavar="ID",
                          help="withdraw your own pending request ID")
    requests.set_defaults(func=cli_requests.wrap(requests.get_default("func")))
    cli_idp_token.add_arguments(sub)  # activate --id-token, idp test
    helptext.add_epilogs(parser)  # last: DURATION, TIME, SEL explained where used
    return parser
