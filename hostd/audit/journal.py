"""`jit audit`: hostd's events read back from journald, filtered, and who held what when.

Events are found by journald's own indexes (python-systemd's journal.Reader matched on
_UID=0, SYSLOG_IDENTIFIER and the JIT_* filter fields; the catalog's MESSAGE_IDs by
journald for --event, else on each entry read), never by parsing text. Each event comes
out as one dict shaped like a line of `journalctl -o json` restricted to our fields
(JIT_*, MESSAGE, MESSAGE_ID, PRIORITY, SYSLOG_IDENTIFIER, _HOSTNAME, __REALTIME_TIMESTAMP
in microseconds as a decimal string), which is what `--json` prints and what the
exporters (audit_export.py) and the HTML report take.

The reading loop is the hot path (goal: 100,000 events in 2 s, benchmarks/audit.py):
it calls the Reader's C methods (`_next`, `_get_all`, `_get_realtime`) directly instead
of `get_next()`, whose per-field Python converters cost more than the journal itself.
"""

from __future__ import annotations

import grp
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hostd.audit import scheduled as audit_scheduled
from hostd.errors import JitError
from hostd.events import EVENT_TYPES, columns, cut, escape
from hostd.policy.durations import parse_duration, parse_time
from hostd.state.journal import read_mirror

