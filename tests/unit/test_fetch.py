"""The fetcher (hostd/fetch): URL rules, discovery and JWKS checks, Cache-Control, the
atomic key cache with its failure path, the revocation-list puller's ETag handling and
the device flow's polling. The network side talks to a real HTTP server on loopback
(http.server in a thread) that plays the IdP; nothing is mocked below requests."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from hostd.errors import ConfigError, JitError
from hostd.fetch import cache, device, http, jwks, refresh, revocations
from hostd.fetch.issuers import FetchedIssuer, read_issuers
from hostd.paths import Paths
from hostd.state.journal import Events, read_mirror

REPO = Path(__file__).resolve().parents[2]


def b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


RSA = {"kty": "RSA", "kid": "r1", "n": b64((1 << 2047) + 12345), "e": b64(65537)}
EC = {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AAAA", "y": "BBBB"}
ED = {"kty": "OKP", "kid": "d1", "crv": "Ed25519", "x": "CCCC"}


# pure checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("header,seconds", [
    (None, 3600), ("", 3600), ("public", 3600), ("max-age=60", 300),
    ("public, max-age=7200", 7200), ("max-age=999999999", 86400), ("no-store", 300),
    ("no-cache, max-age=7200", 300), ("s-maxage=10, max-age=600", 600),
])
def test_max_age_is_clamped_to_five_minutes_and_a_day(header, seconds):
    assert jwks.max_age(header) == seconds


@pytest.mark.parametrize("url,ok", [
    ("https://idp.example.com/realms/corp", True), ("http://127.0.0.1:9400", True),
    ("http://[::1]:80/x", True), ("http://localhost/x", True),
    ("http://127.1.2.3/", True), ("http://idp.example.com/", False),
    ("http://10.0.0.1/", False), ("ftp://idp.example.com/", False), ("/relative", False),
    ("file:///etc/passwd", False),
])
def test_only_https_or_loopback_http(url, ok):
    if ok:
        assert http.check_url(url) == url
    else:
        with pytest.raises(http.FetchError):
            http.check_url(url)


def test_jwks_keeps_keys_usable_for_the_allowed_algorithms():
    short_rsa = dict(RSA, kid="short", n=b64((1 << 1023) + 1))
    enc = dict(RSA, kid="enc", use="enc")
    pinned = dict(RSA, kid="ps", alg="PS256")
    doc = {"keys": [RSA, EC, ED, short_rsa, enc, pinned, dict(EC, kid="p384", crv="P-384")]}
    kept = jwks.check_jwks(doc, ["RS256", "ES256"])
    assert [k["kid"] for k in kept["keys"]] == ["r1", "e1"]
    assert [k["kid"] for k in jwks.check_jwks(doc, ["EdDSA"])["keys"]] == ["d1"]


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi", "k"])
def test_a_private_key_in_the_jwks_fails_the_whole_set(member):
    with pytest.raises(http.FetchError, match="private"):
        jwks.check_jwks({"keys": [EC, dict(RSA, **{member: "AAAA"})]}, ["RS256", "ES256"])


@pytest.mark.parametrize("doc", [{}, {"keys": "x"}, {"keys": [1]}, {"keys": []},
                                 {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]},
                                 {"keys": [RSA] * 101}, {"keys": [EC]}])
def test_a_jwks_with_nothing_usable_is_refused(doc):
    with pytest.raises(http.FetchError):
        jwks.check_jwks(doc, ["RS256"])


def test_discovery_issuer_must_match_exactly():
    doc = {"issuer": "https://idp.example.com/realms/corp", "jwks_uri": "https://x/j"}
    assert jwks.check_discovery(doc, doc["issuer"]) is doc
    for other in ("https://idp.example.com/realms/corp/", "https://evil.example.com/"):
        with pytest.raises(http.FetchError, match="not the configured"):
            jwks.check_discovery(doc, other)
    with pytest.raises(http.FetchError, match="jwks_uri"):
        jwks.check_discovery({"issuer": "https://a"}, "https://a")


# issuers.d ---------------------------------------------------------------------------------

def _sandbox(tmp_path: Path) -> Paths:
    for d in ("etc/jit/issuers.d", "var/lib/jit", "var/log/jit"):
        (tmp_path / d).mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    return Paths.for_root(tmp_path)


def test_issuers_d_oidc_and_key_issuers(tmp_path):
    paths = _sandbox(tmp_path)
    (paths.issuers_dir / "a.toml").write_text(
        'name = "corp"\ntype = "oidc"\nissuer = "https://idp.example.com"\n'
        'client_id = "jitaccess"\nalgorithms = ["ES256"]\n')
    (paths.issuers_dir / "b.toml").write_text(
        'name = "old"\nkeys = ["k.pub"]\n'
        '[revocation]\nurl = "https://lists.example.com/corp.jwt"\nrefresh = "2m"\n')
    (paths.issuers_dir / "c.toml").write_text('name = "older"\nkeys = ["k.pub"]\n')
    found = read_issuers(paths)
    assert found["corp"].oidc and found["corp"].algorithms == ("ES256",)
    assert found["corp"].discovery_url == \
        "https://idp.example.com/.well-known/openid-configuration"
    assert found["corp"].revocation_url is None
    assert not found["old"].oidc and found["old"].revocation_refresh == 120
    assert found["old"].revocation_url == "https://lists.example.com/corp.jwt"
    assert found["older"].revocation_url is None


@pytest.mark.parametrize("body,key", [
    ('name = "c"\ntype = "oidc"\nissuer = "http://idp.example.com"\nclient_id = "j"\n',
     "issuer"),
    ('name = "c"\ntype = "oidc"\nclient_id = "j"\n', "issuer"),
    ('name = "c"\ntype = "saml"\n', "type"),
    ('name = "../x"\n', "name"),
    ('name = "a/b"\n', "name"),
    ('name = "c"\n[revocation]\nurl = "http://lists.example.com/x"\n', "revocation.url"),
    ('name = "c"\n[revocation]\nurl = "https://l.example.com/x"\nrefresh = "soon"\n',
     "revocation.refresh"),
    ('name = "c"\n[revocation]\nrefresh = "2m"\n', "revocation"),
    # lists are signed with an issuer key of ours, which an identity provider is not
    ('name = "c"\ntype = "oidc"\nissuer = "https://idp.example.com"\nclient_id = "j"\n'
     'algorithms = ["RS256"]\n[revocation]\nurl = "https://l.example.com/x"\n', "revocation"),
])
def test_bad_issuer_files_name_the_key(tmp_path, body, key):
    paths = _sandbox(tmp_path)
    (paths.issuers_dir / "c.toml").write_text(body)
    with pytest.raises(ConfigError) as err:
        read_issuers(paths)
    assert err.value.key == key


# a real HTTP server on loopback playing the IdP ---------------------------------------------

class IdP:
    """Routes: discovery, jwks, a revocation list with an ETag, device and token
    endpoints whose answers the test scripts."""

    def __init__(self) -> None:
        self.jwks: dict = {"keys": [RSA]}
        self.jwks_headers = {"Cache-Control": "max-age=900"}
        self.issuer = ""
        self.broken = False
        self.list_body, self.list_etag = b"list-1", '"v1"'
        self.token_answers: list[tuple[int, dict]] = []
        self.uri_key = "verification_uri"  # Google says verification_url
        self.seen: list[tuple[str, str, dict]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.base

    def _handler(self):
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes | dict, headers: dict | None = None):
                data = json.dumps(body).encode() if isinstance(body, dict) else body
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                idp.seen.append(("GET", self.path, dict(self.headers)))
                if idp.broken:
                    return self._send(500, b"down")
                if self.path == "/.well-known/openid-configuration":
                    return self._send(200, {
                        "issuer": idp.issuer, "jwks_uri": idp.base + "/jwks",
                        "device_authorization_endpoint": idp.base + "/device/auth",
                        "token_endpoint": idp.base + "/token"})
                if self.path == "/jwks":
                    return self._send(200, idp.jwks, idp.jwks_headers)
                if self.path == "/big":
                    return self._send(200, b"x" * (http.MAX_BYTES + 1))
                if self.path == "/list.jwt":
                    if self.headers.get("If-None-Match") == idp.list_etag:
                        return self._send(304, b"")
                    return self._send(200, idp.list_body, {"ETag": idp.list_etag})
                return self._send(404, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                idp.seen.append(("POST", self.path, form))
                if self.path == "/device/auth":
                    return self._send(200, {"device_code": "dev-1", "user_code": "ABCD-EFGH",
                                            idp.uri_key: idp.base + "/device",
                                            "expires_in": 600, "interval": 2})
                code, body = idp.token_answers.pop(0)
                return self._send(code, body)

        return Handler

    def __enter__(self) -> IdP:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[IdP]:
    with IdP() as server:
        yield server


def _oidc(idp: IdP, **kw: object) -> FetchedIssuer:
    return FetchedIssuer("corp", Path("corp.toml"), True, kw.pop("issuer", idp.issuer),
                         "jitaccess", ("RS256", "ES256"), **kw)


def _events(paths: Paths) -> Events:
    return Events(mirror=paths.events_mirror, journal=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_refresh_writes_the_cache_root_only_and_the_public_side(tmp_path, idp):
    paths = _sandbox(tmp_path)
    idp.jwks = {"keys": [RSA, EC, ED]}
    result = refresh.refresh_issuer(paths, _oidc(idp), _events(paths), clock=lambda: 1000.0)
    assert result["ok"] and result["keys"] == ["r1", "e1"]
    d = paths.idp_dir / "corp"
    assert _mode(paths.idp_dir) == _mode(d) == 0o700
    assert {p.name for p in d.iterdir()} == {"jwks.json", "discovery.json", "state.json"}
    assert all(_mode(p) == 0o600 for p in d.iterdir())
    assert json.loads((d / "jwks.json").read_text()) == {"keys": [RSA, EC]}
    assert json.loads((d / "state.json").read_text()) == {
        "fetched_at": 1000.0, "expires_at": 1900.0, "last_attempt_at": 1000.0,
        "last_error": None, "last_error_at": None}
    public = json.loads((paths.idp_public_dir / "corp.json").read_text())
    assert _mode(paths.idp_public_dir / "corp.json") == 0o644
    assert public == {"name": "corp", "issuer": idp.issuer, "client_id": "jitaccess",
                      "device_authorization_endpoint": idp.base + "/device/auth",
                      "token_endpoint": idp.base + "/token"}
    [event] = list(read_mirror(paths.events_mirror))
    assert event["JIT_EVENT"] == "idp_refreshed" and event["JIT_COUNT"] == "2"


@pytest.mark.parametrize("breakage", ["server", "issuer", "private", "size"])
def test_a_failed_refresh_keeps_the_last_good_keys_and_logs(tmp_path, idp, breakage):
    paths = _sandbox(tmp_path)
    events = _events(paths)
    assert refresh.refresh_issuer(paths, _oidc(idp), events, clock=lambda: 1000.0)["ok"]
    good = (paths.idp_dir / "corp" / "jwks.json").read_bytes()
    if breakage == "server":
        idp.broken = True
    elif breakage == "issuer":
        idp.issuer = "http://127.0.0.1:1"
    elif breakage == "private":
        idp.jwks = {"keys": [dict(RSA, d="AAAA")]}
    else:
        idp.jwks = {"keys": [dict(RSA, pad="x" * http.MAX_BYTES)]}
    result = refresh.refresh_issuer(paths, _oidc(idp), events, clock=lambda: 2000.0)
    assert not result["ok"] and result["last_error"]
    assert (paths.idp_dir / "corp" / "jwks.json").read_bytes() == good
    state = cache.read_state(paths, "corp")
    assert state["fetched_at"] == 1000.0 and state["expires_at"] == 1900.0
    assert state["last_attempt_at"] == state["last_error_at"] == 2000.0
    failed = [e for e in read_mirror(paths.events_mirror)
              if e["JIT_EVENT"] == "idp_refresh_failed"]
    assert len(failed) == 1 and failed[0]["JIT_ISSUER"] == "corp"
    assert refresh.due(paths, _oidc(idp), 1001.0)  # a failure is retried by the timer


def test_due_means_never_fetched_or_expired(tmp_path, idp):
    paths = _sandbox(tmp_path)
    assert refresh.due(paths, _oidc(idp), 0.0)
    refresh.refresh_issuer(paths, _oidc(idp), _events(paths), clock=lambda: 1000.0)
    assert not refresh.due(paths, _oidc(idp), 1899.0)
    assert refresh.due(paths, _oidc(idp), 1900.0)


def test_a_body_over_the_limit_is_refused(idp):
    with pytest.raises(http.FetchError, match="over"):
        http.request("GET", idp.base + "/big")


def test_revocation_list_is_pulled_with_etag_and_304_leaves_it_alone(tmp_path, idp):
    paths = _sandbox(tmp_path)
    issuer = FetchedIssuer("corp", Path("c"), False, revocation_url=idp.base + "/list.jwt")
    first = revocations.pull(paths, issuer, _events(paths), clock=lambda: 100.0)
    assert first["changed"] and first["status"] == 200
    d = paths.revocations_fetch_dir
    listed = d / "corp.jwt"
    assert listed.read_bytes() == b"list-1" and _mode(listed) == 0o600 and _mode(d) == 0o700
    assert (d / "corp.etag").read_text() == '"v1"'
    before = listed.stat()
    second = revocations.pull(paths, issuer, _events(paths), clock=lambda: 200.0)
    assert not second["changed"] and second["status"] == 304
    assert idp.seen[-1][2].get("If-None-Match") == '"v1"'
    after = listed.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    status = json.loads((d / "corp.fetch.json").read_text())
    assert status["fetched_at"] == 200.0 and status["changed_at"] == 100.0
    idp.list_body, idp.list_etag = b"list-2", '"v2"'
    assert revocations.pull(paths, issuer, _events(paths), clock=lambda: 300.0)["changed"]
    assert listed.read_bytes() == b"list-2"
    idp.broken = True
    failed = revocations.pull(paths, issuer, _events(paths), clock=lambda: 400.0)
    assert not failed["ok"] and listed.read_bytes() == b"list-2"
    assert [e["JIT_EVENT"] for e in read_mirror(paths.events_mirror)] == [
        "revocations_fetch_failed"]
    assert not revocations.due(paths, issuer, 430.0) and revocations.due(paths, issuer, 460.0)


# the device flow ---------------------------------------------------------------------------

def _provider(idp: IdP) -> device.Provider:
    return device.Provider("corp", idp.issuer, "jitaccess", idp.base + "/device/auth",
                           idp.base + "/token")


def _poll(idp: IdP, answers: list[tuple[int, dict]]) -> tuple[dict | JitError, list]:
    idp.token_answers = list(answers)
    slept: list[float] = []
    started = device.start(_provider(idp))
    try:
        return device.poll(_provider(idp), started, sleep=slept.append,
                           clock=lambda: 0.0), slept
    except JitError as exc:
        return exc, slept


def test_device_flow_honours_interval_and_slow_down(idp):
    pending = (400, {"error": "authorization_pending"})
    answer, slept = _poll(idp, [pending, (400, {"error": "slow_down"}), pending,
                                (200, {"id_token": "a.b.c", "access_token": "x"})])
    assert answer["id_token"] == "a.b.c"
    assert slept == [2, 2, 7, 7]
    assert idp.seen[0][2] == {"client_id": "jitaccess", "scope": "openid profile"}
    assert idp.seen[-1][2] == {"grant_type": device.GRANT_TYPE, "device_code": "dev-1",
                               "client_id": "jitaccess"}


@pytest.mark.parametrize("error,code", [("access_denied", "login_denied"),
                                        ("expired_token", "login_expired"),
                                        ("invalid_client", "fetch_failed")])
def test_device_flow_errors_are_named(idp, error, code):
    answer, _ = _poll(idp, [(400, {"error": "authorization_pending"}),
                            (400, {"error": error})])
    assert isinstance(answer, JitError) and answer.code == code


def test_googles_verification_url_is_read(idp):
    idp.uri_key = "verification_url"
    assert device.start(_provider(idp))["verification_uri"] == idp.base + "/device"
    idp.uri_key = "elsewhere"
    with pytest.raises(JitError, match="no verification_uri"):
        device.start(_provider(idp))


@pytest.mark.parametrize("given,seconds", [(None, 5), (3, 3), ("7", 7), (0, 5), (-1, 5),
                                           (True, 5), (3600, 60), ("x", 5), (2.5, 5)])
def test_poll_interval_from_the_answer(given, seconds):
    assert device._interval(given) == seconds


def test_a_token_answer_without_an_id_token_is_an_error(idp):
    answer, _ = _poll(idp, [(200, {"access_token": "x"})])
    assert isinstance(answer, JitError) and "id_token" in answer.message


def test_login_picks_the_only_issuer_or_asks(tmp_path, idp):
    paths = _sandbox(tmp_path)
    with pytest.raises(JitError, match="jit idp refresh"):
        device.choose(paths, None)
    refresh.refresh_issuer(paths, _oidc(idp), _events(paths))
    assert device.choose(paths, None).token_endpoint == idp.base + "/token"
    refresh.refresh_issuer(paths, FetchedIssuer("other", Path("o"), True, idp.issuer, "j",
                                                ("RS256",)), _events(paths))
    with pytest.raises(JitError, match="--issuer"):
        device.choose(paths, None)
    assert device.choose(paths, "other").client_id == "j"


# hostd stays off the network -----------------------------------------------------------------

def test_hostd_never_loads_the_fetcher_or_an_http_client():
    probe = ("import sys, hostd.server.service, hostd.server.daemon, hostd.core.lifecycle; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('requests', 'authlib', 'urllib3', 'qrcode') or m.startswith('hostd.fetch')))")
    out = subprocess.run(["/usr/bin/python3", "-c", probe], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "[]"


def test_the_probe_would_see_requests():
    probe = "import sys, hostd.fetch.http, requests; print('requests' in sys.modules)"
    out = subprocess.run(["/usr/bin/python3", "-c", probe], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == "True"
