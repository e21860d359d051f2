"""The README and the package agree with the code (issue 20): the key paths the README
names exist after install, every `jit ...` command line it shows parses, and the package
texts promise nothing the code lacks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from hostd.cli.argv import join_relative_times
from hostd.cli.extend import extend
from hostd.cli.main import build_parser

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


def readme_commands() -> list[str]:
    """Every `jit ...` line of the README's code blocks: prompts (`alice$ `) dropped,
    continuation lines joined, comments left to shlex."""
    found = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", README, re.S | re.M):
        text = re.sub(r"\\\n\s*", " ", block)
        for line in text.splitlines():
            line = re.sub(r"^\w+[$#]\s+", "", line.strip())
            if line.startswith("jit "):
                found.append(line)
    return found


COMMANDS = readme_commands()


def test_the_readme_shows_commands() -> None:
    assert len(COMMANDS) >= 20, COMMANDS  # the walk below must have something to walk


@pytest.mark.parametrize("line", COMMANDS)
def test_every_command_the_readme_shows_parses_as_written(line: str, capsys) -> None:
    parser = extend(build_parser())
    argv = shlex.split(line, comments=True)[1:]
    try:
        args = parser.parse_args(join_relative_times(parser, argv))
    except SystemExit:
        pytest.fail(f"`{line}` does not parse: {capsys.readouterr().err.strip()}")
    assert callable(args.func)


# Claims the package texts once made that the code disproves (issue 20, item 9).
FALSE_CLAIMS = ["come in later versions", "comes in a later version", "in a later version",
                "changes no sudo or pam configuration", "for the recorder to come",
                "systemctl reload jit-hostd"]
TEXTS = ["packaging/debian/control", "packaging/debian/README.Debian", "README.md"]


@pytest.mark.parametrize("name", TEXTS)
def test_the_package_texts_promise_nothing_the_code_lacks(name: str) -> None:
    text = " ".join((REPO / name).read_text(encoding="utf-8").lower().split())
    text = text.replace("\n ", " ")
    assert [c for c in FALSE_CLAIMS if c in text] == []


def test_what_the_description_says_ships_does() -> None:
    """The description names recording and login gating: the package installs both."""
    install = (REPO / "packaging/debian/jitaccess.install").read_text(encoding="utf-8")
    scripts = (REPO / "setup.cfg").read_text(encoding="utf-8")
    control = (REPO / "packaging/debian/control").read_text(encoding="utf-8")
    assert "recorded" in control and "jit-record = " in scripts
    assert "PAM module" in control and "usr/share/pam-configs/" in install
