"""The op registry is the one place an op is declared: every op has a handler, a schema
and a section in docs/PROTOCOL.md, and every error code used anywhere is catalogued."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
from pathlib import Path

import pytest

from hostd import errors, protocol
from hostd.server.connections import Server
from hostd.server.ops import register

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "PROTOCOL.md").read_text()
DOC_SECTIONS = set(re.findall(r"^### `([a-z_.]+)`$", DOC, re.M))


@pytest.fixture
def table(tmp_path, config, host, mint):
    """The op table of a server as service.py composes one."""
    from test_core import World
    from test_server import FakeTimers

    world = World(tmp_path, config, host, mint)
    server = Server(world.core, FakeTimers())
    yield server.ops
    server.close()
    world.store.close()


@pytest.mark.parametrize("name", sorted(protocol.OPS))
def test_every_op_has_a_coroutine_handler(table, name):
    op = protocol.OPS[name]
    handler = table.get(name)
    assert handler is not None, f"{name}: no handler registered"
    assert inspect.iscoroutinefunction(handler)
    assert handler.__name__ == op.handler
    params = list(inspect.signature(handler).parameters)
    assert params == (["args", "caller"] if op.kind == protocol.CALL
                      else ["args", "caller", "channel"])


@pytest.mark.parametrize("name", sorted(protocol.OPS))
def test_every_op_has_a_valid_schema(name):
    op = protocol.OPS[name]
    assert op.name == name and op.summary
    assert op.access in (protocol.ANYONE, protocol.ROOT)
    assert op.kind in (protocol.CALL, protocol.WAIT, protocol.STREAM)
    for key, spec in op.fields.items():
        assert isinstance(spec, protocol.Field), key
        assert spec.kind in ("str", "int", "bool", "strlist"), key
        if spec.kind in ("str", "strlist"):
            assert spec.length > 0, f"{name}.{key}: a string needs a length bound"
        if spec.kind == "strlist":
            assert spec.items > 0, f"{name}.{key}: a list needs an item bound"
        if spec.kind == "int":
            assert spec.low <= spec.high <= protocol.MAX_INT


def test_docs_have_a_section_per_op_and_no_other():
    assert DOC_SECTIONS == set(protocol.OPS)


@pytest.mark.parametrize("name", sorted(protocol.OPS))
def test_docs_name_every_field_and_the_kind(name):
    op = protocol.OPS[name]
    section = DOC.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    head = section.strip().splitlines()[0]  # "kind · who · works without policy. fields"
    assert head.startswith(op.kind)
    assert ("· root only" in head) == (op.access == protocol.ROOT)
    assert ("works without policy" in head) == op.without_policy
    for key in op.fields:
        assert f"`{key}`" in section, f"{name}: field {key} undocumented"


def test_the_table_holds_every_op_and_nothing_else(table):
    assert set(table) == set(protocol.OPS)


def test_an_op_is_registered_once():
    """Two families answering the same op would leave one silently unused."""
    class First:
        async def op_status(self, args, caller):
            return {}

    class Second:
        async def op_status(self, args, caller):
            return {}

    ops = register({}, First())
    with pytest.raises(ValueError, match="registered twice"):
        register(ops, Second())


def test_a_handler_without_an_op_is_refused():
    class Stray:
        async def op_no_such_thing(self, args, caller):
            return {}

    with pytest.raises(ValueError, match="answers no op"):
        register({}, Stray())


def _codes_used() -> dict[str, str]:
    """Every literal error code in hostd: JitError/_refuse/... calls and "code" keys."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "hostd").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            code = None
            if isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in ("JitError", "_refuse", "_fail") and isinstance(
                        node.args[0], ast.Constant):
                    code = node.args[0].value
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if (isinstance(k, ast.Constant) and k.value == "code"
                            and isinstance(v, ast.Constant)):
                        code = v.value
            if isinstance(code, str) and code != "ok":
                found.setdefault(code, f"{path.name}:{node.lineno}")
    return found


def test_every_error_code_used_is_catalogued():
    used = _codes_used()
    assert len(used) > 20, "the scan found too little to be trusted"
    missing = {c: where for c, where in used.items() if c not in errors.ALL_CODES}
    assert not missing


def test_every_catalogued_code_is_documented():
    for code in errors.ALL_CODES:
        assert code in DOC or code in (REPO / "docs" / "DESIGN.md").read_text(), code


def test_client_imports_only_the_standard_library():
    """The PAM module, the recorder and the expiry timer import the client on hot paths."""
    heavy = ("cryptography", "jwt", "dbus_next", "pyroute2", "systemd", "asyncio", "sqlite3")
    for module in ("hostd.client", "hostd.protocol", "hostd.errors"):
        probe = (f"import sys, {module}; heavy = {heavy!r}; "
                 "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
        out = subprocess.run(["/usr/bin/python3", "-c", probe], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout.strip()
        assert out == "[]", f"{module} pulls in {out}"


def test_client_never_reads_the_environment():
    """The socket path is an explicit argument: JIT_ROOT under su must not steer PAM."""
    tree = ast.parse((REPO / "hostd" / "client.py").read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"environ", "getenv", "environb", "getenvb"}
