"""Shipping events to a SIEM with a standard tool: Debian's rsyslog, configured with the
example the package ships (imjournal and a JSON template), carries every field of
hostd's events to a JSON file, with no parsing of our own on either side.

The file is read back with json.loads only and compared with `journalctl -o json` of the
same events: same events in the same order, every JIT_* field (and every other journal
field but the `__` metadata) with the same value. The same real entries also feed the
HTML report once (its browser tests run on synthetic streams, tests/integration).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from jithost import Host, grants, issue, journal, wait_for

from hostd.audit.report import render_html

EXAMPLE = "/usr/share/doc/jitaccess/examples/rsyslog-jit.conf"
SINK = "/var/log/jit-events.json"
# hostd escapes what users type; the sink must keep it byte for byte
# a local user may write anything to the journal, SYSLOG_IDENTIFIER included
FORGED = ("MESSAGE=grant forged activated\nSYSLOG_IDENTIFIER=jit-hostd\n"
          "JIT_EVENT=grant_activated\nJIT_USER=alice\nJIT_ROLE=root\nJIT_GRANT_ID=forged\n")
REASON = 'ship it "now" \\ <script>x</script> é\u2028\nnext'


@pytest.fixture(scope="module")
def shipped(own_host: Host) -> tuple[Host, str]:
    """rsyslog restarted with the shipped example; then a grant activated and revoked."""
    box = own_host.box
    box.run(["cp", EXAMPLE, "/etc/rsyslog.d/50-jit.conf"])
    box.run(["rsyslogd", "-N1"])  # the example validates as it is
    box.run(["systemctl", "restart", "rsyslog"])
    box.run(["logger", "--journald"], user="alice", input=FORGED)
    token = issue(box, "carol", "docker", "10m", reason=REASON)
    box.run(["jit", "activate", token], user="carol")
    grant_id = grants(box, user="carol")[0]["id"]
    box.run(["jit", "revoke", grant_id, "--reason", 'done "here"\ttab'])
    return own_host, grant_id


def _hostd_events(host: Host) -> list[dict]:
    """hostd's own events: written by root (a user's forgery has its own _UID)."""
    return [e for e in journal(host.box, "-t", "jit-hostd", "--all")
            if "JIT_EVENT" in e and e.get("_UID") == "0"]


def _sink(host: Host) -> list[dict]:
    text = host.box.run(["sh", "-c", f"cat {SINK} 2>/dev/null || true"]).stdout
    return [json.loads(line) for line in text.splitlines()]


def test_example_is_shipped_but_not_enabled(deb: Path) -> None:
    """Checked in the package itself: the example is in the docs, nothing in /etc."""
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert "." + EXAMPLE in listing
    assert "/etc/rsyslog.d/" not in listing


def test_every_field_of_every_event_reaches_the_sink(shipped: tuple[Host, str]) -> None:
    host, grant_id = shipped
    ours = wait_for("the grant's end in the journal",
                    lambda: [e for e in _hostd_events(host)
                             if e.get("JIT_GRANT_ID") == grant_id] or None, timeout=30)
    assert {"membership_added", "grant_activated", "grant_revoked",
            "membership_removed"} <= {e["JIT_EVENT"] for e in ours}
    activated = next(e for e in ours if e["JIT_EVENT"] == "grant_activated")
    assert activated["JIT_REASON"] == 'ship it "now" \\\\ <script>x</script> é\\u2028\\nnext'

    def complete() -> list[dict] | None:
        lines = _sink(host)
        expected = _hostd_events(host)
        return lines if len(lines) >= len(expected) else None

    lines = wait_for(f"rsyslog writing {SINK}", complete, timeout=30)
    expected = _hostd_events(host)
    # everything hostd logged since boot, once each, in order (imjournal starts at the
    # journal's head the first time; the `stop` keeps other entries out)
    assert [e["JIT_EVENT"] for e in lines] == [e["JIT_EVENT"] for e in expected]
    for want, got in zip(expected, lines, strict=True):
        jit = {k: v for k, v in want.items() if k.startswith("JIT_")}
        assert {k: v for k, v in got.items() if k.startswith("JIT_")} == jit
        for key, value in want.items():
            if not key.startswith("__"):
                assert got.get(key) == value, (key, value, got.get(key))
        assert got["timestamp"]  # added by the example: the entry's time, RFC 3339
    assert any(e.get("JIT_GRANT_ID") == grant_id and e["JIT_EVENT"] == "grant_revoked"
               and e["JIT_APPROVER"] == "root" for e in lines)
    forged = [e for e in journal(host.box, "-t", "jit-hostd") if e.get("JIT_GRANT_ID") == "forged"]
    assert forged and forged[0]["_UID"] == "1001"  # it is in the journal, not in the sink
    assert not [e for e in lines if e.get("JIT_GRANT_ID") == "forged"]


def test_sink_is_private_and_syslog_gets_no_duplicates(shipped: tuple[Host, str]) -> None:
    host, grant_id = shipped
    box = host.box
    wait_for("the sink", lambda: _sink(host) or None, timeout=30)
    assert box.run(["stat", "-c", "%a %U %G", SINK]).stdout.split() == ["640", "root", "adm"]
    syslog = box.run(["cat", "/var/log/syslog"]).stdout
    assert syslog.count(f"grant {grant_id} activated") == 1


def test_report_of_the_real_journal(shipped: tuple[Host, str]) -> None:
    """The HTML report (hostd/audit/report.py) drawn from these real entries: the grant's
    bar is there, coloured as revoked, with who revoked it; the reason stays text."""
    host, grant_id = shipped
    entries = _hostd_events(host)
    page = render_html(entries, host="e2e", since=None, until=None)
    bar = re.search(r'<a href="#e\d+"><title>grant ' + grant_id + r'\n(.*?)</title>'
                    r'<rect class="bg ([\w-]+)', page, re.S)
    assert bar, f"no bar for {grant_id}"
    assert bar.group(2) == "g-revoked"
    assert "ended: revoked by root" in bar.group(1)
    assert "&lt;script&gt;x&lt;/script&gt;" in page and "<script" not in page
    assert page.count('<tr id="e') == len(entries)
