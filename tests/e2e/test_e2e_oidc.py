"""Identity-provider logins against a REAL OIDC provider inside the booted Debian 12:
panva's certified oidc-provider (tests/e2e/oidc/provider.mjs) on loopback, on the host's
Node.js copied into the box (the box has no network). The fetcher runs through its real,
hardened units; the person at the verification page is tests/e2e/oidc/browser.py.
Hostile tokens (issue 21's refusal list) are the provider's own (a token for its other
client, a replayed one) or signed with its current key with one claim wrong.

What needs hostd's idp.activate / idp.roles ops (branch oidc-verify, CONTRACTS §B) is
skipped, saying so, when the installed package has no such op; everything the fetcher
and `jit login`'s device flow do themselves runs regardless.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest
from container import Container, log
from cryptography.hazmat.primitives import serialization
from jithost import POLICY_TOML, Host, events, groups_of, wait_for

HERE = Path(__file__).resolve().parent
# scripts/install-deps.sh installs the provider here, keyed by its version.
OP_VERSION = "8.8.1"
OP_DIR = Path("/var/cache/jitaccess-tools") / f"oidc-provider-{OP_VERSION}"
OP_PORT, LIST_PORT = 9400, 9401
ISSUER = f"http://127.0.0.1:{OP_PORT}"
CACHE = "/var/lib/jit/idp/corp-idp"
LIST = "/var/lib/jit/revocations/corp.jwt"

IDP_TOML = f"""\
name = "corp-idp"
type = "oidc"
issuer = "{ISSUER}"
client_id = "jitaccess"
audiences = ["jitaccess"]
algorithms = ["RS256"]
username_claim = "preferred_username"
groups_claim = "groups"
max_token_age = "10m"

