"""One error catalogue: the codes of DESIGN.md §12 on the wire, in --json and as exit codes.

A JitError carries a code and a human message. Every refusal anywhere in hostd raises
one; the server turns it into {"ok": false, "code", "message"} and the CLI into an exit
code. Bugs are not JitErrors: they surface as `internal`.
"""

from __future__ import annotations

# Grant refusals (DESIGN.md §12). Each comes from exactly one check in grants.py,
# except replayed and wrong_user, which need host state (core.py).
GRANT_REFUSALS = (
    "malformed",
    "algorithm_not_allowed",
    "bad_signature",
    "unknown_issuer",
    "issuer_not_allowed",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "ttl_exceeds_role_max",
    "unknown_role",
    "wrong_host",
    "wrong_user",
    "replayed",
    # ID tokens of an identity provider (hostd/policy/idptoken.py, issue 21)
    "wrong_issuer",
    "wrong_azp",
    "token_too_old",
    "groups_overage",
    "unknown_key",
    "stale_keys",
    "bad_token",
    "not_allowed",
)

# Other refusals: the caller asked for something it may not have.
REFUSALS = (
    *GRANT_REFUSALS,
    "permission_denied",
    "not_found",
    "not_requester",
    "not_approver",
    "self_approval",
    "already_decided",
    "request_expired",
    "denied",
    "too_many_requests",
    "reason_required",
    # sudo (sudo.check): the command is not allowed, or needs a password or an approval
    "no_grant",
    "no_rule",
    "runas_not_allowed",
    "option_not_allowed",
    "command_not_found",
    "guardrail_denied",
    "needs_approval",
    "auth_required",
    "auth_required_noninteractive",
    "auth_failed",
    # session recordings (jit verify-recording): the file differs from what hostd wrote
    "tampered",
    # live sessions (jit watch, jit terminate): over already; a watcher that fell behind
    "session_ended",
    "too_slow",
    # a revocation list (docs/REVOCATIONS.md) revokes the grant, or its issuer's list is
    # missing (require_list) or stale in strict mode
    "revoked",
)

# Usage and configuration problems (exit code 2).
USAGE_ERRORS = ("usage", "config_error", "bad_request", "too_large", "unknown_op")

# hostd could not be asked (exit code 3).
UNREACHABLE = ("unreachable", "timeout", "busy")

# A bug, or a system tool that failed (gpasswd): details in hostd's log only (exit code 1).
INTERNAL = ("internal",)

# The fetcher and `jit login` (hostd/fetch): the IdP or a list URL could not be reached or
# answered wrongly (exit code 3), the person denied the device login or let it expire (1).
FETCH_ERRORS = ("fetch_failed", "login_denied", "login_expired")

ALL_CODES = frozenset((*REFUSALS, *USAGE_ERRORS, *UNREACHABLE, *INTERNAL, *FETCH_ERRORS))

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class JitError(Exception):
    """A named, expected failure: refusal, bad input, bad configuration."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_wire(self) -> dict:
        return {"ok": False, "code": self.code, "message": self.message}


class ConfigError(JitError):
    """The configuration is wrong: names the file, the key and what is wrong."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{path}: {key}" if key else path
        super().__init__("config_error", f"{where}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


def exit_code_for(code: str) -> int:
    """Map an error code to the CLI's exit code (DESIGN.md §12)."""
    if code in UNREACHABLE or code == "fetch_failed":
        return EXIT_UNREACHABLE
    if code in USAGE_ERRORS:
        return EXIT_USAGE
    return EXIT_REFUSED
