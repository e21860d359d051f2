"""`jit login ROLE [--for D] [--reason R] [--issuer NAME]` and `jit login --roles`: log in
at the identity provider by the device flow (RFC 8628, hostd/fetch/device.py) and hand
the ID token to hostd (op idp.activate, or idp.roles). Works over SSH and on consoles:
the person opens the verification URI anywhere (or scans the QR code)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from hostd.cli.common import UsageError, call, out
from hostd.events import escape
from hostd.paths import client_paths
from hostd.policy.durations import format_duration, parse_duration

HELP = "log in at your identity provider (device code) and activate ROLE with its token"

def _qr(text: str) -> str | None:
    """The QR code as text when python3-qrcode is there and it fits the terminal."""
    try:
        import qrcode
    except ImportError:
        return None
    qr = qrcode.QRCode(border=1)
    qr.add_data(text)
    qr.make(fit=True)
    size = qr.modules_count + 2
    cols, rows = shutil.get_terminal_size((0, 0))
    if size > cols or (size + 1) // 2 > rows - 6:
        return None
    from io import StringIO

    buf = StringIO()
    qr.print_ascii(out=buf, invert=True)
    return buf.getvalue()

def _show_device(args: argparse.Namespace, device: dict) -> None:
    shown = {k: device.get(k) for k in ("verification_uri", "verification_uri_complete",
                                        "user_code", "expires_in", "interval")}
    if args.json:
        print(json.dumps(shown, sort_keys=True), flush=True)
        return
    complete = device.get("verification_uri_complete")
    lines = [f"To log in, open {escape(device['verification_uri'])}",
             f"and enter the code: {escape(device['user_code'])}"]
    if isinstance(complete, str):
        lines.append(f"(or open {escape(complete)})")
        if sys.stdout.isatty() and "utf" in (sys.stdout.encoding or "").lower():
            qr = _qr(complete)
            if qr:
                lines.append(qr.rstrip("\n"))
    lines.append("Waiting for the login to be approved (Ctrl-C cancels)...")
    print("\n".join(lines), flush=True)

def _token(args: argparse.Namespace) -> tuple[str, str]:
    """(issuer name, ID token) from a device login."""
    from hostd.fetch import device as flow

    provider = flow.choose(client_paths(), args.issuer)
    started = flow.start(provider)
    _show_device(args, started)
    answer = flow.poll(provider, started)
    return provider.name, answer["id_token"]

def _activated(answer: dict) -> str:
    """What `jit activate` prints: the grant, or the request a role with approvals
    turned the login into."""
    if "grant" not in answer:
        r = answer.get("request") or {}
        return (f"request {r.get('id')} {r.get('state')}: role {r.get('role')} needs "
                "approval (jit requests shows it)")
    g = answer["grant"]
    left = format_duration(g["exp"] - time.time())
    return (f"grant {g['id']} active: role {g['role']}, groups "
            f"{', '.join(g['groups']) or '-'}, until {g['not_after']} ({left} left)")

def cmd_login(args: argparse.Namespace) -> int:
    if args.roles == bool(args.role):
        raise UsageError("name a ROLE to activate, or ask --roles (not both)")
    fields: dict[str, object] = {}
    if args.for_ is not None:
        try:
            fields["duration"] = parse_duration(args.for_)
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
    if args.reason is not None:
        fields["reason"] = args.reason
    try:
        issuer, token = _token(args)
    except KeyboardInterrupt:
        print("jit: login cancelled", file=sys.stderr)
        return 130
    if args.roles:
        answer = call("idp.roles", token=token, issuer=issuer)
        return out(args, answer, f"{escape(answer.get('user', ''))} at {issuer}: roles "
                   f"{', '.join(escape(r) for r in answer['roles']) or '(none)'} (matched "
                   f"{', '.join(escape(str(m)) for m in answer.get('matched', [])) or '-'})")
    answer = call("idp.activate", token=token, role=args.role, issuer=issuer, **fields)
    return out(args, answer, _activated(answer))

def add_arguments(command) -> None:
    c = command("login", cmd_login, HELP)
    c.add_argument("role", nargs="?", metavar="ROLE", help="a role of this host's jit.toml")
    c.add_argument("--roles", action="store_true",
                   help="only show which roles your identity-provider login maps to here")
    c.add_argument("--for", dest="for_", metavar="DURATION",
                   help="how long (default and maximum: the role's max_ttl)")
    c.add_argument("--reason", metavar="TEXT", help="why; logged with the grant")
    c.add_argument("--issuer", metavar="NAME",
                   help="the OIDC issuer to log in at (default: the only one configured)")

