"""`jit-record`'s command line: the options every part of the recorder reads.

Its own module so that main (which picks the proxy) and the proxies and sinks (which
read the options) import it, never each other.
"""

from __future__ import annotations

SOCKET = "/run/jit/hostd.sock"
USAGE = ("usage: jit-record [--token T] [--uid U --gid G --groups G,...] "
         "[--record-failure terminate|continue] [--command PATH] [--file PATH] "
         "[--no-mask] [--socket PATH] -- COMMAND [ARG...]")


class Usage(Exception):
    pass


class Options:
    """Plain attributes, not a dataclass: dataclasses cost start-up on every sudo."""

    def __init__(self) -> None:
        self.token = ""
        self.socket = SOCKET
        self.uid: int | None = None
        self.gid: int | None = None
        self.groups: list[int] | None = None
        self.record_failure = "terminate"
        self.command = ""
        self.file = ""
        self.mask = True
        self.argv: list[str] = []


def parse_args(argv: list[str]) -> Options:
    """By hand, not argparse: the recorder starts on every recorded sudo."""
    opts = Options()
    i = 0
    valued = {"--token", "--socket", "--uid", "--gid", "--groups", "--record-failure",
              "--command", "--file"}
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            opts.argv = argv[i + 1:]
            break
        if arg == "--no-mask":
            opts.mask = False
            i += 1
            continue
        if arg not in valued or i + 1 >= len(argv):
            raise Usage(f"unknown option {arg!r}" if arg not in valued else f"{arg} needs a value")
        value = argv[i + 1]
        i += 2
        try:
            if arg == "--uid":
                opts.uid = int(value)
            elif arg == "--gid":
                opts.gid = int(value)
            elif arg == "--groups":
                opts.groups = [int(g) for g in value.split(",") if g]
            else:
                setattr(opts, arg[2:].replace("-", "_"), value)
        except ValueError:
            raise Usage(f"{arg} must be a number") from None
    if not opts.argv:
        raise Usage("no command given")
    if opts.record_failure not in ("terminate", "continue"):
        raise Usage("--record-failure is terminate or continue")
    if bool(opts.token) == bool(opts.file):
        raise Usage("give --token (recorded by hostd) or --file (a local recording)")
    if opts.token and not opts.mask:  # hostd decides what is masked
        raise Usage("--no-mask is for local recordings only")
    return opts
