"""`jit audit --html`: the page rendered from a synthetic event stream, checked as text
and in a real browser (Debian's headless chromium).

What the browser runs prove:
- the screenshot is not blank, and the grant bars carry their ending's colour: the style
  block was applied under the page's own Content-Security-Policy (its hash is right);
- the DOM chromium built holds every grant id of the period, only the elements and
  attributes the renderer writes (no injected element or attribute: hostile reasons,
  command lines and control characters are text), and no URL but `#` anchors;
- nothing was fetched: chromium runs behind a logging proxy (so nothing leaves this
  machine) with a net log, and no request in it came from the page; every request the
  proxy saw is one of the browser's own background requests. Two control pages show the
  harness would see a fetch: an `<img>` with an http URL is fetched without the page's
  CSP and blocked with it.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from hostd.audit.report import ENDINGS, content_security_policy, render_html  # noqa: E402
from hostd.events import EVENT_TYPES  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp()
SINCE, UNTIL = T0 - 600, T0 + 4 * 3600

XSS_SCRIPT = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(2)>'
XSS_SVG = "</text></svg><svg onload=alert(3)><a href=\"javascript:alert(4)\">x</a>"
CONTROL = "done \x1b[31m\u202eevil\x00\n"  # as a writer other than hostd might log it
HOSTILE = (XSS_SCRIPT, XSS_ATTR, XSS_SVG)

# grant id -> how it ends in the stream below
GRANTS = {
    "a1b2c3d4e5f6": "expired",   # activated before the period
    "111111111111": "expired",
    "222222222222": "failed",
    "333333333333": "revoked",   # from request req2abcd, approved by bob
    "444444444444": "live",      # break-glass
    "555555555555": "open",      # its end is not in the journal
}


def ev(minutes: float, kind: str, **fields: str) -> dict[str, str]:
    """One entry as `journalctl -o json` prints it."""
    known = EVENT_TYPES.get(kind)
    entry = {"MESSAGE": f"{kind} happened",
             "MESSAGE_ID": known.message_id if known else "0" * 32,
             "SYSLOG_IDENTIFIER": "jit-hostd", "_HOSTNAME": "web-1", "PRIORITY": "5",
             "__REALTIME_TIMESTAMP": str(int((T0 + minutes * 60) * 1e6)), "JIT_EVENT": kind}
    entry.update({"JIT_" + k.upper(): v for k, v in fields.items()})
    return entry


def stream() -> list[dict[str, str]]:
    """Four users, grants ending every way, requests, sudo commands, a recorded session,
    event types this renderer does not know, hostile text everywhere a user types."""
    return [
        ev(-2, "hostd_started"),
        ev(3, "grant_expired", user="dave", role="db", grant_id="a1b2c3d4e5f6", issuer="corp",
           not_after="2026-11-30T08:03:00Z"),
        ev(5, "membership_added", user="alice", role="docker", grant_id="111111111111",
           issuer="corp", groups="docker", not_after="2026-11-30T09:05:00Z"),
        ev(5, "grant_activated", user="alice", role="docker", grant_id="111111111111",
           issuer="corp", not_after="2026-11-30T09:05:00Z", reason="deploy " + XSS_SCRIPT),
        ev(12, "sudo_allowed", user="alice", grant_id="111111111111", role="docker",
           command="/usr/bin/systemctl restart nginx", runas="root"),
        ev(20, "sudo_denied", user="alice", command="/bin/sh -c " + XSS_SCRIPT, runas="root",
           code="not_allowed", reason=XSS_ATTR),
        ev(22, "sudo_pending", user="alice", command="/usr/bin/rm -rf " + XSS_SVG,
           runas="root", request_id="cmdreq01"),
        ev(25, "session_opened", user="alice", session_id="s-42", tty="pts/1",
           recording="0123456789abcdef"),
        ev(50, "session_closed", user="alice", session_id="s-42", recording="0123456789abcdef"),
        ev(51, "recording_closed", user="alice", session_id="s-42",
           recording="0123456789abcdef", recording_sha256="ab" * 32),
        ev(65, "grant_expired", user="alice", role="docker", grant_id="111111111111",
           issuer="corp"),
        ev(30, "membership_added", user="bob", role="docker", grant_id="222222222222",
           issuer="corp", groups="docker"),
        ev(30.1, "membership_removed", user="bob", role="docker", grant_id="222222222222",
           issuer="corp", groups="docker"),
        ev(31, "grant_refused", user="bob", code="expired", reason="grant has already ended"),
        ev(120, "request_created", user="alice", role="docker", request_id="req2abcd",
           reason="fix prod " + XSS_SCRIPT),
        ev(123, "request_approved", user="alice", role="docker", request_id="req2abcd",
           approver="bob", decision="approve", reason=XSS_ATTR),
        ev(123.01, "grant_activated", user="alice", role="docker", grant_id="333333333333",
           issuer="host", not_after="2026-11-30T11:03:00Z"),
        ev(140, "sudo_allowed", user="alice", grant_id="333333333333", command="/usr/bin/id",
           runas="root"),
        ev(160, "grant_revoked", user="alice", role="docker", grant_id="333333333333",
           issuer="host", approver="bob", reason=CONTROL),
        ev(180, "breakglass", user="carol", role="docker", grant_id="444444444444",
           request_id="req4brkg", reason="outage"),
        ev(180, "grant_activated", user="carol", role="docker", grant_id="444444444444",
           issuer="host", not_after="2026-11-30T13:00:00Z"),
        ev(90, "request_created", user="carol", role="docker", request_id="req5deny",
           reason="curious"),
        ev(95, "request_denied", user="carol", role="docker", request_id="req5deny",
           approver="bob", decision="deny", reason=XSS_SVG),
        ev(100, "request_created", user="carol", role="docker", request_id="req6expi"),
        ev(160, "request_expired", user="carol", role="docker", request_id="req6expi",
           decision="expired"),
        ev(40, "grant_activated", user="dave", role="db", grant_id="555555555555",
           issuer="corp", not_after="2026-11-30T09:30:00Z"),
        ev(200, "privilege_residue", user="dave", grant_id="555555555555",
           reason="still in group db"),
        ev(210, "login_refused", user="bob", reason=XSS_SCRIPT),
        ev(212, "login_refused", user=XSS_SVG, reason="a user name from elsewhere"),
        ev(215, "config_error", reason="bad " + XSS_ATTR),
        ev(220, "recording_started", user="carol", recording="fedcba9876543210"),
    ]


# ---- reading a page --------------------------------------------------------------------

ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "div", "span",
    "main", "section", "b", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "a",
    "footer", "svg", "defs", "pattern", "rect", "path", "circle", "line", "text", "g",
}
ALLOWED_ATTRS = {
    "lang", "charset", "http-equiv", "content", "name", "class", "id", "href", "role",
    "aria-label", "aria-hidden", "viewbox", "width", "height", "x", "y", "x1", "x2", "y1",
    "y2", "cx", "cy", "r", "rx", "d", "fill", "text-anchor", "patternunits",
    "patterntransform",
}


@dataclass
class Page:
    """What a page is made of: every element with its attributes, and its text."""

    elements: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    styles: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append((tag, {k: v or "" for k, v in attrs}))
        self._in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.page.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        (self.page.styles if self._in_style else self.page.text).append(data)


def read(document: str) -> Page:
    reader = _Reader()
    reader.feed(document)
    reader.close()
    return reader.page


def assert_inert(page: Page) -> None:
    """Only the renderer's own elements and attributes; no URL but `#` anchors."""
    tags = {tag for tag, _ in page.elements}
    assert tags <= ALLOWED_TAGS, f"unexpected elements: {tags - ALLOWED_TAGS}"
    for tag, attrs in page.elements:
        assert set(attrs) <= ALLOWED_ATTRS, f"unexpected attributes on {tag}: {attrs}"
        if "href" in attrs:
            assert re.fullmatch(r"#e[0-9]+", attrs["href"]), attrs
    ids = [attrs["id"] for _, attrs in page.elements if "id" in attrs]
    for _, attrs in page.elements:
        if "href" in attrs:
            assert attrs["href"][1:] in ids, f"dangling anchor {attrs['href']}"
    style = "".join(page.styles)
    assert "@import" not in style
    assert set(re.findall(r"url\(([^)]*)\)", style)) <= {"#hatch-failed", "#hatch-open"}
    csp = [a["content"] for t, a in page.elements
           if t == "meta" and a.get("http-equiv", "").lower() == "content-security-policy"]
    assert csp == [content_security_policy()]
    assert "default-src 'none'" in csp[0]


