"""`jit --help` and every subcommand's help explain every option (issue 20): a walk over
the real parser fails on any argument without a help line, and the shared value formats
(DURATION, TIME, host selectors) are explained wherever an option takes one."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from hostd.cli import helptext
from hostd.cli.extend import extend
from hostd.cli.main import build_parser


def parsers() -> dict[str, argparse.ArgumentParser]:
    """'jit' -> the top parser, 'jit setup sudo' -> ..., every (sub)command."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        found[name] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child_name, child in action.choices.items():
                    walk(child, f"{name} {child_name}")

    walk(extend(build_parser()), "jit")
    return found


PARSERS = parsers()


def test_the_walk_sees_every_command() -> None:
    assert {"jit audit", "jit grant verify", "jit setup sudo", "jit setup pam", "jit reload",
            "jit replay", "jit requests"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_argument_has_a_help_line(name: str) -> None:
    parser = PARSERS[name]
    missing = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue  # hidden on purpose (test knobs)
        if isinstance(action, argparse._SubParsersAction):
            missing += [f"{name} {c.dest}" for c in action._choices_actions if not c.help]
        elif not (action.help or "").strip():
            missing.append(max(action.option_strings, key=len, default=action.dest))
    assert missing == []
    assert parser.description or name == "jit", f"{name} has no description"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_the_formats_an_option_takes_are_explained_in_its_help(name: str) -> None:
    parser = PARSERS[name]
    text = parser.format_help()
    for action in parser._actions:
        if action.metavar in helptext.FORMATS:
            assert helptext.FORMATS[action.metavar].split(":")[0] in text, (
                f"{name} {action.option_strings}: {action.metavar} is not explained")


def test_the_top_help_explains_every_format_and_the_exit_codes() -> None:
    text = " ".join(PARSERS["jit"].format_help().split())
    for meaning in helptext.FORMATS.values():
        assert " ".join(meaning.split()) in text
    assert "exits 0 when done, 1 when refused" in text


def test_every_format_is_used_by_some_option() -> None:
    """A format explained but taken by no option would be a stale paragraph."""
    used = {str(a.metavar) for p in PARSERS.values() for a in p._actions}
    assert set(helptext.FORMATS) <= used


def help_of(*argv: str) -> str:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as exit_:
        extend(build_parser()).parse_args([*argv, "--help"])
    assert exit_.value.code == 0
    return " ".join(stdout.getvalue().split())


def test_setup_sudo_help_says_what_enable_and_disable_do_to_sudo_conf() -> None:
    text = help_of("setup", "sudo")
    assert "--enable put jit_sudo.so's Plugin line in /etc/sudo.conf" in text
    assert "--disable restore /etc/sudo.conf from the backup" in text
    assert "--force" in text


def test_setup_pam_help_names_pam_auth_update_and_no_force() -> None:
    text = help_of("setup", "pam")
    assert "pam-auth-update --enable jitaccess" in text
    assert "--force" not in text


@pytest.mark.parametrize(("argv", "part"), [(["setup", "sudo", "--enable"], "sudo"),
                                            (["setup", "pam", "--disable"], "pam")])
def test_setup_parts_still_reach_cmd_setup(argv: list[str], part: str) -> None:
    args = extend(build_parser()).parse_args(argv)
    assert args.part == part and args.func.__name__ == "cmd_setup"


def test_pam_has_no_force() -> None:
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        extend(build_parser()).parse_args(["setup", "pam", "--enable", "--force"])


def test_jit1_explains_the_same_formats_as_the_help() -> None:
    """jit(1)'s VALUES section says what --help says, word for word (one text)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "packaging/debian/man/jit.1").read_text(
        encoding="utf-8")
    values = page.split(".SH VALUES", 1)[1].split("\n.SH ", 1)[0].replace("\\-", "-")
    text = " ".join(line for line in values.splitlines() if not line.startswith("."))
    for meaning in helptext.FORMATS.values():
        assert meaning in text


def test_jit_hostd_help_explains_every_option_jit_hostd8_names() -> None:
    """jit-hostd --help: a help line per option, and the options are jit-hostd(8)'s."""
    import re
    from pathlib import Path

    from hostd.server import daemon

    actions = daemon.build_parser()._actions
    assert [a.option_strings for a in actions if not (a.help or "").strip()] == []
    page = (Path(__file__).resolve().parents[2] / "packaging/debian/man/jit-hostd.8"
            ).read_text(encoding="utf-8").replace("\\-", "-")
    options = {o for a in actions for o in a.option_strings} - {"-h", "--help"}
    assert options == set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", page))


def test_every_command_takes_json() -> None:
    """README and jit(1): every command takes --json (one object; usage errors too)."""
    leaves = [name for name, p in PARSERS.items()
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    assert len(leaves) >= 18
    assert [n for n in leaves if "--json" not in PARSERS[n]._option_string_actions] == []
