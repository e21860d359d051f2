"""`jit sessions`, `jit replay`, `jit verify-recording` (DESIGN.md §12, §13): recordings
read straight from /var/log/jit/sessions (no daemon needed), for root and group adm.

Everything from a recording that is shown as text (user, command, status) is escaped;
replayed output (already masked when it was recorded) goes to stdout as the terminal
showed it, less the escape sequences that make a terminal answer or act (termsafe.py:
the recorded user chose those bytes, an administrator's terminal shows them), and every
message of ours goes to stderr, after a reset of the terminal's state and on a line of
its own, so replayed bytes cannot pass for our verdicts.
"""

from __future__ import annotations

import argparse
import grp
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from hostd.errors import EXIT_OK, EXIT_REFUSED, JitError, exit_code_for
from hostd.events import escape, shown
from hostd.paths import client_paths
from hostd.policy.durations import rfc3339
from hostd.record import castexport, castfile, termsafe
from hostd.state.journal import read_mirror

EXIT_NOT_FOUND = 2  # verify-recording: no such recording (DESIGN.md §13)
# What we write to a terminal before a message of ours, so the recording cannot hide
# or disguise it.
TERMINAL_RESET = ("\x18\x1b\\"       # cancel a sequence in progress, end a string
                  "\x0f\x1b(B"        # the ASCII character set
                  "\x1b[0m\x1b[4l"    # attributes off, insert mode off
                  "\x1b[?1049l\x1b[?25h\r\n")  # main screen, cursor shown, new line


DIR_HELP = "the directory of recordings (default /var/log/jit/sessions)"
ID_HELP = "a recording id (16 hex digits), as jit sessions shows it"


def add_arguments(sub: argparse._SubParsersAction, command) -> None:
    """Wire the three commands into jit's parser (`command` is cli.build_parser's)."""
    c = command("sessions", cmd_sessions, "list session recordings (root, adm); with "
                "--live, the live sessions one may watch")
    c.add_argument("--dir", type=Path, metavar="DIR",
                   help=DIR_HELP)
    c.add_argument("--live", action="store_true",
                   help="list the live recorded sessions you may watch, from hostd")

    c = command("replay", cmd_replay, "play a session recording back (root, adm); with "
                "--json, the whole recording as one JSON object")
    c.add_argument("recording_id", metavar="ID", help=ID_HELP)
    c.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="play X times faster (default 1)")
    c.add_argument("--idle-limit", type=float, metavar="S",
                   help="shorten every pause to at most S seconds")
    c.add_argument("--export-script", type=Path, metavar="DIR",
                   help="write ID.log and ID.timing for scriptreplay instead")
    c.add_argument("--dir", type=Path, metavar="DIR", help=DIR_HELP)

    c = command("verify-recording", cmd_verify_recording,
                "check a recording's hash chain and the digest hostd logged")
    c.add_argument("recording_id", metavar="ID", help=ID_HELP)
    c.add_argument("--digest", metavar="HEX",
                   help="expected digest (default: the one in the journal)")
    c.add_argument("--dir", type=Path, metavar="DIR", help=DIR_HELP)


# helpers ------------------------------------------------------------------------------------

def _may_read_default() -> None:
    """The default directory is for root and group adm (as logs are)."""
    if os.geteuid() == 0:
        return
    try:
        adm = grp.getgrnam("adm").gr_gid
    except KeyError:
        adm = None
    if adm is not None and (adm in os.getgroups() or os.getegid() == adm):
        return
    raise JitError("permission_denied", "session recordings are for root and group adm")


def _directory(args: argparse.Namespace) -> Path:
    if args.dir is not None:
        return args.dir
    _may_read_default()
    return client_paths().sessions_dir


def _recording(args: argparse.Namespace) -> Path:
    rid = args.recording_id
    if not castfile.RECORDING_ID.fullmatch(rid):
        raise JitError("usage", f"{escape(rid)} is not a recording id (16 hex digits)")
    return _directory(args) / f"{rid}.cast"


def _say(args: argparse.Namespace, answer: dict, text: str | None = None) -> int:
    """Print an answer: JSON on stdout with --json, else text on stderr (our voice)."""
    if getattr(args, "json", False):
        print(json.dumps(answer, sort_keys=True))
    elif text:
        print(text, file=sys.stdout if answer.get("ok") else sys.stderr)
    return EXIT_OK if answer.get("ok") else exit_code_for(str(answer.get("code")))


