"""The audit page's timeline: one SVG with a time axis, then per user a band of grant
lanes (a bar per grant, coloured by how it ended) and tracks of marks (requests, sudo
commands, sessions and recordings, other events). Coordinates and class names are
chosen here, never taken from an event; event text enters only through `esc`."""

from __future__ import annotations

from datetime import UTC, datetime

from hostd.audit.markup import (
    AS_BARS,
    ENDINGS,
    REFUSALS,
    SESSION_EVENTS,
    clip,
    esc,
    lines,
    stamp,
    visible,
)
from hostd.audit.model import Event, Grant, Request

W, LABEL, PAD = 1200.0, 150.0, 16.0  # the timeline's viewBox width, user column, margin
BAR_H, BAR_GAP, TRACK_H = 18.0, 4.0, 11.0
BIN = 4.0  # marks of one kind closer than this (of W) on one track are drawn as one
TRACKS = ("requests", "commands", "sessions", "other")


def _nice_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                 21600, 43200, 86400, 172800, 604800, 1209600, 2592000):
        if span / step <= 10:
            return float(step)
    return 2592000.0 * max(1, round(span / 2592000 / 10))


def _tick_label(t: float, step: float, first: bool) -> str:
    d = datetime.fromtimestamp(t, UTC)
    if step >= 86400:
        return d.strftime("%Y-%m-%d")
    label = d.strftime("%H:%M:%S" if step < 60 else "%H:%M")
    if first or (d.hour == 0 and d.minute == 0 and d.second == 0):
        label = d.strftime("%m-%d ") + label
    return label