# Who writes our events. hostd is the only writer today; a recorder or PAM module that
# logs under its own identifier is added here (journald ORs values of one field).
IDENTIFIERS = ("jit-hostd",)
# Besides root, journald lets these groups read the system journal (journal ACLs).
READER_GROUPS = ("adm", "systemd-journal")
# The fields kept from a journal entry, besides every JIT_* field.
KEPT = frozenset({"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "_HOSTNAME"})

GRANT_START = ("grant_activated",)
GRANT_END = ("grant_expired", "grant_revoked")


class AuditError(JitError):
    """Bad input to `jit audit` (exit code 2): names what is wrong."""

    def __init__(self, message: str) -> None:
        super().__init__("usage", message)


@dataclass
class Query:
    """What to read: a time window (epoch seconds) and exact JIT_* values to match."""

    since: float | None = None
    until: float | None = None
    users: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    matches: dict[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        unknown = [e for e in self.events if e not in EVENT_TYPES]
        if unknown:
            raise AuditError(f"unknown event type {escape(unknown[0])!r}; known: "
                             + ", ".join(sorted(EVENT_TYPES)))
        self.matches = {"JIT_USER": self.users, "JIT_ROLE": self.roles,
                        "JIT_GRANT_ID": self.grants}

    def message_ids(self) -> list[str]:
        names = self.events or tuple(EVENT_TYPES)
        return [EVENT_TYPES[n].message_id for n in names]

    def accepts(self, event: dict[str, str]) -> bool:
        """The same filter in Python, for sources without journald's indexes (the
        sandbox mirror, synthetic streams in tests)."""
        if event.get("MESSAGE_ID") not in self._ids_set():
            return False
        at = int(event.get("__REALTIME_TIMESTAMP", "0")) / 1e6
        if self.since is not None and at < self.since:
            return False
        if self.until is not None and at > self.until:
            return False
        return all(not wanted or event.get(key) in wanted
                   for key, wanted in self.matches.items())

    def _ids_set(self) -> frozenset[str]:
        cached = self.__dict__.get("_ids")
        if cached is None:
            cached = self.__dict__["_ids"] = frozenset(self.message_ids())
        return cached


def parse_when(text: str, now: float) -> float:
    """--since/--until/--held-at: RFC 3339, @EPOCH, +DURATION, -DURATION (ago), or `now`
    (also spelled `live`: `--held-at live` is who holds which role right now)."""
    text = text.strip()
    try:
        if text.startswith("-"):
            return now - parse_duration(text[1:])
        if text in ("now", "live"):
            return now
        if text.startswith("@") and text[1:].replace(".", "", 1).isdigit():
            return float(text[1:])  # @EPOCH with a fraction: the journal has microseconds
        return float(parse_time(text, now))
    except ValueError as exc:
        raise AuditError(f"{exc} (or -DURATION for that long ago)") from None


def may_read_journal(uid: int | None = None, gids: Iterable[int] | None = None) -> bool:
    """Root or a member of adm or systemd-journal: who journald lets read it all."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return True
    mine = set(os.getgroups() if gids is None else gids) | ({os.getegid()} if gids is None
                                                             else set())
    for name in READER_GROUPS:
        try:
            if grp.getgrnam(name).gr_gid in mine:
                return True
        except KeyError:
            continue
    return False


def _decode(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):  # a field given twice: journalctl shows an array
        return ",".join(_decode(v) for v in value)
    return str(value)


def read_journal(query: Query, directory: str | None = None,
                 files: list[str] | None = None) -> Iterator[dict[str, str]]:
    """Our events from journald, oldest first. `directory`/`files` point the Reader at
    a journal other than the system's (tests and the benchmark only)."""
    from systemd import journal

    if files:
        reader = journal.Reader(files=files)
    elif directory:
        reader = journal.Reader(path=directory)
    else:
        reader = journal.Reader()
    try:
        reader.data_threshold = 0  # whole values, however long (a 4 KiB command line)
        reader.add_match(_UID="0")  # trusted (set by journald): no user can forge our events
        for ident in IDENTIFIERS:
            reader.add_match(SYSLOG_IDENTIFIER=ident)
        # MESSAGE_ID: journald matches a few (--event) fast, but a disjunction of the whole
        # catalog made its walk 5x slower (0.17 s -> 1.0 s for 100,000 entries), so then
        # the catalog is checked here, on the entry already read.
        wanted = None
        if query.events:
            for mid in query.message_ids():
                reader.add_match(MESSAGE_ID=mid)
        else:
            wanted = frozenset(mid.encode() for mid in query.message_ids())  # as read: bytes
        for key, values in query.matches.items():
            for value in values:
                reader.add_match(**{key: value})
        if query.since is not None:
            journal._Reader.seek_realtime(reader, int(query.since * 1_000_000))
        else:
            reader.seek_head()
        since = None if query.since is None else int(query.since * 1_000_000)
        until = None if query.until is None else int(query.until * 1_000_000)
        step, get_all, get_time = reader._next, reader._get_all, reader._get_realtime
        while step():
            at = get_time()
            if until is not None and at > until:
                break
            if since is not None and at < since:  # the seek lands near, not always past
                continue
            raw = get_all()
            if wanted is not None and raw.get("MESSAGE_ID") not in wanted:
                continue
            try:
                out = {k: v.decode() for k, v in raw.items() if k in KEPT or k[:4] == "JIT_"}
            except (UnicodeDecodeError, AttributeError):  # bad UTF-8, or a repeated field
                out = {k: _decode(v) for k, v in raw.items() if k in KEPT or k[:4] == "JIT_"}
            out["__REALTIME_TIMESTAMP"] = str(at)
            yield out
    finally:
        reader.close()


def read_events(query: Query, *, directory: str | None = None, files: list[str] | None = None,
                mirror: Path | None = None) -> Iterator[dict[str, str]]:
    """Events from the journal, or from a sandbox root's events.jsonl mirror."""
    if mirror is not None:
        keep = KEPT | {"__REALTIME_TIMESTAMP"}
        for e in read_mirror(mirror):
            if query.accepts(e):
                yield {k: str(v) for k, v in e.items() if k.startswith("JIT_") or k in keep}
        return
    if not directory and not files and not may_read_journal():
        raise JitError("permission_denied",
                       "jit audit reads the system journal: run it as root or as a member "
                       "of adm or systemd-journal")
    yield from read_journal(query, directory, files)


# who held what at a moment ------------------------------------------------------------------

@dataclass
class Holding:
    """One grant as the journal tells it: from its activation to its end, if any."""

    grant_id: str
    user: str
    role: str
    groups: str
    issuer: str
    activated: float
    not_after: float | None
    ended: float | None = None
    how: str = ""  # expired | revoked, or "" while the journal shows no end
    by: str = ""
    reason: str = ""

    def state(self, now: float) -> str:
        if self.ended is not None:
            return self.how
        if self.not_after is not None and self.not_after <= now:
            return "ended (no end event)"
        return "live"

    def as_dict(self, now: float) -> dict[str, object]:
        return {"grant_id": self.grant_id, "user": self.user, "role": self.role,
                "groups": self.groups, "issuer": self.issuer,
                "activated": _iso(self.activated),
                "not_after": _iso(self.not_after) if self.not_after is not None else None,
                "ended": _iso(self.ended) if self.ended is not None else None,
                "state": self.state(now), "ended_by": self.by or None}


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def holdings(events: Iterable[dict[str, str]]) -> dict[str, Holding]:
    """Every grant seen, by id, from its activation and end events (in any order)."""
    out: dict[str, Holding] = {}
    ends: dict[str, dict[str, str]] = {}
    for e in events:
        name, gid = e.get("JIT_EVENT", ""), e.get("JIT_GRANT_ID", "")
        if not gid:
            continue
        if name in GRANT_START and gid not in out:
            out[gid] = Holding(gid, e.get("JIT_USER", ""), e.get("JIT_ROLE", ""),
                               e.get("JIT_GROUPS", ""), e.get("JIT_ISSUER", ""),
                               int(e["__REALTIME_TIMESTAMP"]) / 1e6,
                               _epoch(e.get("JIT_NOT_AFTER")))
        elif name in GRANT_END and gid not in ends:
            ends[gid] = e
    for gid, e in ends.items():
        h = out.get(gid)
        if h is not None:
            h.ended = int(e["__REALTIME_TIMESTAMP"]) / 1e6
            h.how = e["JIT_EVENT"].removeprefix("grant_")
            h.by = e.get("JIT_APPROVER", "") if h.how == "revoked" else ""
    return out


def held_at(events: Iterable[dict[str, str]], at: float) -> list[Holding]:
    """Who held which role at `at`: activated by then, not ended by then, and not past
    its not_after (an expiry hostd missed still ends the grant in policy)."""
    held = [h for h in holdings(events).values()
            if h.activated <= at and (h.ended is None or h.ended > at)
            and (h.not_after is None or h.not_after > at)]
    return sorted(held, key=lambda h: (h.user, h.role, h.activated))


def held_query(query: Query) -> Query:
    """The events --held-at needs: every activation and end (of the --user/--role/
    --grant asked about), whenever, since a grant may have started long before."""
    return Query(users=query.users, roles=query.roles, grants=query.grants,
                 events=GRANT_START + GRANT_END + audit_scheduled.SCHEDULE_EVENTS)


# output --------------------------------------------------------------------------------------

TABLE_COLUMNS = (("TIME (UTC)", None), ("EVENT", "JIT_EVENT"), ("USER", "JIT_USER"),
                 ("ROLE", "JIT_ROLE"), ("GRANT", "JIT_GRANT_ID"), ("MESSAGE", "MESSAGE"))
# shown after the message, so the table says what was run and why
DETAILS = (("command", "JIT_COMMAND"), ("reason", "JIT_REASON"))


def inert(value: str) -> str:
    """The second fence for whatever reached the journal: events.escape's `logged` form
    (hostd's own escapes stay as logged; raw control characters become visible)."""
    return escape(value, logged=True)


def _cell(value: str, width: int) -> str:
    """Inert (no control character reaches the terminal) and cut to `width` columns."""
    return cut(inert(value), width)


def table_lines(events: Iterable[dict[str, str]]) -> Iterator[str]:
    """One line per event; every value inert, long ones cut (MESSAGE last, longest, with
    the command line or reason after it)."""
    widths = (24, 18, 12, 12, 14, 200)
    yield "  ".join(h.ljust(w) for (h, _), w in zip(TABLE_COLUMNS, widths, strict=True)).rstrip()
    for e in events:
        at = _iso(int(e.get("__REALTIME_TIMESTAMP", "0")) / 1e6).replace("T", " ")
        row = dict(e)
        extra = [f"{label}: {e[key]}" for label, key in DETAILS if e.get(key)]
        if extra:
            row["MESSAGE"] = f"{e.get('MESSAGE', '')} [{'; '.join(extra)}]"
        cells = [at] + [_cell(row.get(key) or "-", w)
                        for (_, key), w in zip(TABLE_COLUMNS[1:], widths[1:], strict=True)]
        yield "  ".join(c + " " * max(0, w - sum(columns(ch) for ch in c))
                        for c, w in zip(cells, widths, strict=True)).rstrip()


def held_lines(held: list[Holding], at: float, now: float) -> Iterator[str]:
    yield f"held at {_iso(at)}:"
    if not held:
        yield "  nobody held a role"
        return
    for h in held:
        until = ("still live" if h.state(now) == "live"
                 else f"{h.state(now)} {_iso(h.ended) if h.ended is not None else ''}".rstrip())
        by = f" by {inert(h.by)}" if h.by else ""
        yield (f"  {inert(h.user)}  role {inert(h.role)}  groups {inert(h.groups) or '-'}"
               f"  grant {inert(h.grant_id)}  since {_iso(h.activated)}  ({until}{by})")


def write_lines(lines: Iterable[str], out=None) -> None:
    """Write in big chunks: a print() per line would cost more than reading the journal."""
    out = out or sys.stdout
    chunk: list[str] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= 4096:
            out.write("\n".join(chunk) + "\n")
            chunk.clear()
    if chunk:
        out.write("\n".join(chunk) + "\n")
    out.flush()


def json_lines(events: Iterable[dict[str, str]]) -> Iterator[str]:
    dumps = json.JSONEncoder(separators=(", ", ": ")).encode  # ASCII: inert on a terminal
    for e in events:
        yield dumps(e)


def now() -> float:
    return time.time()


# the command --------------------------------------------------------------------------------

def _sources(args) -> dict:
    """Where events come from: the system journal, a sandbox root's mirror (JIT_ROOT),
    or (tests, the benchmark) --journal-dir / --journal-file."""
    from hostd.paths import client_paths

    if args.journal_file or args.journal_dir:
        return {"files": args.journal_file or None, "directory": args.journal_dir}
    paths = client_paths()
    if paths.sandboxed:
        return {"mirror": paths.events_mirror}
    return {}


def _many(values: list[str] | None, label: str) -> tuple[str, ...]:
    """Repeated options and comma lists: --user a --user b, --user a,b. (The CLI checks
    single string arguments for valid UTF-8; these are lists, so here.)"""
    out = tuple(v for value in values or () for v in value.split(",") if v)
    for v in out:
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise AuditError(f"{label} is not valid UTF-8") from None
    return out


def write_html(path: str, events: list[dict[str, str]], host: str, since: float | None,
               until: float | None) -> None:
    """The HTML report (hostd/audit/report.py), written 0600: it holds users' reasons and
    commands."""
    try:
        from hostd.audit.report import render_html  # optional: the report lives in its own module
    except ImportError:
        raise AuditError("the HTML report is not available in this version") from None
    page = render_html(events, host=host, since=since, until=until)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(page)


def run(args) -> int:
    """`jit audit`: read, filter, and print in the chosen format. Returns the exit code."""
    current = now()
    fmt = "json" if args.json else args.format
    since = parse_when(args.since, current) if args.since else None
    until = parse_when(args.until, current) if args.until else None
    query = Query(since=since, until=until, users=_many(args.user, "--user"),
                  roles=_many(args.role, "--role"), grants=_many(args.grant, "--grant"),
                  events=_many(args.event, "--event"))
    sources = _sources(args)
    if args.held_at:
        if fmt not in ("text", "json") or args.html:
            raise AuditError("--held-at prints a table or --json, not --format "
                             f"{fmt}{' or --html' if args.html else ''}")
        at = parse_when(args.held_at, current)
        collected = list(read_events(held_query(query), **sources))
        held = held_at(collected, at)
        pending = audit_scheduled.pending_at(collected, at)  # scheduled: not held yet
        if fmt == "json":
            print(json.dumps({"ok": True, "code": "ok", "message": f"{len(held)} held",
                              "at": _iso(at), "held": [h.as_dict(current) for h in held],
                              "pending": [p.as_dict() for p in pending]}, sort_keys=True))
        else:
            write_lines([*held_lines(held, at, current),
                         *audit_scheduled.pending_lines(pending)])
        return 0
    events = read_events(query, **sources)
    if args.html:
        collected = list(events)
        host = next((e["_HOSTNAME"] for e in collected if e.get("_HOSTNAME")),
                    os.uname().nodename)
        write_html(args.html, collected, host, since, until)
        print(f"jit: wrote the report of {len(collected)} events to {escape(args.html)}",
              file=sys.stderr)
        return 0
    if fmt == "json":
        write_lines(json_lines(events))
    elif fmt in ("ocsf", "ecs"):
        from hostd.audit.export import export

        write_lines(json_lines(export(events, fmt)))
    else:
        write_lines(table_lines(events))
    return 0
