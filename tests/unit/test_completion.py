"""bash completion for jit (completion/jit, shipped in
/usr/share/bash-completion/completions/jit): its lists equal the parser's, and the
function completes subcommands, options, choices and role names (issue 20, item 10).
Grant, request and recording ids: tests/integration/test_admin_cli.py."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from hostd.cli.extend import extend
from hostd.cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "completion" / "jit"


def complete(*words: str, env: dict[str, str] | None = None) -> list[str]:
    """COMPREPLY of _jit for the command line `words` (the last one being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    code = (f"source {SCRIPT}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _jit; "
            'printf "%s\\n" "${COMPREPLY[@]}"')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True,
                         text=True, check=True, env=env or {"PATH": "/usr/bin:/bin"})
    return [line for line in out.stdout.splitlines() if line]


def parser_commands() -> dict[str, set[str]]:
    """'audit' -> its options (without -h/--help/--json and hidden ones), 'grant verify'..."""
    out: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    out[prefix + name] = {
                        o for a in child._actions if a.help != argparse.SUPPRESS
                        for o in a.option_strings} - {"-h", "--help", "--json"}
                    walk(child, prefix + name + " ")

    walk(extend(build_parser()), "")
    return out


def script_lists() -> tuple[set[str], dict[str, set[str]]]:
    commands = parser_commands()
    code = (f"source {SCRIPT}; echo $_jit_commands; "
            + "".join(f'printf "%s|" "$(_jit_options "{c}")"; ' for c in commands))
    head, _, rest = subprocess.run(["bash", "--norc", "-c", code], capture_output=True,
                                   text=True, check=True).stdout.partition("|")
    lines = [head.split("\n")[-1], *rest.split("|")[:-1]]
    names = set(" ".join(head.split("\n")[:-1]).split())
    return names, {c: set(line.split()) for c, line in zip(commands, lines, strict=True)}


def test_the_scripts_lists_are_the_parsers() -> None:
    names, options = script_lists()
    commands = parser_commands()
    assert names == {c for c in commands if " " not in c}
    assert options == commands


@pytest.mark.parametrize(("words", "want"), [
    (("jit", "au"), ["audit"]),
    (("jit", "re"), ["revoke", "request", "requests", "reload", "replay", "revocations"]),
    (("jit", "revocations", ""), ["build", "reload", "status"]),
    (("jit", "revocations", "build", "--pr"), ["--previous"]),
    (("jit", "--v"), ["--version"]),
    (("jit", "audit", "--f"), ["--format"]),
    (("jit", "audit", "--j"), ["--json"]),
    (("jit", "watch", "--j"), []),  # jit watch refuses --json
    (("jit", "audit", "--format", ""), ["text", "json", "ocsf", "ecs"]),
    (("jit", "audit", "--since", "-1d", "--h"), ["--held-at", "--html", "--help"]),
    (("jit", "requests", "--c"), ["--cancel"]),
    (("jit", "setup", ""), ["sudo", "pam"]),
    (("jit", "setup", "sudo", "--e"), ["--enable"]),
    (("jit", "setup", "sudo", "--f"), ["--force"]),
    (("jit", "setup", "pam", "--f"), []),
    (("jit", "grant", ""), ["verify"]),
    (("jit", "idp", ""), ["refresh", "status"]),
    (("jit", "idp", "refresh", "--d"), ["--due"]),
    (("jit", "revocations", "fetch", "--f"), ["--force"]),
    (("jit", "login", "--r"), ["--roles", "--reason"]),
    (("jit", "--json", "grants", "--s"), ["--sessions"]),
])
def test_completes_subcommands_options_and_choices(words: tuple[str, ...],
                                                    want: list[str]) -> None:
    assert complete(*words) == want


def test_role_names_come_from_a_readable_policy(tmp_path: Path) -> None:
    (tmp_path / "etc/jit").mkdir(parents=True)
    (tmp_path / "etc/jit/jit.toml").write_text(
        '[roles.docker]\ngroups = ["docker"]\n\n[roles.db-admin]\nissuers = ["corp"]\n'
        '[roles.db-admin.x]\n[login]\n')  # a sub-table is no role
    env = {"PATH": "/usr/bin:/bin", "JIT_ROOT": str(tmp_path)}
    assert complete("jit", "request", "", env=env) == ["docker", "db-admin"]
    assert complete("jit", "issue", "--role", "d", env=env) == ["docker", "db-admin"]
    assert complete("jit", "audit", "--role", "db", env=env) == ["db-admin"]
