"""`jit mask test [FILE] [--explain]`: mask standard input or a file with this host's
rules (the built-ins and jit.toml's [masking]), as a recorded session's output would be,
so that an administrator can try rules before a session depends on them.

Exit status: 1 when something was masked, 0 when nothing was, 2 on a bad rule (in
jit.toml or given with --rule) or an unreadable file."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib

from hostd.errors import EXIT_OK, EXIT_REFUSED, EXIT_USAGE, ConfigError, JitError
from hostd.events import escape
from hostd.paths import client_paths

MAX_INPUT = 64 * 1024 * 1024


def add_arguments(sub: argparse._SubParsersAction, command) -> None:
    """Wire `jit mask test` into jit's parser (`command` is cli.build_parser's)."""
    mask = sub.add_parser("mask", help="try the masking rules",
                          description="try the masking rules").add_subparsers(
        dest="mask_command", required=True, metavar="COMMAND")
    c = command("test", cmd_mask_test, "mask standard input or FILE with this host's rules; "
                "exit 1 when something was masked, 0 when nothing, 2 on a bad rule", mask)
    c.add_argument("file", nargs="?", metavar="FILE",
                   help="the text to mask (default: standard input)")
    c.add_argument("--explain", action="store_true",
                   help="also say which rule matched where (on standard error)")
    c.add_argument("--rule", action="append", default=[], metavar="NAME=REGEX",
                   help="try an extra rule as [masking] rules would add it")
    c.add_argument("--field", action="append", default=[], metavar="NAME",
                   help="try an extra field name as [masking] fields would add it")


def _host_masking(args: argparse.Namespace) -> dict:
    """ScreenMasker's arguments: the host's [masking] plus --rule and --field."""
    from hostd.policy import config as config_mod

    path = client_paths().config
    try:
        data = tomllib.loads(path.read_text()) if path.exists() else {}
        cfg = config_mod.Config(**config_mod.parse_policy(path, data))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    except OSError as exc:
        raise JitError("bad_request", f"cannot read {path}: {exc.strerror}") from None
    rules = [(name, rx.pattern) for name, rx in cfg.masking]
    for spec in args.rule:
        name, sep, regex = spec.partition("=")
        if not sep or not name:
            raise JitError("bad_request", f"--rule {spec[:64]!r}: write NAME=REGEX")
        rules.append((name, regex))
    return {"rules": rules, "fields": [*cfg.masking_fields, *args.field],
            "optional": list(cfg.masking_optional)}


def _read(args: argparse.Namespace) -> bytes:
    try:
        if args.file and args.file != "-":
            with open(args.file, "rb") as fh:
                return fh.read(MAX_INPUT)
        return sys.stdin.buffer.read(MAX_INPUT)
    except OSError as exc:
        raise JitError("bad_request", f"cannot read {args.file}: {exc.strerror}") from None


def explain(data: bytes, kwargs: dict) -> list[dict]:
    """Where each rule masked: rule, line, first and last column (1-based, bytes)."""
    from hostd.masking.screen import ScreenMasker

    everything = ScreenMasker(**kwargs)
    found = []
    for name in everything.names:
        m = ScreenMasker(**kwargs, only=[name])
        out = m.feed(data) + m.flush()
        line, col, start = 1, 0, 0
        for a, b in zip(data, out, strict=True):
            if a == 0x0A:
                if start:
                    found.append({"rule": name, "line": line, "from": start, "to": col})
                line, col, start = line + 1, 0, 0
                continue
            col += 1
            if a != b and not start:
                start = col
            elif a == b and start:
                found.append({"rule": name, "line": line, "from": start, "to": col - 1})
                start = 0
        if start:
            found.append({"rule": name, "line": line, "from": start, "to": col})
    return found


def cmd_mask_test(args: argparse.Namespace) -> int:
    from hostd.masking.masker import MaskingRuleError
    from hostd.masking.screen import ScreenMasker

    kwargs = _host_masking(args)
    try:
        masker = ScreenMasker(**kwargs)
    except MaskingRuleError as exc:
        print(f"jit: bad_rule: {escape(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    data = _read(args)
    out = masker.feed(data) + masker.flush()
    counts = {n: c for n, c in zip(masker.names, masker.counts, strict=True) if c}
    matches = explain(data, kwargs) if args.explain else []
    if args.json:
        from hostd.masking.rules import RULES_VERSION

        print(json.dumps({"ok": True, "code": "ok", "masked": out.decode("utf-8", "replace"),
                          "counts": counts, "matches": matches,
                          "rules_version": RULES_VERSION}, sort_keys=True))
    else:
        sys.stdout.buffer.write(out)
        sys.stdout.flush()
        for m in matches:
            print(f"jit: {m['rule']}: line {m['line']}, columns {m['from']}-{m['to']}",
                  file=sys.stderr)
    return EXIT_REFUSED if counts or out != data else EXIT_OK
