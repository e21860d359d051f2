#!/usr/bin/python3
"""What inline masking costs (issue 10): Masker.feed over 256 MB of terminal-like text
(log lines, `ls -l`, code, hex, prose; two fake secrets per MiB), in pty-sized 4 KiB
reads and in 64 KiB reads, side by side in one run with two baselines:

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

from hostd.record.castfile import CastWriter
from hostd.record.masking import Masker

MIB = 1 << 20
TOTAL_MIB = 256
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


def masked(chunks: list[bytes]) -> Timer:
    m = Masker()
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
    check = Masker()
    out = check.feed(block) + check.flush()
    assert b"hunter2hunter2" not in out and b"AKIAIOSFODNN7EXAMPLE" not in out
    small, large = chunks_of(block, 4096), chunks_of(block, 65536)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "text"
        with open(path, "wb") as fh:
            for _ in range(TOTAL_MIB):
                fh.write(block)
        for _ in range(ROUNDS):
            for name, run in (("plain copy, 4 KiB reads", lambda: copy(small)),
                              ("plain copy, 64 KiB reads", lambda: copy(large)),
                              ("script -q -c cat", lambda: script(path)),
                              ("masked, 4 KiB reads", lambda: masked(small)),
                              ("masked, 64 KiB reads", lambda: masked(large)),
                              ("CastWriter, 4 KiB reads", lambda: recorded(small, Path(tmp)))):
                t = run()
                wall[name] = min(wall.get(name, float("inf")), t.wall)
                cpu[name] = min(cpu.get(name, float("inf")), max(t.cpu, 1e-9))
    mb = TOTAL_MIB * MIB / 1e6
    print(f"{TOTAL_MIB} MiB of text, best of {ROUNDS} rounds; built-in rules. MB/s of wall "
          f"time, and MB per CPU second (steadier on a busy machine)")
    for name in wall:
        print(f"  {name:26s} {mb / wall[name]:9.1f} MB/s   {mb / cpu[name]:9.1f} MB/cpu-s")
    base = "script -q -c cat"
    for size in ("4 KiB", "64 KiB"):
        m = f"masked, {size} reads"
        plain = wall[f"plain copy, {size} reads"]
        print(f"  masked / plain copy ({size}):  wall {plain / wall[m]:.3f}")
        print(f"  masked / script ({size}):      wall {wall[base] / wall[m]:.2f}, "
              f"cpu {cpu[base] / cpu[m]:.2f}   (goal >= 0.8)")
    w = "CastWriter, 4 KiB reads"
    print(f"  CastWriter / script:         wall {wall[base] / wall[w]:.2f}, "
          f"cpu {cpu[base] / cpu[w]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
