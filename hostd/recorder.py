"""`jit-record`: the session recorder (DESIGN.md §9). Built by a later issue; this
entry point exists so the packaging and the console scripts are stable from the start."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("jit-record: session recording is not available in this version", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
