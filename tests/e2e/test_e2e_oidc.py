"""Identity-provider logins against a REAL OIDC provider inside the booted Debian 12:
panva's certified oidc-provider (tests/e2e/oidc/provider.mjs) on loopback, on the host's
Node.js copied into the box (the box has no network). The fetcher runs through its real,
hardened units; the person at the verification page is tests/e2e/oidc/browser.py.

What needs hostd's idp.activate / idp.roles ops (branch oidc-verify, CONTRACTS §B) is
skipped, saying so, when the installed package has no such op; everything the fetcher
and `jit login`'s device flow do themselves runs regardless.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from container import Container, log
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
    for name in ("provider.mjs", "browser.py", "listserver.py"):
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