[[claims_to_roles]]
claim = "groups"
value = "/sre"
roles = ["oncall"]
"""
# The shared policy plus a role IdP logins map to, without approvals (docker's approvals
# would turn a login into a request).
ONCALL_TOML = """
[roles.oncall]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp-idp"]
"""
# Added to the key issuer corp only while the URL test runs (lists are signed with an
# issuer key of ours, never an identity provider's); the fetcher reads issuers.d afresh
# on every run, and hostd refuses this unsigned body (revocations_refused), keeping none.
REVOCATION_TOML = f"""
[revocation]
url = "http://127.0.0.1:{LIST_PORT}/corp.jwt"
refresh = "1m"
"""
USERS = {"alice": {"groups": ["/sre"]}, "bob": {"groups": ["/dev"]}}


def _node() -> Path:
    """The host's node, if it runs on Debian 12's libc alone (the machines' Node 20 is a
    self-contained build; Debian's own node needs libnode, which the box lacks)."""
    found = shutil.which("node")
    if not found:
        pytest.fail("no node on this machine: scripts/install-deps.sh installs one")
    node = Path(found).resolve()
    libs = subprocess.run(["ldd", str(node)], capture_output=True, text=True).stdout
    if "libnode" in libs:
        pytest.fail(f"{node} needs libnode: put a self-contained Node 18/20 on PATH")
    return node


def start_provider(box: Container, rotate: bool = False) -> None:
    """(Re)start the provider as a transient unit; rotate puts a new key in front."""
    box.run(["systemctl", "stop", "jit-op.service"], check=False)
    box.run(["systemctl", "reset-failed", "jit-op.service"], check=False)
    box.run(["systemd-run", "--unit=jit-op", "--property=Environment=OP_STATE=/var/lib/jit-op",
             f"--property=Environment=OP_PORT={OP_PORT}",
             f"--property=Environment=OP_ROTATE={1 if rotate else 0}",
             "/usr/local/bin/node", "/opt/jit-op/provider.mjs"])
    probe = (f"import urllib.request; urllib.request.urlopen('{ISSUER}/.well-known/"
             "openid-configuration', timeout=2).read()")
    wait_for("the OIDC provider to answer",
             lambda: box.run(["python3", "-c", probe], check=False).returncode == 0,
             timeout=30)


def signing_kid(box: Container) -> str:
    return json.loads(box.path("/var/lib/jit-op/jwks.json").read_text())["keys"][0]["kid"]


@pytest.fixture(scope="module")
def idp(own_host: Host) -> Iterator[Host]:
    """own_host with the provider, the list server and the corp-idp issuer."""
    box = own_host.box
    if not (OP_DIR / "node_modules" / "oidc-provider" / "package.json").exists():
        pytest.fail(f"{OP_DIR} is missing: run scripts/install-deps.sh")
    box.copy_in(_node(), "/usr/local/bin/node")
    os.chmod(box.path("/usr/local/bin/node"), 0o755)
    shutil.copytree(OP_DIR, box.path("/opt/jit-op"), symlinks=True)
    for name in ("provider.mjs", "browser.py", "device.py", "listserver.py"):
        box.copy_in(HERE / "oidc" / name, f"/opt/jit-op/{name}")
    box.write("/var/lib/jit-op/users.json", json.dumps(USERS), 0o600)
    box.write("/srv/lists/corp.jwt", "not-a-signed-list-v1\n")
    start_provider(box)
    box.run(["systemd-run", "--unit=jit-lists", "python3", "/opt/jit-op/listserver.py",
             str(LIST_PORT), "/srv/lists/corp.jwt", "/srv/lists/requests.log"])
    box.write("/etc/jit/issuers.d/corp-idp.toml", IDP_TOML)
    if has_idp_ops(box):
        box.write("/etc/jit/jit.toml", POLICY_TOML + ONCALL_TOML)
        box.run(["jit", "check-config"])
        box.run(["systemctl", "reload-or-restart", "jit-hostd.service"])
    yield own_host


def has_idp_ops(box: Container) -> bool:
    """Whether the installed hostd serves idp.activate (CONTRACTS §B)."""
    return box.run(["python3", "-c", "import sys, hostd.protocol as p; "
                    "sys.exit('idp.activate' not in p.OPS)"], check=False).returncode == 0


def need_idp_ops(box: Container) -> None:
    if not has_idp_ops(box):
        pytest.skip("the installed hostd has no idp.activate op yet (branch oidc-verify)")


def refresh_unit(box: Container) -> subprocess.CompletedProcess[str]:
    return box.run(["systemctl", "start", "jit-idp-refresh@corp-idp.service"], check=False,
                   timeout=120)


def login(box: Container, user: str, *args: str, deny: bool = False
          ) -> tuple[dict, str, dict, int]:
    """`jit login ARGS --json` as user, the test playing the person at the verification
    page: (device object, the provider's last page, jit's last line, exit code)."""
    proc = box.popen(["jit", "login", *args, "--json"], user=user)
    try:
        first = proc.stdout.readline()
        assert first, f"jit login printed nothing: {proc.stderr.read()}"
        device = json.loads(first)
        page = box.run(["python3", "/opt/jit-op/browser.py", device["verification_uri"],
                        device["user_code"], user, *(["--deny"] if deny else [])],
                       timeout=60).stdout
        rest, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = [ln for ln in rest.splitlines() if ln.strip()]
    assert lines, f"jit login printed no result: {err}"
    return device, page, json.loads(lines[-1]), proc.returncode


# the fetcher ---------------------------------------------------------------------------------

def test_units_are_installed_hardened_and_the_timers_enabled(idp: Host) -> None:
    box = idp.box
    units = ["jit-idp-refresh.service", "jit-idp-refresh@.service", "jit-idp-refresh.timer",
             "jit-revocations-fetch.service", "jit-revocations-fetch.timer"]
    verify = box.run(["systemd-analyze", "verify", "--man=no",
                      *[f"/lib/systemd/system/{u}" for u in units]], check=False)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    for timer in ("jit-idp-refresh.timer", "jit-revocations-fetch.timer"):
        assert box.run(["systemctl", "is-enabled", timer]).stdout.strip() == "enabled"
        assert box.run(["systemctl", "is-active", timer]).stdout.strip() == "active"
    shown = box.run(["systemctl", "show", "jit-idp-refresh@corp-idp.service", "-p",
                     "ProtectSystem", "-p", "ReadWritePaths", "-p", "CapabilityBoundingSet",
                     "-p", "NoNewPrivileges"]).stdout
    assert "ProtectSystem=strict" in shown and "NoNewPrivileges=yes" in shown
    assert "ReadWritePaths=/var/lib/jit/idp /var/cache/jit/idp" in shown
    security = box.run(["systemd-analyze", "security", "--no-pager",
                        "jit-idp-refresh@corp-idp.service"], check=False).stdout
    log("systemd-analyze security jit-idp-refresh@corp-idp.service: "
        + (security.strip().splitlines() or ["?"])[-1])


def test_refresh_unit_fetches_discovery_and_keys_into_the_cache(idp: Host) -> None:
    box = idp.box
    t0 = time.monotonic()
    started = refresh_unit(box)
    log(f"jit-idp-refresh@corp-idp.service ran in {time.monotonic() - t0:.2f} s")
    assert started.returncode == 0, started.stderr + box.run(
        ["journalctl", "-u", "jit-idp-refresh@corp-idp", "--no-pager"]).stdout
    assert oct(box.path(CACHE).stat().st_mode & 0o777) == "0o700"
    for name in ("jwks.json", "discovery.json", "state.json"):
        assert oct(box.path(f"{CACHE}/{name}").stat().st_mode & 0o777) == "0o600"
    keys = json.loads(box.path(f"{CACHE}/jwks.json").read_text())["keys"]
    assert [k["kid"] for k in keys] == [signing_kid(box)]
    assert not [k for k in keys if set(k) & {"d", "p", "q", "dp", "dq", "qi"}]
    assert json.loads(box.path(f"{CACHE}/discovery.json").read_text())["issuer"] == ISSUER
    status = json.loads(box.run(["jit", "idp", "status", "--json"]).stdout)
    [corp] = status["issuers"]
    assert corp["last_error"] is None and corp["keys"][0]["algorithms"] == ["RS256"]
    assert corp["expires_at"] - corp["fetched_at"] == 3600  # no Cache-Control: 1 h
    public = json.loads(box.run(["cat", "/var/cache/jit/idp/corp-idp.json"],
                                user="alice").stdout)
    assert public["device_authorization_endpoint"] == f"{ISSUER}/device/auth"
    refused = box.run(["jit", "idp", "status"], user="alice", check=False)
    assert refused.returncode == 1 and "permission_denied" in refused.stderr
    assert events(box, "idp_refreshed")[-1]["JIT_ISSUER"] == "corp-idp"


def test_a_failed_fetch_keeps_the_last_good_keys_and_logs_an_event(idp: Host) -> None:
    box = idp.box
    refresh_unit(box)
    good = box.path(f"{CACHE}/jwks.json").read_bytes()
    box.run(["systemctl", "stop", "jit-op.service"])
    try:
        assert refresh_unit(box).returncode != 0  # the unit fails: visible in systemctl
        assert box.path(f"{CACHE}/jwks.json").read_bytes() == good
        state = json.loads(box.path(f"{CACHE}/state.json").read_text())
        assert "ConnectionError" in state["last_error"]
        assert state["last_error_at"] > state["fetched_at"]
        failed = events(box, "idp_refresh_failed")
        assert failed and failed[-1]["JIT_ISSUER"] == "corp-idp"
        shown = box.run(["jit", "idp", "status"]).stdout
        assert "last error" in shown and "ConnectionError" in shown
    finally:
        start_provider(box)
    assert refresh_unit(box).returncode == 0


# the device flow -----------------------------------------------------------------------------

def test_a_denied_device_login_is_a_clear_error(idp: Host) -> None:
    t0 = time.monotonic()
    device, page, answer, rc = login(idp.box, "alice", "oncall", deny=True)
    log(f"denied device login: {time.monotonic() - t0:.1f} s (poll interval "
        f"{device.get('interval') or 5} s)")
    assert "request was interrupted" in page  # the provider's own word for the abort
    assert set(device) >= {"verification_uri", "verification_uri_complete", "user_code",
                           "expires_in"}
    assert answer["code"] == "login_denied" and rc == 1, answer
    assert "docker" not in groups_of(idp.box, "alice")


def test_device_login_maps_groups_to_roles(idp: Host) -> None:
    box = idp.box
    _, page, answer, rc = login(box, "alice", "--roles")
    assert "Sign-in Success" in page
    if not has_idp_ops(box):  # the token came and was handed to hostd, which lacks the op
        assert answer["code"] == "unknown_op" and rc == 2, answer
        pytest.skip("the installed hostd has no idp.roles op yet (branch oidc-verify)")
    # matched: each rule's claim and value (hostd's spelling of CONTRACTS §B's values)
    assert rc == 0 and answer["roles"] == ["oncall"], answer
    assert answer["matched"] == ["groups=/sre"], answer
    _, _, answer, _ = login(box, "bob", "--roles")
    assert answer["roles"] == [] and answer["user"] == "bob"


def test_device_login_activates_the_role(idp: Host) -> None:
    box = idp.box
    need_idp_ops(box)
    _, _, answer, rc = login(box, "alice", "oncall", "--for", "10m", "--reason", "e2e idp")
    assert rc == 0 and answer["ok"], answer
    assert answer["issuer"] == "corp-idp" and answer["subject"] == "alice"
    assert answer["grant"]["role"] == "oncall"
    assert "docker" in groups_of(box, "alice")
    box.run(["jit", "revoke", answer["grant"]["id"], "--reason", "e2e done"])


def test_key_rotation_activates_after_the_automatic_refresh(idp: Host) -> None:
    box = idp.box
    need_idp_ops(box)
    refresh_unit(box)
    start_provider(box, rotate=True)
    new_kid = signing_kid(box)
    _, _, first, _ = login(box, "alice", "oncall", "--for", "5m")
    assert first.get("code") == "unknown_key", first  # hostd asked for a refresh
    wait_for("hostd's refresh to fetch the new key", lambda: new_kid in box.path(
        f"{CACHE}/jwks.json").read_text(), timeout=30)
    _, _, second, rc = login(box, "alice", "oncall", "--for", "5m")
    assert rc == 0 and second["ok"], second
    box.run(["jit", "revoke", second["grant"]["id"]])


def test_a_stale_cache_is_refused(idp: Host) -> None:
    box = idp.box
    need_idp_ops(box)
    assert refresh_unit(box).returncode == 0
    path = box.path(f"{CACHE}/state.json")
    state = json.loads(path.read_text())
    state["fetched_at"] = time.time() - 25 * 3600  # older than max_stale (24 h)
    path.write_text(json.dumps(state))
    try:
        _, _, answer, rc = login(box, "alice", "oncall", "--for", "5m")
        assert answer.get("code") == "stale_keys" and rc == 1, answer
    finally:
        refresh_unit(box)


# hostile tokens: the real provider's own tokens and keys, one thing wrong -------------------

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def keys_cached(box: Container) -> None:
    """The provider's current key is in the fetcher's cache (a case may run alone)."""
    path = box.path(f"{CACHE}/jwks.json")
    if not path.exists() or signing_kid(box) not in path.read_text():
        assert refresh_unit(box).returncode == 0


def provider_key(box: Container) -> tuple[str, object, object]:
    """(kid, private key, public key) of the provider's current signing key: the private
    half from the provider's state (the test made it), the public half and its kid from
    the JWKS the fetcher cached (what hostd verifies with)."""
    kid = signing_kid(box)
    private = json.loads(box.path("/var/lib/jit-op/jwks.json").read_text())["keys"][0]
    [public] = [k for k in json.loads(box.path(f"{CACHE}/jwks.json").read_text())["keys"]
                if k["kid"] == kid]
    return (kid, jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(private)),
            jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(public)))


