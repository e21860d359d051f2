"""One bounded GET/POST: https only (plain http to a loopback address, as RFC 8252
allows), no redirect to anywhere else, a size cap, connect and read timeouts.

requests (python3-requests) does the HTTP; this module only bounds it, so a hostile or
broken IdP can neither make the fetcher read forever nor steer it to plain http.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from hostd.errors import JitError

MAX_BYTES = 1 << 20  # discovery, JWKS, revocation lists and token answers are far smaller
TIMEOUT = (5.0, 10.0)  # connect, read (per socket read)
MAX_REDIRECTS = 3
USER_AGENT = "jitaccess-fetch"


class FetchError(JitError):
    """The network, the server or its answer failed: the cache keeps what it had."""

    def __init__(self, message: str) -> None:
        super().__init__("fetch_failed", message)


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> dict:
        """The body as a JSON object, or FetchError naming what is wrong."""
        try:
            doc = json.loads(self.body)
        except ValueError as exc:
            raise FetchError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise FetchError("not a JSON object")
        return doc


def is_loopback(host: str) -> bool:
    """A loopback IP literal or `localhost`: the only places plain http may go."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """The URL if it is https, or http to loopback; else FetchError."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise FetchError(f"not an absolute URL: {url!r}")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return url
    raise FetchError(f"{url!r}: only https (or http to a loopback address) is allowed")


def request(method: str, url: str, *, headers: dict[str, str] | None = None,
            data: dict[str, str] | None = None, max_bytes: int = MAX_BYTES) -> Response:
    """Send one request, following at most MAX_REDIRECTS redirects that pass check_url
    (GET only); the body is read up to max_bytes, more is FetchError."""
    import requests  # python3-requests: imported here, so `jit` without it still runs

    sent = {"User-Agent": USER_AGENT, **(headers or {})}
    for _ in range(MAX_REDIRECTS + 1):
        check_url(url)
        try:
            with requests.request(method, url, headers=sent, data=data, timeout=TIMEOUT,
                                  allow_redirects=False, stream=True) as r:
                if r.is_redirect and method == "GET":
                    url = urljoin(url, r.headers.get("location", ""))
                    continue
                body = _read(r, max_bytes, url)
                return Response(r.status_code, {k.lower(): v for k, v in r.headers.items()},
                                body)
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
    raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")


def _read(r, max_bytes: int, url: str) -> bytes:
    declared = r.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"{url}: answer of {declared} bytes is over {max_bytes}")
    chunks, size = [], 0
    for chunk in r.iter_content(65536):
        size += len(chunk)
        if size > max_bytes:
            raise FetchError(f"{url}: answer is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[dict, Response]:
    """GET a JSON object that must come with 200."""
    r = request("GET", url, headers={"Accept": "application/json", **(headers or {})})
    if r.status != 200:
        raise FetchError(f"{url}: HTTP {r.status}")
    return r.json(), r
