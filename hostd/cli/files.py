"""Files the CLI reads and writes for the user, with one-line messages (issue 20): a
key, a report, an export. An OSError anywhere else in a command ends as `file_error`
in main(), never as a traceback; exit code 2 (usage: the file named is the problem).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from hostd.errors import JitError
from hostd.events import escape


def file_error(exc: OSError, doing: str = "") -> JitError:
    """`jit: usage: cannot write /etc/jit/x.key: Permission denied`."""
    what = escape(os.fsdecode(exc.filename)) if exc.filename is not None else ""
    why = exc.strerror or (errno.errorcode.get(exc.errno or 0) if exc.errno else "") \
        or str(exc) or type(exc).__name__
    text = " ".join(p for p in (doing, what) if p)
    return JitError("usage", f"{text}: {escape(why)}" if text else escape(why))


def new_file(path: Path) -> None:
    """Before writing PATH (and PATH.pub): it must not exist and its directory must
    (nothing is created on the way: a typo must not make directories as root)."""
    if path.exists() or path.is_symlink():
        raise JitError("usage", f"{escape(path)} exists; refusing to overwrite a key")
    parent = path.parent
    if not parent.is_dir():
        raise JitError("usage", f"{escape(parent)}: no such directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise JitError("usage", f"cannot write in {escape(parent)}: Permission denied")


def private_key(path: Path) -> object:
    """An issuer's private key for `jit issue --key`, or a message naming what is wrong
    (the public half, another file, no such file) instead of OpenSSL's error tuple."""
    from hostd.policy.keys import load_private

    try:
        return load_private(path)
    except JitError as exc:
        raise JitError("usage", f"--key {exc.message}") from None
    except OSError as exc:
        raise file_error(exc, "cannot read --key") from None
    except (ValueError, TypeError):
        try:
            head = path.read_bytes()[:4096]
        except OSError:
            head = b""
        if b"PUBLIC KEY-----" in head or head.startswith((b"ssh-", b"ecdsa-")):
            hint = ("is a public key: --key takes the private key (keygen's --out file, "
                    "not its .pub)")
        else:
            hint = "is not a PEM private key (Ed25519, ECDSA P-256 or RSA, unencrypted)"
        raise JitError("usage", f"--key {escape(path)} {hint}") from None