class Timeline:
    """One SVG: a time axis, then per user a band of grant lanes and mark tracks."""

    def __init__(self, t0: float, t1: float, rows: set[int]) -> None:
        self.t0, self.t1 = t0, max(t1, t0 + 1.0)
        self.rows = rows  # events listed in the table: marks link to their rows
        self._queued: dict[tuple[str, str, int], list] = {}
        self.out: list[str] = []
        self.ticks: list[float] = []
        self.y = 34.0
        self._tracks_top = self.y

    def x(self, t: float | None) -> float:
        t = self.t0 if t is None else min(max(t, self.t0), self.t1)
        return LABEL + (t - self.t0) / (self.t1 - self.t0) * (W - LABEL - PAD)

    def axis(self) -> None:
        step = _nice_step(self.t1 - self.t0)
        t = (self.t0 // step + 1) * step
        first = True
        self.out.append('<text x="10" y="14">time (UTC)</text>')
        while t < self.t1:
            x = self.x(t)
            self.ticks.append(x)
            self.out.append(f'<text x="{x:.1f}" y="14" text-anchor="middle">'
                            f'{esc(_tick_label(t, step, first))}</text>')
            first, t = False, t + step

    def mark(self, ev: Event, shape: str, cls: str, track: str, title: list[str]) -> None:
        """Queue a mark; marks of one kind closer than BIN on a track become one."""
        if ev.t is None or not self.t0 <= ev.t <= self.t1:
            return
        key = (track, cls, int(self.x(ev.t) // BIN))
        queued = self._queued.get(key)
        if queued is None:
            self._queued[key] = [ev, shape, title, 0, ev]
        else:
            queued[3] += 1
            queued[4] = ev

    def _flush(self) -> None:
        for (track, cls, _), (ev, shape, title, more, last) in self._queued.items():
            if more:
                title = [*title, f"and {more} more {last.kind} until {stamp(last.t)}"]
            self._draw(ev, shape, cls, track, title)
        self._queued.clear()

    def link(self, idx: int) -> str:
        """An anchor to the event's table row, if the table has it."""
        return f'<a href="#e{idx}">' if idx in self.rows else "<a>"

    def _draw(self, ev: Event, shape: str, cls: str, track: str, title: list[str]) -> None:
        x, y = self.x(ev.t), self.track_y(track)
        body = {
            "diamond": f'<path class="mark {cls}" d="M{x:.1f} {y - 5:.1f}l5 5-5 5-5-5z"/>',
            "tri": f'<path class="mark {cls}" d="M{x:.1f} {y - 5:.1f}l4.5 9h-9z"/>',
            "circle": f'<circle class="mark {cls}" cx="{x:.1f}" cy="{y:.1f}" r="5"/>',
            "dot": f'<circle class="mark {cls}" cx="{x:.1f}" cy="{y:.1f}" r="3.5"/>',
            "cross": f'<path class="mark m-term" d="M{x - 4:.1f} {y - 4:.1f}l8 8m0-8l-8 8"/>',
        }[shape]
        self.out.append(f'{self.link(ev.idx)}<title>{lines(title)}</title>{body}</a>')

    def track_y(self, track: str) -> float:
        return self._tracks_top + TRACKS.index(track) * TRACK_H + TRACK_H / 2

    def user(self, name: str, grants: list[Grant], evs: list[Event],
             reqs: list[Request], band: bool) -> None:
        lanes = _pack(grants)
        height = 10 + max(lanes, 1) * (BAR_H + BAR_GAP) + len(TRACKS) * TRACK_H + 8
        top = self.y
        if band:
            self.out.append(f'<rect class="band" x="0" y="{top:.1f}" width="{W:.0f}" '
                            f'height="{height:.1f}"/>')
        self.out.append(f'<line class="sep" x1="0" x2="{W:.0f}" y1="{top:.1f}" '
                        f'y2="{top:.1f}"/>')
        self.out.append(f'<text class="user" x="10" y="{top + 24:.1f}"><title>{esc(name)}'
                        f'</title>{esc(clip(visible(name), 18))}</text>')
        sudo = sum(1 for e in evs if e.kind.startswith("sudo_"))
        stats = [f"{n:,} {word}{'s' if n != 1 else ''}" for n, word in
                 ((len(grants), "grant"), (len(reqs), "request"), (sudo, "command"))
                 if n]
        for i, stat in enumerate(stats):
            self.out.append(f'<text class="stat" x="10" y="{top + 40 + 12 * i:.1f}">'
                            f'{esc(stat)}</text>')
        self._tracks_top = top + 10 + max(lanes, 1) * (BAR_H + BAR_GAP)
        for track in TRACKS:
            self.out.append(f'<text class="track" x="{LABEL - 8:.1f}" text-anchor="end" '
                            f'y="{self.track_y(track) + 3:.1f}">{track}</text>')
        for g in grants:
            self._bar(g, top + 10 + g.lane * (BAR_H + BAR_GAP))
        for r in reqs:
            self._request(r)
        self._marks(evs)
        self._flush()
        self.y = top + height

    def _bar(self, g: Grant, y: float) -> None:
        x0 = self.x(g.start)
        x1 = self.x(g.end if g.end is not None else self.t1)
        width = max(x1 - x0, 5.0)
        label, cls = ENDINGS[g.ending]
        extra = " breakglass" if g.breakglass else ""
        parts = [f"grant {g.id}", f"{g.user} held {g.role}" if g.role else g.user,
                 f"from {stamp(g.start)}" if g.start is not None else "from before the period",
                 f"to {stamp(g.end)}" if g.end is not None else "still live at the period's end",
                 f"ended: {label}" + (f" by {g.ended_by}" if g.ended_by else "")]
        if g.breakglass:
            parts.append("break-glass (self-service)")
        if g.request is not None:
            who = ", ".join(d.get("approver") for d in g.request.decisions
                            if d.kind == "request_approved")
            parts.append(f"request {g.request.id} approved by {who}")
        if g.reason:
            parts.append(f"reason: {g.reason}")
        self.out.append(f'{self.link(g.events[0].idx)}<title>{lines(parts)}</title>'
                        f'<rect class="bg {cls}{extra}" x="{x0:.1f}" y="{y:.1f}" '
                        f'width="{width:.1f}" height="{BAR_H:.0f}" rx="4"/>')
        if g.ending == "live" and (g.end is None):
            self.out.append(f'<path class="arrow" d="M{x0 + width:.1f} {y:.1f}l8 '
                            f'{BAR_H / 2:.0f}-8 {BAR_H / 2:.0f}z"/>')
        text = f"{g.role} · {g.id}" if g.role else g.id
        if len(text) * 6.4 + 10 < width:
            dark = " dark" if g.ending in ("open", "failed") else ""
            self.out.append(f'<text class="bar-label{dark}" x="{x0 + 6:.1f}" '
                            f'y="{y + 12.5:.1f}">{esc(text)}</text>')
        self.out.append("</a>")
        if g.request is not None and g.request.created is not None and g.start is not None:
            ry = self.track_y("requests")
            self.out.append(f'<line class="link" x1="{x0:.1f}" x2="{x0:.1f}" '
                            f'y1="{y + BAR_H:.1f}" y2="{ry - 5:.1f}"/>')

    def _request(self, r: Request) -> None:
        if r.first is None or r.created is None:
            for d in r.decisions:
                self._decision(r, d)
            return
        y = self.track_y("requests")
        ends = [d.t for d in r.decisions if d.t is not None]
        if ends:
            self.out.append(f'<line class="req" x1="{self.x(r.created):.1f}" '
                            f'x2="{self.x(max(ends)):.1f}" y1="{y:.1f}" y2="{y:.1f}"/>')
        title = [f"request {r.id}: {r.user} asked for {r.role} at {stamp(r.created)}",
                 f"outcome: {r.outcome}"] + ([f"reason: {r.reason}"] if r.reason else [])
        self.mark(r.first, "diamond", "m-req", "requests", title)
        for d in r.decisions:
            self._decision(r, d)

    def _decision(self, r: Request, d: Event) -> None:
        shape, cls, verb = {
            "request_approved": ("circle", "m-approve", "approved"),
            "request_denied": ("circle", "m-deny", "denied"),
        }.get(d.kind, ("dot", "m-expire", d.get("decision") or "expired"))
        who = d.get("approver")
        title = [f"request {r.id} {verb}" + (f" by {who}" if who else "") + f" at {stamp(d.t)}"]
        if d.get("reason"):
            title.append(f"comment: {d.get('reason')}")
        self.mark(d, shape, cls, "requests", title)

    def _marks(self, evs: list[Event]) -> None:
        spans: dict[tuple[str, str], list[Event]] = {}  # a session or a recording's events
        for ev in evs:
            if ev.kind in SESSION_EVENTS and ev.get("session_id"):
                spans.setdefault(("sess", ev.get("session_id")), []).append(ev)
            if ev.get("recording"):
                spans.setdefault(("rec", ev.get("recording")), []).append(ev)
        y = self.track_y("sessions")
        for (cls, ident), group in spans.items():
            times = [e.t for e in group if e.t is not None]
            if len(times) > 1:
                title = [f"{'session' if cls == 'sess' else 'recording'} {ident}",
                         f"{stamp(min(times))} to {stamp(max(times))}"]
                self.out.append(f'<line class="{cls}" x1="{self.x(min(times)):.1f}" '
                                f'x2="{self.x(max(times)):.1f}" y1="{y:.1f}" y2="{y:.1f}">'
                                f'<title>{lines(title)}</title></line>')
        for ev in evs:
            kind = ev.kind
            what = _describe(ev)
            if kind.startswith("sudo_"):
                cls = {"sudo_denied": "m-sudo-denied", "sudo_pending": "m-sudo-pending"}.get(
                    kind, "m-sudo")
                self.mark(ev, "tri", cls, "commands", what)
            elif kind in SESSION_EVENTS:
                self.mark(ev, "cross" if kind == "session_terminated" else "dot", "m-other",
                          "sessions", what)
            elif ev.get("recording"):
                self.mark(ev, "circle", "m-rec", "sessions", what)
            elif kind in REFUSALS:
                self.mark(ev, "diamond", "m-refused", "other", what)
            elif kind in AS_BARS:
                continue  # drawn as bars and request marks
            else:
                self.mark(ev, "dot", "m-other", "other", what)
            if ev.get("recording") and kind in SESSION_EVENTS:
                self.mark(ev, "circle", "m-rec", "sessions", what)

    def svg(self) -> str:
        grid = "".join(f'<line class="tick" x1="{x:.1f}" x2="{x:.1f}" y1="20" '
                       f'y2="{self.y:.1f}"/>' for x in self.ticks)
        return (f'<svg class="tl" viewBox="0 0 {W:.0f} {self.y + 4:.0f}" role="img" '
                f'aria-label="timeline of grants per user">{grid}{"".join(self.out)}</svg>')


def _pack(grants: list[Grant]) -> int:
    """Put overlapping grants on lanes of their own (first fit by start); returns lanes."""
    ends: list[float] = []
    for g in sorted(grants, key=lambda g: (g.start or 0, g.id)):
        start, end = g.start or float("-inf"), g.end if g.end is not None else float("inf")
        for lane, last in enumerate(ends):
            if last < start:
                g.lane, ends[lane] = lane, end
                break
        else:
            g.lane = len(ends)
            ends.append(end)
    return len(ends)


def _describe(ev: Event) -> list[str]:
    """A mark's hover text: what happened, with the ids an auditor looks up."""
    out = [f"{ev.kind} at {stamp(ev.t)}"]
    watch = ev.kind.startswith("session_watch") or ev.kind == "session_terminated"
    for label, name in (("command", "command"), ("as", "runas"), ("grant", "grant_id"),
                        ("request", "request_id"), ("session", "session_id"),
                        ("recording", "recording"), ("sha256", "recording_sha256"),
                        ("tty", "tty"), ("code", "code"), ("reason", "reason"),
                        ("by" if watch else "approver", "approver"), ("mode", "mode")):
        if ev.get(name):
            out.append(f"{label}: {ev.get(name)}")
    if len(out) == 1 and ev.f.get("MESSAGE"):
        out.append(ev.f["MESSAGE"])
    return out
