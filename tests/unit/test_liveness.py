"""is_live: the one answer to "does this grant hold now", and nothing else asks it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hostd.policy.liveness import is_live

NOW = 1_800_000_000
HOSTD = Path(__file__).resolve().parents[2] / "hostd"


@pytest.mark.parametrize("grant, live", [
    ({"state": "active", "exp": NOW + 1}, True),
    ({"exp": NOW + 1}, True),  # Core.list_grants' shape: active ones only, no state
    ({"state": "active", "exp": NOW}, False),  # at exp it no longer holds
    ({"state": "active", "exp": NOW - 5}, False),  # expired, swept or not
    ({"state": "revoked", "exp": NOW + 600}, False),
    ({"state": "expired", "exp": NOW + 600}, False),
    ({"state": "failed", "exp": NOW + 600}, False),
    ({"state": "active"}, False),
    ({"state": "active", "exp": str(NOW + 600)}, False),
    ({"state": "active", "exp": True}, False),
])
def test_is_live(grant, live):
    assert is_live(grant, NOW) is live


def _exp_compares(tree: ast.AST) -> list[int]:
    """Lines comparing a row's `exp` itself (`g["exp"] > now`): a liveness question."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if (isinstance(side, ast.Subscript) and isinstance(side.slice, ast.Constant)
                        and side.slice.value == "exp"):
                    found.append(node.lineno)
    return found


def test_no_module_asks_liveness_on_its_own():
    own = {}
    for path in sorted(HOSTD.rglob("*.py")):
        if path.name == "liveness.py":
            continue
        lines = _exp_compares(ast.parse(path.read_text(), str(path)))
        if lines:
            own[str(path.relative_to(HOSTD))] = lines
    assert own == {}, f"use hostd.policy.liveness.is_live: {own}"


def test_the_scan_finds_a_comparison():
    assert _exp_compares(ast.parse('live = g["exp"] > now and now < row["exp"]')) == [1, 1]
