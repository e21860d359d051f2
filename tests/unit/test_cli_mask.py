"""`jit mask test`: the host's rules on stdin or a file; exit 1 masked, 0 nothing,
2 bad rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def jit(root: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = dict(os.environ, JIT_ROOT=str(root), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "hostd.cli", "mask", "test", *args],
                          input=stdin, capture_output=True, env=env, timeout=60, check=False)


def policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "etc/jit").mkdir(parents=True, exist_ok=True)
    (tmp_path / "etc/jit/jit.toml").write_text(text)
    return tmp_path


def test_masked_text_counts_and_explanations(tmp_path):
    root = policy(tmp_path, '[masking]\nrules = [ { name = "ticket", regex = '
                            "'TICKET-[0-9]{6}' } ]\nfields = [\"pin\"]\n")
    text = b"TICKET-424242 pin=1234\n\x1b[31mAKIA\x1b[0mIOSFODNN7EXAMPLE\n"
    r = jit(root, "--explain", stdin=text)
    assert r.returncode == 1
    assert r.stdout == b"************* pin=****\n\x1b[31m****\x1b[0m****************\n"
    assert b"jit: ticket: line 1, columns 1-13" in r.stderr
    assert b"jit: aws_access_key_id: line 2, columns 14-29" in r.stderr
    (tmp_path / "in.txt").write_bytes(text)
    answer = json.loads(jit(root, "--json", str(tmp_path / "in.txt")).stdout)
    assert answer["counts"] == {"aws_access_key_id": 1, "field": 1, "ticket": 1}
    assert answer["rules_version"] == 2


def test_nothing_to_mask_exits_0(tmp_path):
    r = jit(tmp_path, stdin=b"nothing secret here\n")
    assert (r.returncode, r.stdout) == (0, b"nothing secret here\n")


def test_a_bad_rule_exits_2_and_names_it(tmp_path):
    r = jit(tmp_path, "--rule", "greedy=(a+)+", stdin=b"aaa")
    assert r.returncode == 2 and b"rule 'greedy': unbounded repeat" in r.stderr
    root = policy(tmp_path, "[masking]\nrules = [ { name = \"x\", regex = 'a{1,5}(' } ]\n")
    r = jit(root, stdin=b"aaa")
    assert r.returncode == 2 and b"masking.rules[0].regex" in r.stderr
    assert b"Traceback" not in r.stderr