def assert_hostile_text_is_text(page: Page) -> None:
    text = "".join(page.text)
    for hostile in HOSTILE:
        assert hostile in text, f"{hostile!r} not shown as text"
    # control and bidi characters are shown, never passed on
    assert "done \\x1b[31m\\u202eevil\\x00\\n" in text
    for raw in ("\x1b", "\u202e", "\x00"):
        assert raw not in text


# ---- the page as text ------------------------------------------------------------------

@pytest.fixture(scope="module")
def document() -> str:
    return render_html(stream(), host="web-1", since=SINCE, until=UNTIL)


def test_page_is_inert_and_self_contained(document: str) -> None:
    page = read(document)
    assert_inert(page)
    assert_hostile_text_is_text(page)
    assert "<script" not in document and "<img" not in document
    assert "javascript:" not in document.replace("javascript:alert(4)", "")


def test_every_grant_is_drawn_with_its_ending(document: str) -> None:
    page = read(document)
    bars = [attrs["class"].split() for tag, attrs in page.elements
            if tag == "rect" and "bg" in attrs.get("class", "").split()]
    drawn = sorted(cls for classes in bars for cls in classes if cls.startswith("g-"))
    assert drawn == sorted(ENDINGS[e][1] for e in GRANTS.values())
    assert sum("breakglass" in classes for classes in bars) == 1
    text = "".join(page.text)
    for grant_id in GRANTS:
        assert grant_id in text


