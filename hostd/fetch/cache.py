"""The IdP key cache on disk (CONTRACTS §A): `<state>/idp/NAME/` root 0700, files root
0600 written atomically (temp file in the same directory, fsync, rename), jwks.json and
discovery.json before state.json, so a reader that sees a new state.json sees its keys.
Plus the world-readable public.json `jit login` reads (endpoints and client id only)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from hostd.paths import Paths

STATE_KEYS = ("fetched_at", "expires_at", "last_attempt_at", "last_error", "last_error_at")


def private_dir(path: Path) -> Path:
    """Create (or put back to) a root-only 0700 directory."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def public_dir(path: Path) -> Path:
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(path, 0o755)  # noqa: S103 - public.json is for every user
    return path


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` whole: a reader sees the old file or the new one, never a part."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def write_json(path: Path, doc: dict, mode: int = 0o600) -> None:
    write_atomic(path, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode(), mode)


def read_json(path: Path) -> dict | None:
    """A cache file's object, or None when absent or unreadable as JSON."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def issuer_dir(paths: Paths, name: str) -> Path:
    return paths.idp_dir / name


def read_state(paths: Paths, name: str) -> dict:
    """state.json's fields, each None when unknown (never fetched)."""
    doc = read_json(issuer_dir(paths, name) / "state.json") or {}
    return {k: doc.get(k) for k in STATE_KEYS}


def store_success(paths: Paths, name: str, discovery: dict, jwks: dict, now: float,
                  ttl: int) -> dict:
    """Keys, discovery, then state: a good fetch clears last_error."""
    private_dir(paths.idp_dir)
    d = private_dir(issuer_dir(paths, name))
    write_json(d / "jwks.json", jwks)
    write_json(d / "discovery.json", discovery)
    state = {"fetched_at": now, "expires_at": now + ttl, "last_attempt_at": now,
             "last_error": None, "last_error_at": None}
    write_json(d / "state.json", state)
    return state


def store_failure(paths: Paths, name: str, error: str, now: float) -> dict:
    """Only state.json: the last good keys stay as they were."""
    private_dir(paths.idp_dir)
    d = private_dir(issuer_dir(paths, name))
    state = read_state(paths, name)
    state.update(last_attempt_at=now, last_error=error, last_error_at=now)
    write_json(d / "state.json", state)
    return state


def store_public(paths: Paths, name: str, issuer: str, client_id: str,
                 discovery: dict) -> None:
    """What an unprivileged `jit login` needs: no keys, nothing secret."""
    doc = {"name": name, "issuer": issuer, "client_id": client_id,
           "device_authorization_endpoint": discovery.get("device_authorization_endpoint"),
           "token_endpoint": discovery.get("token_endpoint")}
    write_json(public_dir(paths.idp_public_dir) / f"{name}.json", doc, 0o644)