def _time(value: object) -> str | None:
    """RFC 3339 of an epoch from a header (any JSON value: None unless a sane number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not (0 < value < 253402300800):  # before year 10000
        return None
    return rfc3339(int(value))


def _human_size(n: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _human_duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _command_text(command: object) -> str:
    if isinstance(command, list):
        return " ".join(str(c) for c in command)
    return "" if command is None else str(command)


# jit sessions -------------------------------------------------------------------------------

def list_sessions(directory: Path) -> list[dict]:
    """One row per ID.cast in `directory` (others ignored), oldest first; a file that
    cannot be read gets a row with "error"."""
    rows = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except PermissionError:
        raise JitError("permission_denied", f"cannot read {escape(directory)}") from None
    for name in names:
        rid = name.removesuffix(".cast")
        if not name.endswith(".cast") or not castfile.RECORDING_ID.fullmatch(rid):
            continue
        path = directory / name
        try:
            row = castfile.summary(path)
        except (OSError, castfile.CastError) as exc:
            reason = exc.reason if isinstance(exc, castfile.CastError) else (
                exc.strerror or str(exc))
            rows.append({"id": rid, "path": str(path), "error": reason})
            continue
        if row["id"] != rid:
            row["error"] = "id in the header differs from the file name"
        row["id"] = rid
        started = row.get("started") if isinstance(row.get("started"), str) else _time(
            row.get("timestamp"))
        start = _time(row.get("timestamp")) and row["timestamp"]
        row.update(path=str(path), started=started,
                   ended=_time(start + row["duration"]) if row["ended"] and start else None)
        rows.append(row)
    def order(row: dict) -> tuple:
        stamp = row.get("timestamp")
        number = isinstance(stamp, int | float) and not isinstance(stamp, bool)
        return (not number, stamp if number else 0, row["id"])

    rows.sort(key=order)
    return rows


def cmd_sessions(args: argparse.Namespace) -> int:
    if args.live:
        from hostd.cli.live import cmd_live_sessions

        return cmd_live_sessions(args)
    rows = list_sessions(_directory(args))
    if args.json:
        return _say(args, {"ok": True, "code": "ok", "message": f"{len(rows)} recordings",
                           "sessions": rows})
    if not rows:
        print("no recordings", file=sys.stderr)
        return EXIT_OK
    print(f"{'ID':16}  {'USER':12} {'RUNAS':10} {'STARTED':20} {'DURATION':>8} "
          f"{'SIZE':>7}  COMMAND")
    for r in rows:
        if "error" in r and "user" not in r:
            print(f"{r['id']:16}  ? ({shown(r['error'], 50)})")
            continue
        status = "" if r["ended"] else " (running or cut short)"
        print(f"{r['id']:16}  {shown(r.get('user') or '?', 12):12} "
              f"{shown(r.get('runas') or '?', 10):10} {shown(r.get('started') or '?', 20):20} "
              f"{_human_duration(r['duration']):>8} {_human_size(r['size']):>7}  "
              f"{shown(_command_text(r.get('command')), 60)}{status}")
    return EXIT_OK


# jit replay ---------------------------------------------------------------------------------

def cmd_replay(args: argparse.Namespace) -> int:
    if not (0 < args.speed <= 1e6):
        raise JitError("usage", "--speed must be more than 0")
    if args.idle_limit is not None and not (0 <= args.idle_limit <= 1e6):
        raise JitError("usage", "--idle-limit must be 0 or more seconds")
    path = _recording(args)
    header, events = _open(path)
    if args.export_script is not None:
        try:
            log, timing = castexport.export_events(path, header, _safe(events),
                                                 args.export_script)
        except FileExistsError as exc:
            raise JitError("denied", f"{escape(exc.filename)} exists already") from None
        except castfile.CastError as exc:
            raise JitError("malformed", f"{escape(path.name)}: {escape(exc)}") from None
        except (FileNotFoundError, NotADirectoryError):
            raise JitError("usage", f"{escape(args.export_script)}: no such directory "
                                    "(--export-script names a directory that exists)") from None
        except OSError as exc:
            raise JitError("denied", f"cannot write in {escape(args.export_script)}: "
                                     f"{escape(exc.strerror)}") from None
        return _say(args, {"ok": True, "code": "ok", "message": "exported",
                           "log": str(log), "timing": str(timing)},
                    f"{escape(log)}\n{escape(timing)}\n"
                    f"play it with: scriptreplay -t {escape(timing)} {escape(log)}")
    if args.json:
        return replay_json(args.recording_id, header, events, sys.stdout)
    meta = header["jit"]
    tty = sys.stdout.isatty()
    print(f"jit: replaying {args.recording_id}: {shown(meta.get('user') or '?', 32)} as "
          f"{shown(meta.get('runas') or '?', 32)}, started "
          f"{shown(meta.get('started') or _time(header.get('timestamp')) or '?', 32)}"
          f", {shown(header.get('width'), 6)}x{shown(header.get('height'), 6)}",
          file=sys.stderr)
    print(f"jit: command: {shown(_command_text(meta.get('command')), 70)}", file=sys.stderr)
    out = sys.stdout.buffer
    end = "the recording has no end (running, or cut short)"
    code = EXIT_OK
    try:
        last = play(events, out, speed=args.speed, idle_limit=args.idle_limit)
        if last is not None and last[1] == "m" and last[2].startswith(castfile.END_PREFIX):
            end = f"status: {shown(last[2][len(castfile.END_PREFIX) + 65:], 40)}"
    except KeyboardInterrupt:
        end, code = "interrupted", 130
    except castfile.CastError as exc:
        end, code = f"stopped: {shown(exc, 60)}", EXIT_REFUSED
    finally:
        if tty:
            out.write(TERMINAL_RESET.encode())
        out.flush()
    print(f"jit: end of replay of {args.recording_id} ({end})", file=sys.stderr)
    return code


def replay_json(rid: str, header: dict, events: Iterable[tuple[float, str, str]],
                out) -> int:
    """`jit replay ID --json`: the recording as one JSON object, at once (no pacing;
    --speed and --idle-limit do not apply): {"id", "header" (as in the file), "events"
    ([seconds, code, text] as asciicast v2 has them, output filtered as `jit replay`
    shows it), "end" (the status the recording ends with, null when it has none), and
    "ok", "code", "message"}. It is written event by event, so a recording of any size
    takes no more memory than one line; a malformed line still closes the object, with
    "ok": false and what stopped it (Ctrl-C stops it: main() exits 130)."""
    out.write(f'{{"id": {json.dumps(rid)}, "header": {json.dumps(header, sort_keys=True)}, '
              '"events": [')
    end, answer, code = None, {"ok": True, "code": "ok", "message": "replayed"}, EXIT_OK
    try:
        for i, event in enumerate(_safe(events)):
            out.write((", " if i else "") + json.dumps(list(event)))
            if event[1] == "m" and event[2].startswith(castfile.END_PREFIX):
                end = event[2][len(castfile.END_PREFIX) + 65:]
    except castfile.CastError as exc:
        answer = {"ok": False, "code": "malformed", "message": f"stopped: {escape(exc)}"}
        code = EXIT_REFUSED
    tail = json.dumps({"end": end, **answer}, sort_keys=True)
    out.write(f"], {tail[1:]}\n")
    out.flush()
    return code


def _safe(events: Iterable[tuple[float, str, str]]) -> Iterator[tuple[float, str, str]]:
    """The events with output passed through termsafe (no sequence that makes the
    viewer's terminal answer or act: the recorded user chose those bytes)."""
    flt = termsafe.TerminalFilter()
    for t, code, text in events:
        yield (t, code, flt.feed(text)) if code == "o" else (t, code, text)


def play(events: Iterable[tuple[float, str, str]], out, *, speed: float = 1.0,
         idle_limit: float | None = None, sleep=time.sleep,
         clock=time.monotonic) -> tuple[float, str, str] | None:
    """Write the output events to `out` at their recorded pace (divided by `speed`,
    pauses capped at `idle_limit`), on a schedule so delays do not add up, without the
    escape sequences termsafe drops. Returns the last event (the end line, in a
    complete recording)."""
    start = clock()
    virtual = 0.0
    last = 0.0
    event = None
    for event in _safe(events):
        t, code, text = event
        if code != "o":
            continue
        gap = max(0.0, t - last)
        last = t
        if idle_limit is not None:
            gap = min(gap, idle_limit)
        virtual += gap / speed
        delay = start + virtual - clock()
        if delay > 0:
            out.flush()
            sleep(delay)
        out.write(text.encode("utf-8", "replace"))
    out.flush()
    return event


def _open(path: Path) -> tuple[dict, Iterator[tuple[float, str, str]]]:
    try:
        return castfile.iter_cast(path)
    except FileNotFoundError:
        raise JitError("not_found", f"no recording {path.name.removesuffix('.cast')} "
                       f"in {escape(path.parent)}") from None
    except PermissionError:
        raise JitError("permission_denied", f"cannot read {escape(path)}") from None
    except castfile.CastError as exc:
        raise JitError("malformed", f"{escape(path.name)}: {escape(exc)}") from None


# jit verify-recording -----------------------------------------------------------------------

def journal_digests(recording_id: str) -> list[str]:
    """JIT_RECORDING_SHA256 of the events hostd logged for this recording: from the
    journal, only entries a root process sent (_UID=0), so nobody else can plant one;
    under a sandbox root (JIT_ROOT) from hostd's events mirror."""
    paths = client_paths()
    if paths.sandboxed:
        return [e["JIT_RECORDING_SHA256"] for e in read_mirror(paths.events_mirror)
                if e.get("JIT_RECORDING") == recording_id and e.get("JIT_RECORDING_SHA256")]
    try:
        from systemd import journal
    except ImportError:  # pragma: no cover - python3-systemd is a Depends
        raise JitError("internal", "python3-systemd is missing") from None
    reader = journal.Reader()
    try:
        reader.add_match(JIT_RECORDING=recording_id, _UID="0")
        return [str(e["JIT_RECORDING_SHA256"]) for e in reader
                if e.get("JIT_RECORDING_SHA256")]
    finally:
        reader.close()


def cmd_verify_recording(args: argparse.Namespace) -> int:
    path = _recording(args)
    rid = args.recording_id
    try:
        missing = not path.exists() and not path.is_symlink()
    except PermissionError:  # Path.exists raises it for a directory we may not search
        raise JitError("permission_denied", f"cannot read {escape(path.parent)}") from None
    if missing:
        _say(args, {"ok": False, "code": "not_found",
                    "message": f"no recording {rid} in {path.parent}"},
             f"jit: not_found: no recording {rid} in {escape(path.parent)}")
        return EXIT_NOT_FOUND
    if args.digest is not None:
        expected, source = args.digest.strip().lower(), "--digest"
        if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
            raise JitError("usage", "--digest must be 64 hex digits (sha256)")
    else:
        found = sorted(set(journal_digests(rid)))
        if len(found) > 1:
            return _tampered(args, rid, "", f"the journal holds {len(found)} different "
                             f"digests for {rid}")
        expected, source = (found[0] if found else None), "the journal"
    try:
        verdict = castfile.verify(path, expected)
    except PermissionError:
        raise JitError("permission_denied", f"cannot read {escape(path)}") from None
    if not verdict.ok:
        where = f" (first bad line: {verdict.first_bad_line})" if verdict.first_bad_line \
            else ""
        return _tampered(args, rid, verdict.digest, f"{verdict.reason}{where}",
                         verdict.first_bad_line)
    if expected is None:
        return _tampered(args, rid, verdict.digest, "the chain is intact, but hostd logged "
                         "no digest for it (still being recorded, or not written by hostd)")
    return _say(args, {"ok": True, "code": "ok", "message": verdict.reason, "id": rid,
                       "digest": verdict.digest, "digest_from": source, "lines": verdict.lines},
                f"{rid}: ok: {verdict.reason} (sha256 {verdict.digest}, from {source})")


def _tampered(args: argparse.Namespace, rid: str, digest: str, reason: str,
              line: int | None = None) -> int:
    _say(args, {"ok": False, "code": "tampered", "message": reason, "id": rid,
                "digest": digest, "first_bad_line": line},
         f"jit: tampered: {rid}: {escape(reason)}")
    return EXIT_REFUSED

