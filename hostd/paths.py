"""Every path hostd touches, relative to a root: `/` in production, a sandbox in tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def for_root(cls, root: str | os.PathLike | None) -> Paths:
        return cls(Path(root or "/").resolve())

    @property
    def sandboxed(self) -> bool:
        """True under --root: in-process timers, events mirrored to events.jsonl."""
        return self.root != Path("/")

    def _p(self, rel: str) -> Path:
        return self.root / rel

    @property
    def config(self) -> Path:
        return self._p("etc/jit/jit.toml")

    @property
    def issuers_dir(self) -> Path:
        return self._p("etc/jit/issuers.d")

    @property
    def host_key(self) -> Path:
        return self._p("etc/jit/host-issuer.key")

    @property
    def host_key_pub(self) -> Path:
        """World-readable public half, so users can verify host grants offline."""
        return self._p("etc/jit/host-issuer.key.pub")

    @property
    def state_db(self) -> Path:
        return self._p("var/lib/jit/state.db")

    @property
    def revocations_dir(self) -> Path:
        """Revocation lists the fetcher pulled: NAME.jwt, NAME.etag, NAME.fetch.json."""
        return self._p("var/lib/jit/revocations")

    @property
    def login_gate(self) -> Path:
        """[login] gating rules for pam_jit when hostd cannot answer (hostd/policy/logins.py)."""
        return self._p("var/lib/jit/login-gate.json")

    @property
    def idp_dir(self) -> Path:
        """IdP key caches, one root-only directory per issuer (`idp_dir / NAME`), written
        by `jit idp refresh` (hostd/fetch), read by hostd."""
        return self._p("var/lib/jit/idp")

    @property
    def idp_public_dir(self) -> Path:
        """World-readable `NAME.json`: the device-flow endpoints and client id `jit login`
        needs (the key cache, like all of /var/lib/jit, is root-only)."""
        return self._p("var/cache/jit/idp")

    @property
    def revocations_fetch_dir(self) -> Path:
        """Revocation lists pulled from a URL by `jit revocations fetch` (NAME.jwt,
        NAME.etag, NAME.fetch.json; root-only)."""
        return self._p("var/lib/jit/revocations")

    @property
    def webhook_spool(self) -> Path:
        """Webhook notices hostd hands to jit-webhook.service (hostd/server/spool.py)."""
        return self._p("var/lib/jit/webhook")

    @property
    def socket(self) -> Path:
        return self._p("run/jit/hostd.sock")

    @property
    def sessions_dir(self) -> Path:
        return self._p("var/log/jit/sessions")

    @property
    def events_mirror(self) -> Path:
        return self._p("var/log/jit/events.jsonl")

    @property
    def sudo_conf(self) -> Path:
        return self._p("etc/sudo.conf")

    @property
    def passwd(self) -> Path:
        return self._p("etc/passwd")

    @property
    def group(self) -> Path:
        return self._p("etc/group")

    @property
    def hostname_file(self) -> Path:
        return self._p("etc/hostname")

    @property
    def utmp(self) -> Path:
        return self._p("run/utmp")

    @property
    def machine_id(self) -> Path:
        return self._p("etc/machine-id")

    @property
    def proc(self) -> Path:
        """Where processes are read (residue scans). A sandbox has none unless a test
        links DIR/proc to /proc: no sandbox signals the host's processes by accident."""
        return self._p("proc")

    @property
    def dev(self) -> Path:
        """Terminals warned before expiry (DIR/dev in a sandbox, normally absent)."""
        return self._p("dev")


def client_paths() -> Paths:
    """What the CLI uses: JIT_ROOT for a sandbox (tests, demos), else `/`."""
    return Paths.for_root(os.environ.get("JIT_ROOT") or "/")