def test_requests_approvers_and_marks(document: str) -> None:
    text = "".join(read(document).text)
    assert "request req2abcd approved by bob" in text  # the revoked grant's hover text
    assert "req2abcd: bob at 2026-11-30 10:03:00" in text  # the grants table
    assert "bob deny at 2026-11-30 09:35:00" in text
    assert "recording: 0123456789abcdef" in text
    assert "recording: fedcba9876543210" in text  # an event type not known here
    assert "privilege_residue at 2026-11-30 11:20:00" in text
    assert "command: /usr/bin/systemctl restart nginx" in text
    # the session and its recording as spans, from the first event to the last
    assert "session s-42\n2026-11-30 08:25:00 to 2026-11-30 08:50:00" in text
    assert "recording 0123456789abcdef\n2026-11-30 08:25:00 to 2026-11-30 08:51:00" in text


def test_host_name_and_empty_period_are_escaped() -> None:
    document = render_html([], host=XSS_ATTR, since=None, until=None)
    page = read(document)
    assert_inert(page)
    assert XSS_ATTR in "".join(page.text)
    assert "No events in this period." in "".join(page.text)


# ---- in chromium -----------------------------------------------------------------------

class Proxy:
    """An HTTP proxy that answers 502 to everything and writes down each request line."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.seen.append(conn.recv(65536).split(b"\r\n")[0].decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
                except OSError:
                    self.seen.append("?")

    def close(self) -> None:
        self.sock.close()


@dataclass
class Run:
    stdout: str
    requests: list[dict]  # from the net log: url, initiator
    proxied: list[str]


def chromium(page: Path, *args: str) -> Run:
    """One headless chromium run on `page`, behind a fresh logging proxy, with a net log
    and a new empty profile."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is a test dependency (install-deps)"
    work = Path(tempfile.mkdtemp(prefix="jit-chromium-"))
    proxy = Proxy()
    try:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={work / 'profile'}",
             f"--proxy-server=http://127.0.0.1:{proxy.port}", "--proxy-bypass-list=<-loopback>",
             f"--log-net-log={work / 'net.json'}", "--hide-scrollbars", *args,
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=90, check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return Run(proc.stdout, _requests(work / "net.json"), list(proxy.seen))
    finally:
        proxy.close()
        shutil.rmtree(work, ignore_errors=True)


