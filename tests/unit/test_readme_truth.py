"""The README and the package agree with the code (issue 20): the key paths the README
names exist after install, every `jit ...` command line it shows parses, and the package
texts promise nothing the code lacks."""

from __future__ import annotations

import argparse
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


# The man pages and README.Debian: every command and option they name exists -----------------

MAN = REPO / "packaging/debian/man"
PAGES = [*sorted(MAN.glob("*.[158]")), REPO / "packaging/debian/README.Debian"]
PROSE = {"command", "is"}  # "jit command [options]", "jit is the command line"


def degroff(text: str) -> str:
    """Man page source as words: font escapes, quotes and macro names dropped, `\\-`
    as `-`, each paragraph's lines joined."""
    text = re.sub(r"\\f[BIRP]|\\c|\\&", "", text).replace("\\-", "-").replace("\\(dq", "")
    text = re.sub(r"^\.(?:B|BI|BR|I|IR|RB|IB)\s+", "", text, flags=re.M).replace('"', "")
    return re.sub(r"\n(?!\.)", " ", text)


def command_options() -> dict[str, set[str]]:
    """'grant verify' -> its option strings (with -h, --help), every (sub)command."""
    found: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    found[prefix + name] = {o for a in child._actions for o in a.option_strings}
                    walk(child, prefix + name + " ")

    walk(extend(build_parser()), "")
    return found


COMMAND_OPTIONS = command_options()
MENTION = re.compile(r"(?<![\w/.-])jit ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?((?: --[a-z][a-z-]*)*)")


def mentions(page: Path) -> list[tuple[str, list[str]]]:
    """(command, the options written right after it) of every `jit COMMAND` on the page."""
    out = []
    for m in MENTION.finditer(degroff(page.read_text(encoding="utf-8"))):
        first, second, options = m.groups()
        if first in PROSE:
            continue
        command = f"{first} {second}" if f"{first} {second}" in COMMAND_OPTIONS else first
        out.append((command, options.split()))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_jit_command_a_page_names_exists_with_its_options(page: Path) -> None:
    found = mentions(page)
    wrong = [(c, o) for c, o in found
             if c not in COMMAND_OPTIONS or not set(o) <= COMMAND_OPTIONS[c]]
    assert wrong == []


def test_the_pages_name_commands() -> None:
    assert len([m for p in PAGES for m in mentions(p)]) >= 25


def jit1_entries() -> list[tuple[str, list[str]]]:
    """(command, options) of each entry of jit(1)'s COMMANDS section: the options of its
    tag line and text, the tag split where it names several commands (`requests,
    approve ID, deny ID --reason TEXT`; then only the tag's options count)."""
    text = (MAN / "jit.1").read_text(encoding="utf-8")
    section = text.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    out = []
    for entry in section.split(".TP\n")[1:]:
        tag, _, body = entry.partition("\n")
        parts = degroff(tag).split(", ")
        for part in parts:
            words = part.replace("[", " ").replace("]", " ").replace("|", " ").split()
            if not words or words[0].startswith(("-", "JIT_")):
                continue  # --version, JIT_ROOT: the top parser's, the environment's
            command = " ".join(words[:2]) if " ".join(words[:2]) in COMMAND_OPTIONS \
                else words[0]
            options = [w for w in words if w.startswith("--")]
            if len(parts) == 1:
                options += re.findall(r"(?<![\w-])--[a-z][a-z-]*", degroff(body))
            out.append((command, options))
    return out


def test_jit1_describes_every_command_with_options_it_has() -> None:
    entries = jit1_entries()
    assert [(c, o) for c, o in entries if c not in COMMAND_OPTIONS
            or not set(o) <= COMMAND_OPTIONS[c]] == []
    leaves = {c for c in COMMAND_OPTIONS if not any(o.startswith(c + " ")
                                                    for o in COMMAND_OPTIONS)}
    assert leaves - {c for c, _ in entries} == set(), "commands jit(1) does not describe"