def claims(**over: object) -> dict:
    """What the provider puts in alice's ID token (tests/e2e/oidc/provider.mjs), fresh."""
    now = int(time.time())
    base = {"iss": ISSUER, "sub": "alice", "aud": "jitaccess", "iat": now,
            "exp": now + 3600, "jti": uuid.uuid4().hex, "preferred_username": "alice",
            "groups": ["/sre"]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def forge(box: Container, how: str, body: dict) -> str:
    """`signed`: RS256 by the provider's current key, its kid; `none`: alg none, no
    signature; `hs256`: HS256 whose HMAC secret is the provider's public key (PEM)."""
    kid, private, public = provider_key(box)
    if how == "signed":
        return jwt.encode(body, private, algorithm="RS256", headers={"kid": kid})
    head = b64(json.dumps({"alg": "none" if how == "none" else "HS256", "typ": "JWT",
                           "kid": kid}).encode())
    signing_input = f"{head}.{b64(json.dumps(body).encode())}"
    if how == "none":
        return signing_input + "."
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"{signing_input}.{b64(hmac.new(pem, signing_input.encode(), 'sha256').digest())}"


def genuine(box: Container, client_id: str) -> str:
    """A real ID token of alice's for `client_id`, by the device flow (oidc/device.py)."""
    return box.run(["python3", "/opt/jit-op/device.py", ISSUER, client_id, "alice"],
                   timeout=60).stdout.strip()


def activate_with(box: Container, token: str, *args: str) -> tuple[int, dict]:
    proc = box.run(["jit", "activate", "oncall", "--id-token", "-", "--json", *args],
                   user="alice", check=False, input=token)
    return proc.returncode, json.loads(proc.stdout)


def refused_as(box: Container, token: str, code: str, *args: str) -> None:
    """alice's activation with `token` is refused with `code`, logged as grant_refused
    with that code, and nothing is granted."""
    def alices(event: str) -> list[dict]:
        return [e for e in events(box, event) if e.get("JIT_USER") == "alice"]

    assert "docker" not in groups_of(box, "alice")
    granted, refusals = len(alices("grant_activated")), len(alices("grant_refused"))
    rc, answer = activate_with(box, token, *args)
    assert (rc, answer.get("code")) == (1, code), answer
    new = wait_for("hostd's grant_refused", lambda: alices("grant_refused")[refusals:], 10)
    issuer = None if code == "unknown_issuer" else "corp-idp"  # no issuer has that iss
    assert [(e["JIT_CODE"], e.get("JIT_ISSUER")) for e in new] == [(code, issuer)], new
    assert "docker" not in groups_of(box, "alice")
    assert len(alices("grant_activated")) == granted


def test_a_forged_token_with_nothing_wrong_activates(idp: Host) -> None:
    """The control: the forging below yields tokens hostd takes, so each refusal that
    follows is the one wrong claim's."""
    box = idp.box
    need_idp_ops(box)
    keys_cached(box)
    rc, answer = activate_with(box, forge(box, "signed", claims()), "--for", "5m")
    assert rc == 0 and answer["grant"]["role"] == "oncall", answer
    assert "docker" in groups_of(box, "alice")
    box.run(["jit", "revoke", answer["grant"]["id"], "--reason", "e2e control"])


def test_a_genuine_token_activates_once(idp: Host) -> None:
    box = idp.box
    need_idp_ops(box)
    keys_cached(box)
    token = genuine(box, "jitaccess")
    rc, answer = activate_with(box, token, "--for", "5m")
    assert rc == 0 and answer["subject"] == "alice", answer
    box.run(["jit", "revoke", answer["grant"]["id"], "--reason", "e2e replay"])
    refused_as(box, token, "replayed")


def test_a_genuine_token_of_another_client_is_refused(idp: Host) -> None:
    box = idp.box
    need_idp_ops(box)
    keys_cached(box)
    token = genuine(box, "other-app")
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "other-app"
    refused_as(box, token, "wrong_audience")


WRONG_ISS = f"http://127.0.0.1:{LIST_PORT}"
OVERAGE = {"groups": None, "_claim_names": {"groups": "src1"},
           "_claim_sources": {"src1": {"endpoint": ISSUER + "/groups"}}}
HOSTILE: dict[str, tuple[str, Callable[[int], dict], str, tuple[str, ...]]] = {
    # name: (how it is made, the claims changed at time now, the refusal, jit's options)
    "wrong iss": ("signed", lambda now: {"iss": WRONG_ISS}, "wrong_issuer",
                  ("--issuer", "corp-idp")),
    "wrong iss, no --issuer": ("signed", lambda now: {"iss": WRONG_ISS}, "unknown_issuer",
                               ()),
    "wrong azp": ("signed", lambda now: {"aud": ["jitaccess", "other-app"],
                                         "azp": "other-app"}, "wrong_azp", ()),
    "expired": ("signed", lambda now: {"iat": now - 300, "exp": now - 120}, "expired", ()),
    "old iat": ("signed", lambda now: {"iat": now - 3600}, "token_too_old", ()),
    "Entra overage, _claim_names": ("signed", lambda now: OVERAGE, "groups_overage", ()),
    "Entra overage, hasgroups": ("signed", lambda now: {"groups": None, "hasgroups": True},
                                 "groups_overage", ()),
    "alg none": ("none", lambda now: {}, "algorithm_not_allowed", ()),
    "HS256 keyed with the public key": ("hs256", lambda now: {}, "algorithm_not_allowed",
                                        ()),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_token_is_refused(idp: Host, case: str) -> None:
    box = idp.box
    need_idp_ops(box)
    keys_cached(box)
    how, changed, code, args = HOSTILE[case]
    refused_as(box, forge(box, how, claims(**changed(int(time.time())))), code, *args)


# revocation lists pulled from a URL ----------------------------------------------------------

def test_revocation_list_is_pulled_with_etag_and_304_leaves_it_alone(idp: Host) -> None:
    box = idp.box
    corp = box.path("/etc/jit/issuers.d/corp.toml").read_text()
    # the timer's own run must not read the file half-written (it would fail, and the
    # test's `systemctl start` would join that failed run)
    box.run(["systemctl", "stop", "jit-revocations-fetch.timer"])
    box.write("/etc/jit/issuers.d/corp.toml", corp + REVOCATION_TOML)
    try:
        pulled_with_etag(box)
    finally:
        box.write("/etc/jit/issuers.d/corp.toml", corp)
        box.run(["systemctl", "start", "jit-revocations-fetch.timer"])


def pulled_with_etag(box: Container) -> None:
    started = box.run(["systemctl", "start", "jit-revocations-fetch.service"], check=False,
                      timeout=120)
    assert started.returncode == 0, started.stderr + box.run(
        ["journalctl", "-u", "jit-revocations-fetch.service", "--no-pager", "-n", "30"],
        check=False).stdout
    listed = box.path(LIST)
    assert listed.read_text() == "not-a-signed-list-v1\n"
    assert oct(listed.stat().st_mode & 0o777) == "0o600"
    before = listed.stat()
    again = json.loads(box.run(["jit", "revocations", "fetch", "--force", "--json"]).stdout)
    assert again["issuers"][0]["changed"] is False and again["issuers"][0]["status"] == 304
    after = listed.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    seen = [json.loads(ln) for ln in box.path("/srv/lists/requests.log").read_text()
            .splitlines()]
    assert seen[-1]["status"] == 304 and seen[-1]["if_none_match"]
    box.write("/srv/lists/corp.jwt", "not-a-signed-list-v2\n")
    box.run(["jit", "revocations", "fetch", "--force"])
    assert listed.read_text() == "not-a-signed-list-v2\n"
    # not due again within `refresh`: the timer's runs leave it alone
    quiet = json.loads(box.run(["jit", "revocations", "fetch", "--json"]).stdout)
    assert quiet["issuers"] == []