def _requests(path: Path) -> list[dict]:
    """Every URL request in a chromium net log, with the origin that started it
    (`not an origin` for the browser's own background requests)."""
    text = path.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:  # cut short at exit: close the event list
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"] for e in log["events"]
            if e["type"] == start_job and "url" in e.get("params", {})]


def _from_page(run: Run) -> list[dict]:
    return [r for r in run.requests if r.get("initiator") != "not an origin"]


def _accounted(run: Run) -> list[str]:
    """Proxied request lines that are not among the browser's own requests."""
    own = {r["url"] for r in run.requests if r.get("initiator") == "not an origin"}
    hosts = {re.sub(r"^\w+://([^/:]+).*$", r"\1", u) for u in own}
    extra = []
    for line in run.proxied:
        method, _, rest = line.partition(" ")
        target = rest.split(" ")[0]
        host = target.split(":")[0] if method == "CONNECT" else re.sub(
            r"^\w+://([^/:]+).*$", r"\1", target)
        if target not in own and host not in hosts:
            extra.append(line)
    return extra


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, document: str) -> Path:
    path = tmp_path_factory.mktemp("audit") / "audit.html"
    path.write_text(document, encoding="utf-8")
    return path


def test_chromium_dom_holds_every_grant_and_only_text(rendered: Path) -> None:
    run = chromium(rendered, "--dump-dom")
    page = read(run.stdout)
    assert_inert(page)
    assert_hostile_text_is_text(page)
    text = "".join(page.text)
    for grant_id in GRANTS:
        assert grant_id in text
    assert not _from_page(run), _from_page(run)
    assert not _accounted(run), run.proxied


def png_pixels(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit RGB/RGBA PNG (what chromium writes) with zlib: rows of pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                           ) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def test_chromium_screenshot_is_not_blank_and_styled(rendered: Path,
                                                      tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    run = chromium(rendered, f"--screenshot={shot}", "--window-size=1280,900")
    width, height, rows, bpp = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 900)
    colours: dict[tuple[int, ...], int] = {}
    for row in rows:
        for x in range(0, width * bpp, bpp):
            px = tuple(row[x:x + 3])
            colours[px] = colours.get(px, 0) + 1
    assert len(colours) > 200, f"only {len(colours)} colours: blank?"
    background = max(colours.values())
    assert background < 0.8 * width * height, "one colour covers most of the page"
    # the bars' fills come from the style block: drawn, so it was allowed by the CSP
    for name, rgb in (("expired", (0x2F, 0x6F, 0xB0)), ("revoked", (0xE0, 0x8A, 0x00)),
                      ("live", (0x1B, 0x9E, 0x68)), ("header", (0x1D, 0x24, 0x33))):
        assert colours.get(rgb, 0) > 100, f"no {name} colour {rgb} in the screenshot"
    assert not _from_page(run), _from_page(run)
    assert not _accounted(run), run.proxied


def test_harness_sees_a_fetch_and_the_csp_blocks_it(tmp_path: Path, document: str) -> None:
    """Controls: the same page with an injected http <img>, with and without its CSP."""
    url = "http://jit-audit-control.invalid/pixel.png"
    injected = document.replace("<main>", f'<main><img src="{url}">', 1)
    with_csp = tmp_path / "with-csp.html"
    with_csp.write_text(injected)
    without = tmp_path / "without-csp.html"
    without.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "",
                              injected))
    fetched = chromium(without, "--dump-dom")
    assert url in [r["url"] for r in _from_page(fetched)], fetched.requests
    assert f"GET {url} HTTP/1.1" in fetched.proxied
    blocked = chromium(with_csp, "--dump-dom")
    assert not _from_page(blocked), blocked.requests
    assert not any(url in line for line in blocked.proxied)
