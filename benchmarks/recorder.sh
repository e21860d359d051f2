#!/bin/bash
# jit-record against util-linux script(1), side by side in one run (DESIGN.md §13):
#
#  1. throughput: SIZE_MB (default 256) of text through `jit-record -- cat FILE` and
#     through `script -q -c "cat FILE" LOG`, both writing a recording to disk and their
#     output to /dev/null; jit-record unmasked (--no-mask) and with the default
#     (built-in) masking rules. Prints MB/s and the ratio to script's throughput
#     (goals: >= 1.0x unmasked as the first milestone, 1.5x in the end; >= 0.8x masked).
#  2. per-command cost: `jit-record -- true` against `script -q -c true` and a bare
#     `true`, with hyperfine (goal: at most 10 ms more than a bare `true`).
#
# jit-record runs in its local mode (`--file`: the same proxy, masking and asciicast
# writer as a sudo session, without hostd), and once on the sudo path through a sandbox
# hostd (benchmarks/recorder_hostd.py: token, frames on the socket, hostd writing).
# Output is not a terminal here, so both run their no-terminal path: script still
# allocates its pty, jit-record uses pipes.
#
# Usage: benchmarks/recorder.sh [SIZE_MB]    (JIT_RECORD overrides the recorder command)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
size_mb=${1:-256}
work=$(mktemp -d /tmp/jit-bench-recorder.XXXXXX)
trap 'rm -rf "$work"' EXIT
record=${JIT_RECORD:-"/usr/bin/python3 -m hostd.record.main"}
export PYTHONPATH="$repo"
unset PYTHONDONTWRITEBYTECODE  # as installed: dh_python3 byte-compiles the package

for tool in script hyperfine base64 awk; do
    if ! command -v "$tool" >/dev/null; then
        echo "recorder.sh: $tool is required (scripts/install-deps.sh)" >&2
        exit 2
    fi
done

# Text like a busy terminal's: base64 lines of 76 characters (no secrets in it).
head -c $((size_mb * 1024 * 1024 * 3 / 4)) /dev/urandom | base64 -w 76 >"$work/text"
bytes=$(stat -c %s "$work/text")

seconds() {  # run "$@", print the wall-clock seconds it took
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f", b - a }'
}

run_script() { script -q -c "cat $work/text" "$work/script.log"; }
# $record is a command line: split on purpose
# shellcheck disable=SC2086
run_unmasked() { $record --file "$work/plain.cast" --no-mask -- cat "$work/text"; }
# shellcheck disable=SC2086
run_masked() { $record --file "$work/masked.cast" -- cat "$work/text"; }
# the masker without Hyperscan (libhyperscan5 absent): bytes.find per literal
# shellcheck disable=SC2086
run_masked_find() {
    rm -f "$work/masked.cast"
    JIT_MASK_ENGINE=python $record --file "$work/masked.cast" -- cat "$work/text"
}

echo "throughput: $((bytes / 1024 / 1024)) MiB of text, output to /dev/null, recording to disk"
t_script=$(seconds run_script)
t_plain=$(seconds run_unmasked)
t_masked=$(seconds run_masked)
t_find=$(seconds run_masked_find)
# the sudo path: sandbox hostd, token, frames on the socket, hostd writing the file
t_hostd=$(python3 "$repo/benchmarks/recorder_hostd.py" "$work/text")
rate() { awk -v n="$bytes" -v t="$1" 'BEGIN { printf "%.1f", n / 1048576 / t }'; }
ratio() { awk -v s="$t_script" -v t="$1" 'BEGIN { printf "%.2f", s / t }'; }
printf '  %-32s %8s MiB/s\n' "script -q -c" "$(rate "$t_script")"
printf '  %-32s %8s MiB/s  %sx script (goal >= 1.0x, then 1.5x)\n' \
    "jit-record --no-mask" "$(rate "$t_plain")" "$(ratio "$t_plain")"
printf '  %-32s %8s MiB/s  %sx script (goal >= 1.0x)\n' \
    "jit-record (default masking)" "$(rate "$t_masked")" "$(ratio "$t_masked")"
printf '  %-32s %8s MiB/s  %sx script (without libhyperscan5)\n' \
    "jit-record (masking, bytes.find)" "$(rate "$t_find")" "$(ratio "$t_find")"
printf '  %-32s %8s MiB/s  %sx script (goal >= 0.8x)\n' \
    "jit-record via hostd (masking)" "$(rate "$t_hostd")" "$(ratio "$t_hostd")"

echo "per-command cost (hyperfine, mean of runs):"
hyperfine -N --warmup 3 --runs 30 --style none --export-json "$work/cost.json" \
    --prepare "rm -f $work/true.cast" \
    "true" "script -q -c true $work/true.log" \
    "$record --file $work/true.cast -- true" >/dev/null
python3 - "$work/cost.json" <<'EOF'
import json, sys
runs = json.load(open(sys.argv[1]))["results"]
bare, script, record = (r["mean"] * 1000 for r in runs)
print(f"  {'true':32} {bare:8.2f} ms")
print(f"  {'script -q -c true':32} {script:8.2f} ms  (+{script - bare:.2f} ms)")
print(f"  {'jit-record -- true':32} {record:8.2f} ms  (+{record - bare:.2f} ms; "
      f"goal <= +10 ms; {record / script:.2f}x script)")
EOF
# the sudo path: sudo.check's token, record.open, the close (hostd's fsync) each time
hostd_ms=$(python3 "$repo/benchmarks/recorder_hostd.py" --true 20)
printf '  %-32s %8s ms  (mean of 20; the recording written by a sandbox hostd)\n' \
    "jit-record --token T -- true" "$hostd_ms"
