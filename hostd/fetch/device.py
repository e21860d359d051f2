"""The OAuth 2.0 Device Authorization Grant (RFC 8628) for `jit login`: ask the IdP for
a device code, then poll its token endpoint, honouring `interval` and `slow_down`, until
the person has approved at the verification page. Runs in the user's `jit`, never in
hostd; the endpoints come from the world-readable public.json the refresh unit writes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hostd.errors import JitError
from hostd.fetch import cache, http
from hostd.paths import Paths

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid profile"
DEFAULT_INTERVAL = 5  # RFC 8628 §3.2
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5
MAX_INTERVAL = 60


@dataclass(frozen=True)
class Provider:
    """One issuer's public side, as `jit idp refresh` wrote it to public.json."""

    name: str
    issuer: str
    client_id: str
    device_endpoint: str
    token_endpoint: str


def providers(paths: Paths) -> dict[str, Provider]:
    """Every issuer whose public.json names a device endpoint."""
    found = {}
    folder = paths.idp_public_dir
    for file in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        doc = cache.read_json(file) or {}
        fields = [doc.get(k) for k in ("name", "issuer", "client_id",
                                       "device_authorization_endpoint", "token_endpoint")]
        if all(isinstance(v, str) and v for v in fields) and fields[0] == file.stem:
            found[file.stem] = Provider(*fields)
    return found


def choose(paths: Paths, name: str | None) -> Provider:
    """The issuer named, or the only one that can do the device flow."""
    found = providers(paths)
    if name is not None:
        if name not in found:
            raise JitError("usage", f"issuer {name!r} has no device login here (known: "
                                    f"{', '.join(found) or 'none'}; has `jit idp refresh` "
                                    "run?)")
        return found[name]
    if len(found) != 1:
        raise JitError("usage", "no OIDC issuer offers a device login here (has `jit idp "
                                "refresh` run?)" if not found else
                                f"several issuers ({', '.join(found)}): name one with --issuer")
    return next(iter(found.values()))


def start(p: Provider) -> dict:
    """The device authorization answer (device_code, user_code, verification_uri...)."""
    r = http.request("POST", p.device_endpoint, data={"client_id": p.client_id,
                                                      "scope": SCOPE},
                     headers={"Accept": "application/json"})
    doc = r.json()
    if r.status != 200:
        raise JitError("fetch_failed", f"device authorization refused: {_oauth_error(doc)}")
    if "verification_uri" not in doc and "verification_url" in doc:  # Google's spelling
        doc["verification_uri"] = doc["verification_url"]
    for key in ("device_code", "user_code", "verification_uri"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise JitError("fetch_failed", f"device authorization answer has no {key}")
    for key in ("verification_uri", "verification_uri_complete"):
        if key in doc:
            http.check_url(str(doc[key]))
    return doc


def _oauth_error(doc: dict) -> str:
    err = str(doc.get("error", "unknown error"))
    desc = doc.get("error_description")
    return f"{err}: {desc}" if isinstance(desc, str) and desc else err


def poll(p: Provider, device: dict, sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until the token answer (with its id_token) comes; access_denied and
    expired_token are named errors. KeyboardInterrupt propagates (Ctrl-C cancels)."""
    interval = _interval(device.get("interval"))
    expires = clock() + _interval(device.get("expires_in"), 600, 3600)
    data = {"grant_type": GRANT_TYPE, "device_code": device["device_code"],
            "client_id": p.client_id}
    while True:
        sleep(interval)
        if clock() > expires:
            raise JitError("login_expired", "the device code expired before the login was "
                                            "approved: run jit login again")
        r = http.request("POST", p.token_endpoint, data=data,
                         headers={"Accept": "application/json"})
        doc = r.json()
        if r.status == 200:
            if not isinstance(doc.get("id_token"), str):
                raise JitError("fetch_failed", "the token answer has no id_token (is the "
                                               "openid scope allowed for this client?)")
            return doc
        error = doc.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = min(MAX_INTERVAL, interval + SLOW_DOWN_STEP)
            continue
        if error == "access_denied":
            raise JitError("login_denied", "the login was denied at the identity provider")
        if error == "expired_token":
            raise JitError("login_expired", "the device code expired before the login was "
                                            "approved: run jit login again")
        raise JitError("fetch_failed", f"token endpoint: {_oauth_error(doc)}")


def _interval(value: object, default: int = DEFAULT_INTERVAL, cap: int = MAX_INTERVAL) -> int:
    """A positive number of seconds (some providers send it as a string), capped."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value:
        return min(value, cap)
    return default
