"""`jit audit --html FILE`: hostd's events as one self-contained page an auditor can read
at a glance: a timeline per user (a bar for each grant, coloured by how it ended;
requests, sudo commands, sessions and recordings as marks) over plain tables.

The page fetches nothing: no script, no font, no image, no URL but `#` anchors; its
Content-Security-Policy says `default-src 'none'` and admits only its own style block
(by hash). Every value from the journal is text: control and format characters are
made visible, then `html.escape(quote=True)`, and no value ever reaches a style,
script or URL context; class names and coordinates are chosen here, never taken from
an event. Event types this module does not know render as generic marks.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time

from hostd.audit.markup import ENDINGS, REFUSALS, code, esc, stamp
from hostd.audit.model import Event, Grant, Request, build_grants, build_requests, to_event
from hostd.audit.timeline import Timeline

MAX_ROWS = 5000  # the event table's length: a browser lays out 100,000 rows in minutes

CSS = """\
:root{--ink:#1d2433;--muted:#5b6478;--line:#e3e6ee;--bg:#f6f7fb;--card:#fff;
--expired:#2f6fb0;--revoked:#e08a00;--failed:#c8312b;--live:#1b9e68;--open:#9aa3b5}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header{background:#1d2433;color:#fff;padding:22px 32px 18px}
header h1{margin:0;font-size:22px;font-weight:600;letter-spacing:.2px}
header .sub{color:#b9c1d6;margin-top:4px}
main{padding:20px 32px 40px;max-width:1500px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:16px 20px;margin:0 0 20px;box-shadow:0 1px 2px rgba(20,30,60,.05)}
h2{font-size:16px;margin:0 0 12px;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:0 0 20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:10px 16px;min-width:140px}
.card b{display:block;font-size:24px;font-weight:600}
.card span{color:var(--muted);font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;color:var(--muted);font-size:12px;
margin:0 0 10px}
.legend svg{vertical-align:middle;margin-right:5px}
svg.tl{width:100%;height:auto;display:block}
.tl text{font-size:11px;fill:var(--muted)}
.tl .user{font-size:13px;fill:var(--ink);font-weight:600}
.tl .bar-label{fill:#fff;font-size:11px;font-weight:600;pointer-events:none}
.tl .bar-label.dark{fill:#1d2433;paint-order:stroke;stroke:#fff;stroke-width:3px}
.tl .tick{stroke:var(--line)}
.tl .band{fill:rgba(40,60,120,.035)}
.tl .sep{stroke:var(--line)}
.tl .stat{font-size:10px;fill:#7a8398}
.tl .track{font-size:9px;fill:#a0a8ba}
.g-expired{fill:var(--expired)}.g-revoked{fill:var(--revoked)}
.g-failed{fill:url(#hatch-failed)}.g-live{fill:var(--live)}.g-open{fill:url(#hatch-open)}
.bg{stroke:#fff;stroke-width:1}
.breakglass{stroke:#7a0c0c;stroke-width:2.5;stroke-dasharray:5 3}
a:hover .bg,a:hover .mark{stroke:#111;stroke-width:2}
.arrow{fill:var(--live)}
.req{stroke:#7c5cbf;stroke-width:1.5;stroke-dasharray:3 2}
.m-req{fill:#fff;stroke:#7c5cbf;stroke-width:1.5}
.m-approve{fill:#1b9e68}.m-deny{fill:#c8312b}.m-expire{fill:#9aa3b5}
.m-sudo{fill:#1d2433}.m-sudo-denied{fill:#c8312b}.m-sudo-pending{fill:#e08a00}
.sess{stroke:#7c5cbf;stroke-width:3;stroke-linecap:round}
.m-rec{fill:#c8312b;stroke:#fff;stroke-width:1.5}
.rec{stroke:#c8312b;stroke-width:1.5;stroke-dasharray:4 2}
.m-refused{fill:#c8312b}.m-other{fill:#8a93a8}.m-term{stroke:#c8312b;stroke-width:2}
.link{stroke:#7c5cbf;stroke-width:1;stroke-dasharray:2 2}
table{border-collapse:collapse;width:100%;font-size:12.5px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line);
padding:6px 8px;white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
td.t{white-space:nowrap;font-variant-numeric:tabular-nums;color:var(--muted)}
td.x{word-break:break-all;max-width:520px}
code{font:12px/1.4 "DejaVu Sans Mono",ui-monospace,monospace;background:#f1f3f8;
border-radius:4px;padding:1px 4px}
tr:target{background:#fff6d6}
.pill{display:inline-block;border-radius:9px;padding:0 8px;font-size:11.5px;color:#fff}
.p-expired{background:var(--expired)}.p-revoked{background:var(--revoked)}
.p-failed{background:var(--failed)}.p-live{background:var(--live)}
.p-open{background:var(--open)}
.ev{display:inline-block;border-radius:4px;padding:0 6px;background:#eef0f6;
font-size:11.5px;white-space:nowrap}
.empty{color:var(--muted);font-style:italic}
.note{background:#fff6d6;border-radius:6px;padding:8px 12px;margin:0 0 12px}
svg.defs{position:absolute}
footer{color:var(--muted);font-size:12px;padding:0 32px 30px}
@media print{body{background:#fff}section{box-shadow:none;break-inside:avoid}}
"""

DEFS = (
    '<defs><pattern id="hatch-failed" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#c8312b"/>'
    '<rect width="2" height="6" fill="#f0a19d"/></pattern>'
    '<pattern id="hatch-open" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#9aa3b5"/>'
    '<rect width="2" height="6" fill="#d5d9e3"/></pattern></defs>'
)



# how a request ended, as `jit requests` names it (a cancelled one: withdrawn or Ctrl-C)
REQUEST_OUTCOMES = ("approved", "denied", "expired", "cancelled", "break-glass", "pending")


def _natural(name: str) -> list:
    """user2 before user10."""
    return [(0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
            for part in re.split(r"([0-9]+)", name)]


def _legend() -> str:
    items = [f'<span><svg width="26" height="12"><rect class="{cls}" width="26" '
             f'height="12" rx="3"/></svg>grant {label}</span>'
             for label, cls in ENDINGS.values()]
    items.append('<span><svg width="26" height="12"><rect class="g-expired breakglass" '
                 'x="2" y="1" width="22" height="10" rx="3"/></svg>break-glass</span>')
    for shape, cls, label in (("diamond", "m-req", "request"),
                              ("circle", "m-approve", "approved"),
                              ("circle", "m-deny", "denied"),
                              ("tri", "m-sudo", "sudo allowed"),
                              ("tri", "m-sudo-denied", "sudo denied"),
                              ("tri", "m-sudo-pending", "sudo pending"),
                              ("circle", "m-rec", "recording"),
                              ("diamond", "m-refused", "refused"),
                              ("dot", "m-other", "other event")):
        d = {"diamond": '<path class="{c}" d="M7 1l5 5-5 5-5-5z"/>',
             "tri": '<path class="{c}" d="M7 1.5l4.5 9h-9z"/>',
             "circle": '<circle class="{c}" cx="7" cy="6" r="5"/>',
             "dot": '<circle class="{c}" cx="7" cy="6" r="3.5"/>'}[shape]
        items.append(f'<span><svg width="14" height="12">{d.format(c=cls)}</svg>'
                     f'{label}</span>')
    items.append('<span><svg width="26" height="12"><line class="sess" x1="3" x2="23" '
                 'y1="6" y2="6"/></svg>session</span>')
    items.append('<span><svg width="26" height="12"><line class="rec" x1="3" x2="23" '
                 'y1="6" y2="6"/></svg>recorded</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _cards(grants: dict[str, Grant], reqs: dict[str, Request], evs: list[Event],
           users: list[str]) -> str:
    count = {k: sum(1 for g in grants.values() if g.ending == k) for k in ENDINGS}
    sudo = [e for e in evs if e.kind.startswith("sudo_")]
    recs = {e.get("recording") for e in evs if e.get("recording")}
    refused = sum(1 for e in evs if e.kind in REFUSALS)
    cards = [
        (len(users), "users"),
        (len(grants), f"grants · {count['expired']} expired, {count['revoked']} revoked, "
                      f"{count['failed']} failed, {count['live']} live"),
        (len(reqs), "requests · " + ", ".join(  # every outcome: the counts add up
            f"{sum(1 for r in reqs.values() if r.outcome == o)} {o}"
            for o in REQUEST_OUTCOMES + tuple(sorted(
                {r.outcome for r in reqs.values()} - set(REQUEST_OUTCOMES))))),
        (len(sudo), f"sudo commands · {sum(1 for e in sudo if e.kind == 'sudo_denied')} "
                    "denied"),
        (len(recs), "recordings"),
        (refused, "refusals"),
        (len(evs), "events"),
    ]
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{n:,}</b><span>{esc(label)}</span></div>'
        for n, label in cards) + "</div>"


def _grant_table(grants: list[Grant], listed: set[int]) -> str:
    if not grants:
        return '<p class="empty">No grants in this period.</p>'
    rows = []
    for g in grants:
        label, _ = ENDINGS[g.ending]
        approved = ""
        if g.request is not None:
            approved = ", ".join(f"{d.get('approver')} at {stamp(d.t)}"
                                 for d in g.request.decisions
                                 if d.kind == "request_approved")
            approved = f"{g.request.id}: {approved}" if approved else g.request.id
        first = g.events[0].idx
        grant = f'<a href="#e{first}">{code(g.id)}</a>' if first in listed else code(g.id)
        rows.append(
            f"<tr><td>{grant}</td>"
            f"<td>{esc(g.user)}</td><td>{esc(g.role)}</td>"
            f'<td class="t">{esc(stamp(g.start) if g.start else "before the period")}</td>'
            f'<td class="t">{esc(stamp(g.end) if g.end else "")}</td>'
            f'<td><span class="pill p-{g.ending}">{esc(label)}</span>'
            f'{" break-glass" if g.breakglass else ""}</td>'
            f"<td>{esc(g.ended_by)}</td><td>{esc(approved)}</td>"
            f'<td class="x">{esc(g.reason)}</td></tr>')
    return ("<table><thead><tr><th>grant</th><th>user</th><th>role</th><th>from</th>"
            "<th>to</th><th>ended</th><th>by</th><th>request, approved by</th>"
            "<th>reason</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _request_table(reqs: list[Request]) -> str:
    if not reqs:
        return '<p class="empty">No requests in this period.</p>'
    rows = []
    for r in reqs:
        decided = "; ".join(
            f"{d.get('approver') or 'hostd'} {d.get('decision') or d.kind} at {stamp(d.t)}"
            for d in r.decisions)
        rows.append(
            f"<tr><td>{code(r.id)}</td><td>{esc(r.user)}</td>"
            f'<td>{esc(r.role)}</td><td class="t">{esc(stamp(r.created))}</td>'
            f"<td>{esc(r.outcome)}</td><td>{esc(decided)}</td>"
            f"<td>{code(r.grant_id)}</td>"
            f'<td class="x">{esc(r.reason)}</td></tr>')
    return ("<table><thead><tr><th>request</th><th>user</th><th>role</th><th>asked</th>"
            "<th>outcome</th><th>decisions</th><th>grant</th><th>reason</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _event_table(evs: list[Event], total: int) -> str:
    if not evs:
        return '<p class="empty">No events in this period.</p>'
    note = ""
    if total > len(evs):
        note = (f'<p class="note">The table lists the first {len(evs):,} of {total:,} events; '
                "the timeline, grants and requests above cover them all. For the rest, "
                "narrow the period (<code>--since</code>, <code>--until</code>) or read "
                "<code>jit audit --json</code>.</p>")
    rows = []
    for ev in evs:
        detail = []
        for label, name in (("command", "command"), ("as", "runas"), ("session", "session_id"),
                            ("recording", "recording"), ("code", "code"),
                            ("groups", "groups"), ("mode", "mode"), ("reason", "reason")):
            if ev.get(name):
                detail.append(f"<b>{label}</b> {code(ev.get(name))}")
        if not detail and ev.f.get("MESSAGE"):
            detail.append(esc(ev.f["MESSAGE"]))
        rows.append(
            f'<tr id="e{ev.idx}"><td class="t">{esc(stamp(ev.t))}</td>'
            f'<td><span class="ev">{esc(ev.kind)}</span></td><td>{esc(ev.get("user"))}</td>'
            f'<td>{esc(ev.get("role"))}</td><td>{code(ev.get("grant_id"))}</td>'
            f'<td>{code(ev.get("request_id"))}</td>'
            f'<td>{esc(ev.get("approver"))}</td><td>{esc(ev.get("decision"))}</td>'
            f'<td class="x">{" ".join(detail)}</td></tr>')
    return (note + "<table><thead><tr><th>time (UTC)</th><th>event</th><th>user</th><th>role</th>"
            "<th>grant</th><th>request</th><th>approver</th><th>decision</th>"
            "<th>details</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def content_security_policy() -> str:
    """Nothing may load; the one style block is admitted by its hash."""
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; base-uri 'none'; "
            "form-action 'none'")


def _period(evs: list[Event], grants: dict[str, Grant], ref: float, since: float | None,
            until: float | None) -> tuple[float, float]:
    """The timeline's span for these events and grants (see `_window`)."""
    live_ends = [min(g.not_after or ref, ref) for g in grants.values() if g.ending == "live"]
    return _window([e.t for e in evs if e.t is not None], live_ends, since, until, ref)


def _window(times: list[float], live_ends: list[float], since: float | None,
            until: float | None, ref: float) -> tuple[float, float]:
    """The timeline's span: the events shown (and live grants up to now), inside
    [since, until] but no wider, so `--since -7d` on a host with today's events only does
    not squeeze them into one pixel column; a little room on each side."""
    if not times:
        return (since if since is not None else ref - 3600), (until if until is not None
                                                              else ref)
    first, last = min(times), max([*times, *live_ends])
    t0 = first if since is None else max(since, first)
    t1 = last if until is None else min(until, last)
    pad = max(t1 - t0, 60.0) * 0.02
    t0 = t0 - pad if since is None else max(since, t0 - pad)
    t1 = t1 + pad if until is None else min(until, t1 + pad)
    return t0, max(t1, t0 + 60.0)


def _timeline(evs: list[Event], grants: dict[str, Grant], reqs: dict[str, Request],
              users: list[str], span: tuple[float, float], rows: set[int]) -> str:
    """The SVG: host-wide events first (no user), then a band per user."""
    tl = Timeline(span[0], span[1], rows)
    tl.axis()
    by_user: dict[str, list[Event]] = {}
    for e in evs:
        by_user.setdefault(e.get("user"), []).append(e)
    if by_user.get(""):
        tl.user("(host)", [], by_user[""], [], band=True)
    for i, user in enumerate(users):
        tl.user(user, [g for g in grants.values() if g.user == user], by_user.get(user, []),
                [r for r in reqs.values() if r.user == user],
                band=(i + bool(by_user.get(""))) % 2 == 0)
    return tl.svg()


def _head(title: str, period: str) -> str:
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy()}">',
        '<meta name="referrer" content="no-referrer">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        f'<svg class="defs" width="0" height="0" aria-hidden="true">{DEFS}</svg>',
        f"<header><h1>{esc(title)}</h1><div class=\"sub\">Who held which role, when, "
        f"and what they ran · {esc(period)} · generated {esc(stamp(time.time()))} UTC"
        "</div></header><main>"])


def render_html(events: list[dict], *, host: str, since: float | None,
                until: float | None) -> str:
    """The whole page for `events` (journal entries as `journalctl -o json` gives them)
    of `host` in [since, until]; None means open on that side."""
    evs = sorted((to_event(i, raw) for i, raw in enumerate(events)),
                 key=lambda e: (e.t is None, e.t or 0.0, e.idx))
    ref = until if until is not None else time.time()
    grants = build_grants(evs, ref)
    reqs = build_requests(evs, grants)
    users = sorted({e.get("user") for e in evs if e.get("user")} |
                   {g.user for g in grants.values() if g.user}, key=_natural)
    listed = evs[:MAX_ROWS]
    rows = {e.idx for e in listed}
    grant_list = sorted(grants.values(), key=lambda g: (g.start or 0, g.id))
    req_list = sorted(reqs.values(), key=lambda r: (r.created or 0, r.id))
    period = (f"{stamp(since) if since is not None else 'the first event'} to "
              f"{stamp(until) if until is not None else 'the last event'} UTC")
    timeline = (_timeline(evs, grants, reqs, users, _period(evs, grants, ref, since, until),
                          rows) if evs else '<p class="empty">No events in this period.</p>')
    return "".join([
        _head(f"jitaccess audit: {host}", period),
        _cards(grants, reqs, evs, users),
        '<section><h2>Timeline</h2>', _legend(), timeline, "</section>",
        f"<section><h2>Grants ({len(grant_list):,})</h2>{_grant_table(grant_list, rows)}</section>",
        f"<section><h2>Requests ({len(req_list):,})</h2>{_request_table(req_list)}</section>",
        f"<section><h2>Events ({len(evs):,})</h2>{_event_table(listed, len(evs))}</section>",
        "</main><footer>Generated by <code>jit audit --html</code> from the journal of "
        f"{esc(host)}. Self-contained: this page loads nothing.</footer></body></html>\n",
    ])
