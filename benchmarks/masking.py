#!/usr/bin/python3
"""What inline masking costs (issues 10, 18): the recorder's masker (ScreenMasker: the
visible text matched, escape sequences kept, the default rules with the field family)
over 64 MiB of terminal-like text (log lines, `ls -l`, code, hex, prose; two fake
secrets per MiB), plain and coloured (SGR around 8% of the words, as `ls --color` or
`grep --color` print), in pty-sized 4 KiB reads and in 64 KiB reads, with each engine
(one Hyperscan pass for the rules' literals, or bytes.find per literal: the fallback
without libhyperscan5), side by side in one run with two baselines:

* plain copy: each chunk copied into a new bytes object (memoryview.tobytes(), what
  a read into a fresh buffer costs), the floor of any Python-level stream loop;
* `script -q -c "cat FILE" /dev/null` over the same 256 MB (util-linux's recorder,
  through a pty): the issue's baseline. Goal: masking keeps >= 0.8x script's throughput.

Each figure is given in wall time and in CPU time (the process's and its children's:
script and cat), which moves less when other jobs share the machine.

Also, for the record: hostd's writing of the same masked output as a recording
(CastWriter.output per 4 KiB read: UTF-8 decoding, JSON escaping, the hash chain, the
file), which has to keep up with the recorder.

Three rounds, interleaved; the best of each is printed.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hostd.masking import hsscan
from hostd.masking import masker as masking
from hostd.masking.screen import ScreenMasker
from hostd.record.castfile import CastWriter

MIB = 1 << 20
TOTAL_MIB = 64
ROUNDS = 3


def corpus_block(seed: int = 7) -> bytes:
    """One MiB of text like a busy terminal's, with two fake secrets."""
    r = random.Random(seed)
    syll = ["ka", "to", "ri", "mem", "ser", "vic", "data", "port", "log", "user", "conf",
            "net", "sys", "proc", "file", "read", "write", "cache", "time", "node"]

    def word() -> str:
        return "".join(r.choice(syll) for _ in range(r.randint(1, 3)))

    lines, size = [], 0
    while size < MIB - 200:
        k = r.randint(0, 5)
        if k == 0:
            line = (f"2026-11-30T06:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z "
                    f"host{r.randint(1, 9)} {word()}[{r.randint(100, 99999)}]: "
                    + " ".join(word() for _ in range(r.randint(3, 12))))
        elif k == 1:
            line = (f"-rw-r--r-- 1 {word()} {word()} {r.randint(0, 10**7):>8} Nov 30 06:00 "
                    f"{word()}.{r.choice(['py', 'c', 'txt', 'log'])}")
        elif k == 2:
            line = f"    {word()} = {word()}({word()}, {r.randint(0, 999)})  # {word()} {word()}"
        elif k == 3:
            line = " ".join(f"{r.randint(0, 2**32):08x}" for _ in range(8))
        elif k == 4:
            line = f"{word().upper()}_{word().upper()}={word()} PATH=/usr/{word()}/bin:/bin"
        else:
            line = " ".join(word() for _ in range(r.randint(5, 15))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    text = "\n".join(lines)
    secrets = "\nexport DB_PASSWORD=hunter2hunter2\nkey AKIAIOSFODNN7EXAMPLE\n"
    block = (text[:MIB // 2] + secrets + text[MIB // 2:]).encode()
    return (block + b"\n" * MIB)[:MIB]


def chunks_of(block: bytes, size: int) -> list[bytes]:
    return [block[i:i + size] for i in range(0, len(block), size)]


class Timer:
    """Wall time and CPU time (this process's, plus its children's: script and cat)."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = self._cpu() - self.cpu

    @staticmethod
    def _cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def copy(chunks: list[bytes]) -> Timer:
    views = [memoryview(c) for c in chunks]
    with Timer() as t:
        for _ in range(TOTAL_MIB):
            for v in views:
                v.tobytes()
    return t


def coloured(block: bytes) -> bytes:
    """The block with SGR colour codes around 8% of its words (same MiB, cut to fit)."""
    r = random.Random(3)
    words = block.split(b" ")
    out = b" ".join(b"\x1b[01;34m" + w + b"\x1b[0m" if r.random() < 0.08 else w
                    for w in words)
    return out[:MIB]


def masker(engine: str) -> ScreenMasker:
    m = ScreenMasker()
    inner = m.inner
    if engine == "find":  # the fallback without libhyperscan5
        inner._searched = float("-inf")  # never switches
        return m
    inner._lits, inner._lit_owner, inner._longest = masking._literals(inner._rules)
    inner._searched = hsscan.AFTER
    if inner._lits is None:
        raise SystemExit("masking.py: libhyperscan5 is not installed (scripts/install-deps.sh)")
    return m


def masked(chunks: list[bytes], engine: str = "hyperscan") -> Timer:
    m = masker(engine)
    with Timer() as t:
        for _ in range(TOTAL_MIB):
            for c in chunks:
                m.feed(c)
        m.flush()
    return t


def recorded(chunks: list[bytes], directory: Path) -> Timer:
    path = directory / "rec.cast"
    with Timer() as timer:
        w = CastWriter(path, {"id": "0" * 16, "user": "bench"})
        t = 0.0
        for _ in range(TOTAL_MIB):
            for c in chunks:
                t += 0.001
                w.output(t, c)
        w.close(t, "exit 0")
    path.unlink()
    return timer


def script(path: Path) -> Timer:
    with Timer() as t:
        subprocess.run(["script", "-q", "-c", f"cat {path}", "/dev/null"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return t


def main() -> int:
    block = corpus_block()
    colour = coloured(block)
    for engine in ("hyperscan", "find"):
        check = masker(engine)
        out = check.feed(colour + block) + check.flush()
        assert b"hunter2hunter2" not in out and b"AKIAIOSFODNN7EXAMPLE" not in out
    small, large = chunks_of(block, 4096), chunks_of(block, 65536)
    csmall, clarge = chunks_of(colour, 4096), chunks_of(colour, 65536)
    runs = {
        "plain copy, 4 KiB reads": lambda: copy(small),
        "script -q -c cat": lambda: script(path),
        "masked, 4 KiB reads": lambda: masked(small),
        "masked, 64 KiB reads": lambda: masked(large),
        "masked coloured, 4 KiB": lambda: masked(csmall),
        "masked coloured, 64 KiB": lambda: masked(clarge),
        "find: masked, 4 KiB": lambda: masked(small, "find"),
        "find: masked coloured, 4 KiB": lambda: masked(csmall, "find"),
        "CastWriter, 4 KiB reads": lambda: recorded(small, Path(tmp)),
    }
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text"
        with open(path, "wb") as fh:
            for _ in range(TOTAL_MIB):
                fh.write(block)
        for _ in range(ROUNDS):
            for name, run in runs.items():
                t = run()
                wall[name] = min(wall.get(name, float("inf")), t.wall)
                cpu[name] = min(cpu.get(name, float("inf")), max(t.cpu, 1e-9))
    mb = TOTAL_MIB * MIB / 1e6
    print(f"{TOTAL_MIB} MiB of text, best of {ROUNDS} rounds; default rules (ScreenMasker). "
          f"MB/s of wall time, and MB per CPU second (steadier on a busy machine)")
    for name in wall:
        print(f"  {name:30s} {mb / wall[name]:9.1f} MB/s   {mb / cpu[name]:9.1f} MB/cpu-s")
    base = "script -q -c cat"
    for name in wall:
        if "masked" in name:
            print(f"  {name + ' / script':40s} wall {wall[base] / wall[name]:.2f}, "
                  f"cpu {cpu[base] / cpu[name]:.2f}   (goal: >= 150 MB/s alone)")
    w = "CastWriter, 4 KiB reads"
    print(f"  {'CastWriter / script':40s} wall {wall[base] / wall[w]:.2f}, "
          f"cpu {cpu[base] / cpu[w]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
