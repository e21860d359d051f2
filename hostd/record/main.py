"""`jit-record`: the session recorder (DESIGN.md §9), a pty proxy in the manner of tlog.

    jit-record --token T [--uid U --gid G --groups G,...] [--record-failure MODE]
               [--command PATH] -- ARGV...          (as sudo runs it, for hostd)
    jit-record --file PATH [--no-mask] -- ARGV...   (a local recording, no hostd)

With a terminal on stdin and stdout the command runs on a pty of its own: the user's
terminal goes to raw mode, keys go to the pty, the pty's output is masked and then
shown and recorded; window-size changes (SIGWINCH) follow, a stopped command stops the
recorder, signals are passed on, and the command's exit status (or the signal that
killed it) becomes the recorder's. Without a terminal (pipes, redirects) there is no
pty: stdout and stderr come through pipes, masked each on its own, and stdin is passed
through untouched unless input is recorded.

With `--token` hostd alone writes the recording: `record.open` answers with the masking
rules, `record_input` and `record_failure`, then takes frames (output, input, resize,
end). If hostd goes away mid-session, `record_failure` decides: `terminate` hangs the
command up, `continue` carries on unrecorded; either way the recorder says so on
stderr. sudo runs the recorder as root with the argv hostd built; the recorder drops to
the runas uid, gid and groups (`--uid/--gid/--groups`) for the command, as sudo would.

Starts fast: standard library and hostd's stdlib client only, no asyncio; the masking
and asciicast modules are imported only when needed. Output moves in 64 KiB reads; with
no masking rules nothing looks at the bytes in Python.
"""

from __future__ import annotations

import os
import sys

from hostd.record.options import SOCKET, USAGE, Usage, parse_args

RECORDER = "/usr/bin/jit-record"


HELP = f"""{USAGE}

Records COMMAND's terminal session, secrets masked (jit-record(1)). sudo runs it with
--token when a role's `record` says so; --file PATH makes a local recording.
  --token T                 the recording hostd opened (record.open); hostd writes it
  --uid U --gid G --groups  run COMMAND as this user, group and supplementary groups
  --record-failure MODE     hostd gone mid-session: terminate (hang up) or continue
  --command PATH            the program to run (argv[0] stays as given)
  --file PATH               write a local asciicast v2 recording, no hostd
  --no-mask                 with --file: keep the output unmasked
  --socket PATH             hostd's socket (default {SOCKET})"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] in (["-h"], ["--help"]):
        try:
            print(HELP, flush=True)
        except BrokenPipeError:  # `jit-record --help | head`
            os._exit(0)
        return 0
    try:
        opts = parse_args(args)
    except Usage as exc:
        print(f"jit-record: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    from hostd.errors import JitError
    from hostd.record.sinks import SinkFailed

    if os.isatty(0) and os.isatty(1):
        from hostd.record.terminal import PtyRecorder as Proxy
    else:
        from hostd.record.piped import PipeRecorder as Proxy
    recorder = Proxy(opts)

    try:
        return recorder.run()
    except SinkFailed as exc:
        print(f"jit-record: {exc}", file=sys.stderr)
        return 1
    except JitError as exc:
        print(f"jit-record: cannot start the recording: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, ImportError) as exc:
        print(f"jit-record: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
