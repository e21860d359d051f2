"""hostd's shape (DESIGN.md §13 "The policy package"): the pure policy package loads no
state, no I/O library and starts no thread; the module import graph has no cycle and
follows the layering table; no module is over 500 lines, no function over 60."""

from __future__ import annotations

import ast
import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HOSTD = REPO / "hostd"
PYTHON = "/usr/bin/python3"

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(HOSTD.rglob("*.py"))}
POLICY = sorted(m for m in MODULES if m.startswith("hostd.policy."))


# the pure policy package --------------------------------------------------------------------

# What policy must never load: state (sqlite3), D-Bus, systemd's journal, netlink.
STATEFUL = ("sqlite3", "dbus_next", "dbus_fast", "systemd", "pyroute2")
CRYPTO = ("jwt", "cryptography")
# Only these verify grants or read keys; every other policy module loads neither.
CRYPTO_USERS = {"hostd.policy.keys": {"cryptography"},
                "hostd.policy.idptoken": {"cryptography", "jwt"},
                "hostd.policy.grants": {"cryptography", "jwt"},
                "hostd.policy.revocations": {"cryptography", "jwt"}}  # verifies with grants'

PROBE = """
import importlib, json, os, sys, threading
roots, names = json.loads(sys.argv[1]), sys.argv[2:]
for name in names:
    importlib.import_module(name)
print(json.dumps({
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in roots),
    "threads": threading.active_count(),
    "tasks": len(os.listdir("/proc/self/task")),
}))
"""


def _probe(*names: str) -> dict:
    """Import `names` in a fresh /usr/bin/python3: what got loaded, how many threads."""
    roots = json.dumps([*STATEFUL, *CRYPTO])
    out = subprocess.run([PYTHON, "-c", PROBE, roots, *names], capture_output=True, text=True,
                         cwd=REPO, check=True, timeout=60)
    return json.loads(out.stdout)


def test_policy_package_is_found():
    assert {"hostd.policy.approvals", "hostd.policy.sudo", "hostd.policy.logins",
            "hostd.policy.liveness", "hostd.policy.config"} <= set(POLICY)


def test_importing_all_of_policy_loads_no_state_and_starts_no_thread():
    found = _probe(*POLICY)
    assert not [m for m in found["loaded"] if m.split(".")[0] in STATEFUL], found
    assert found["threads"] == 1 and found["tasks"] == 1, found


@pytest.mark.parametrize("name", POLICY)
def test_only_grant_and_key_modules_load_jwt_or_cryptography(name):
    found = _probe(name)
    roots = {m.split(".")[0] for m in found["loaded"]}
    assert roots == CRYPTO_USERS.get(name, set()), found


def test_the_probe_sees_what_it_looks_for():
    found = _probe("sqlite3", "jwt")
    assert {"sqlite3", "jwt"} <= set(found["loaded"])


# imports: no cycle, and each package imports only the packages below it ---------------------

# Packages of hostd and whom they may import. `top` is hostd's shared modules (client,
# wire, protocol, errors, paths, events); `main` is `python3 -m hostd`.
LAYERS = {
    "top": {"top"},
    "masking": {"top", "masking"},
    "policy": {"top", "masking", "policy"},
    "state": {"top", "masking", "policy", "state"},
    "core": {"top", "masking", "policy", "state", "core"},
    "record": {"top", "masking", "policy", "record"},
    "audit": {"top", "masking", "policy", "state", "audit"},
    "fetch": {"top", "masking", "policy", "state", "fetch"},
    "cli": {"top", "masking", "policy", "state", "record", "audit", "fetch", "cli"},
    "server": {"top", "masking", "policy", "state", "core", "record", "server"},
    "main": {"top", "server"},
}


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "hostd.__main__":
        return "main"
    if len(parts) > 1 and (HOSTD / parts[1]).is_dir():
        return parts[1]
    return "top"


def imports_of(module: str, path: Path) -> set[str]:
    """hostd modules `module` imports anywhere: at the top, in functions, under
    TYPE_CHECKING. `from P import M` names module P.M when there is one, else P."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m == "hostd" or m.startswith("hostd.")}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {m: imports_of(m, p) & set(modules) for m, p in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a self-import
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


GRAPH = import_graph(MODULES)


def test_no_import_cycle():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_follow_the_layering_table():
    wrong = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                   if layer(d) not in LAYERS[layer(m)])
    assert not wrong, "imports against the layering table:\n" + "\n".join(wrong)


def test_every_package_has_a_row():
    packages = {p.name for p in HOSTD.iterdir() if (p / "__init__.py").exists()}
    assert packages | {"top", "main"} == set(LAYERS)


def test_the_graph_sees_nested_imports_and_the_checks_can_fail(tmp_path):
    src = tmp_path / "hostd" / "policy"
    src.mkdir(parents=True)
    (src / "a.py").write_text("def f():\n    from hostd.core import b\n")
    assert imports_of("hostd.policy.a", src / "a.py") == {"hostd.core"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert layer("hostd.policy.sudo") not in LAYERS["top"]
    assert "hostd.policy.config" in GRAPH["hostd.policy.sudo"]


# sizes --------------------------------------------------------------------------------------

def _too_long() -> tuple[list[str], list[str]]:
    modules, functions = [], []
    for name, path in MODULES.items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            modules.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    functions.append(f"{name}.{node.name}: {length} lines")
    return modules, functions


def test_no_module_over_500_lines():
    modules = _too_long()[0]
    assert not modules, "split these modules:\n" + "\n".join(modules)


def test_no_function_over_60_lines():
    functions = _too_long()[1]
    assert not functions, "split these functions:\n" + "\n".join(functions)


# docs/DESIGN.md §1.1 is the layout: it must say what the tree and LAYERS say --------------

def _design_layout() -> dict[str, tuple[set[str], set[str]]]:
    """layer -> (modules listed, layers it may import), from DESIGN §1.1's table."""
    text = (HOSTD.parent / "docs" / "DESIGN.md").read_text()
    section = text.split("### 1.1 The house", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("package", "---"):
            continue
        name = cells[0].split()[0].strip("`").removeprefix("hostd/").strip("/")
        rows[name] = ({m.strip() for m in cells[1].split(",")},
                      {m.strip() for m in cells[3].split(",")})
    return rows


def test_the_design_layout_section_lists_every_module_of_the_tree():
    rows = _design_layout()
    assert set(rows) == set(LAYERS)
    tree: dict[str, set[str]] = {name: set() for name in LAYERS}
    for path in HOSTD.rglob("*.py"):
        module = ".".join(path.relative_to(HOSTD.parent).with_suffix("").parts)
        if path.name == "__init__.py":
            continue
        tree[layer(module)].add(path.stem)
    for name, (listed, _) in rows.items():
        assert listed == tree[name], f"DESIGN §1.1 row {name}: {sorted(listed ^ tree[name])}"


def test_the_design_layout_section_states_the_enforced_layering():
    for name, (_, may_import) in _design_layout().items():
        assert may_import | {name} == LAYERS[name] | {name}, name  # itself implied
