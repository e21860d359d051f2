"""Guardrails match the command, not its spelling (issue 17, item 3): the pure side.
The program's file identity is data here (guardrails.FileId), as the server passes it
after stat'ing; tests/e2e/test_e2e_sudo.py shows the same on a booted Debian 12."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostd.errors import ConfigError
from hostd.policy import sudo as sp
from hostd.policy.config import Config, parse_policy
from hostd.policy.guardrails import FileId, collapse, fold

NOW, HOST = 1_800_000_000, "web1"
ROOT = sp.RunasUser("root", 0, 0, "/root", "/bin/bash", (0,), "root")
RM = FileId("/usr/bin/rm", 2049, 77)
TOUCH = FileId("/usr/bin/touch", 2049, 78)
# merged /usr: /bin/rm and /proc/self/root/usr/bin/rm are the same file as /usr/bin/rm
FILES = {"/usr/bin/rm": RM, "/bin/rm": RM, "/proc/self/root/usr/bin/rm": RM,
         "/usr/bin/touch": TOUCH}
POLICY = {
    "roles": {"all": {"sudo": [{"commands": ["ALL"]}], "authenticate": False,
                      "approvers": ["bob"]}},
    "guardrails": [
        {"match": "^/usr/bin/rm -rf /( |$)", "message": "not the root"},
        {"program": "/usr/bin/rm", "args": ["^-[^-]*[rR]|^--recursive$", "^/"],
         "message": "recursive removal of absolute paths needs a ticket"},
        {"action": "approve", "match": "^/usr/bin/touch /root/approved"},
    ],
}
CONFIG = Config(**parse_policy(Path("jit.toml"), POLICY))
ALL = {"id": "g1", "user": "alice", "role": "all", "exp": NOW + 600}


def which(path: str) -> str | None:
    return path if path in FILES or path in ("/usr/local/bin/zap", "/usr/bin/cp",
                                             sp.DEFAULT_EDITOR) else None


def decide(argv: list[str], files=FILES, config: Config = CONFIG) -> sp.Decision:
    info = ["user=alice", "uid=1000", "gid=1000", "cwd=/home/alice", "tty=/dev/pts/3"]
    req = sp.SudoRequest.from_wire([], info, argv, [], [])
    return sp.decide(req, config, [ALL], set(), ROOT, NOW, HOST, which, files=files)


@pytest.mark.parametrize("argv", [
    ["rm", "-fr", "/tmp/v/a"], ["rm", "-r", "-f", "/tmp/v/b"],
    ["rm", "-rf", "/tmp/v/c", "extra"], ["/bin/rm", "-rf", "/tmp/v/e"],
    ["/proc/self/root/usr/bin/rm", "-rf", "/tmp/v/f"], ["rm", "--recursive", "/x"],
    ["rm", "-R", "/x"], ["/usr/bin/../bin/rm", "-rf", "/x"],
])
def test_recursive_rm_is_denied_however_it_is_spelt(argv):
    d = decide(argv)
    assert (d.code, d.guardrail) == ("guardrail_denied", 1), argv


@pytest.mark.parametrize("argv", [["rm", "-f", "/tmp/x"], ["rm", "-rf", "relative"],
                                  ["rm", "--force", "/tmp/x"]])
def test_argv_guardrail_lets_other_removals_run(argv):
    assert decide(argv).code == "allowed"


def test_program_is_compared_by_device_and_inode():
    other = {**FILES, "/usr/local/bin/zap": FileId("/usr/local/bin/zap", 2049, 77)}
    d = decide(["/usr/local/bin/zap", "-rf", "/x"], files=other)
    assert d.code == "guardrail_denied"


def test_match_guardrail_sees_the_canonical_program():
    d = decide(["/bin/rm", "-rf", "/"])
    assert (d.code, d.guardrail) == ("guardrail_denied", 0)


@pytest.mark.parametrize("path", ["/root/./approved-x", "/root//approved-y",
                                  "/root/sub/../approved-z", "//root/approved"])
def test_approve_guardrail_is_not_skipped_by_path_spelling(path):
    d = decide(["touch", path])
    assert (d.code, d.guardrail) == ("needs_approval", 2)


def test_the_canonical_command_is_what_runs_and_is_logged():
    d = decide(["/bin/rm", "-f", "/tmp//a/./b"])
    assert d.line == "/usr/bin/rm -f /tmp/a/b"
    assert "command=/usr/bin/rm" in d.command_info
    assert d.argv == ("/bin/rm", "-f", "/tmp//a/./b")  # argv_out as typed


def test_a_rule_naming_the_typed_path_still_holds():
    config = Config(**parse_policy(Path("jit.toml"), {
        "roles": {"all": {"sudo": [{"commands": ["/bin/rm -f *"]}], "authenticate": False}}}))
    assert decide(["/bin/rm", "-f", "/tmp/x"], config=config).code == "allowed"
    assert decide(["/usr/bin/rm", "-f", "/tmp/x"], config=config).code == "no_rule"


@pytest.mark.parametrize("raw,folded,collapsed", [
    ("/root/./x", "/root/x", "/root/x"), ("/root//x", "/root/x", "/root/x"),
    ("/a/./././b/.", "/a/b/", "/a/b"), ("/a/../b", "/a/../b", "/b"),
    ("/a/.hidden", "/a/.hidden", "/a/.hidden"), ("-rf", "-rf", "-rf"), ("/", "/", "/"),
])
def test_path_arguments_are_folded_lexically(raw, folded, collapsed):
    assert (fold(raw), collapse(raw)) == (folded, collapsed)


@pytest.mark.parametrize("rail,where,problem", [
    ({"match": "x", "program": "/usr/bin/rm"}, "match", "not both"),
    ({"args": ["x"]}, "match", "is required"),
    ({"program": "rm"}, "program", "absolute path"),
    ({"program": "/usr/bin/rm", "args": ["("]}, "args", "bad regular expression"),
    ({"program": "/usr/bin/rm", "args": [1]}, "args", "must be a string"),
])
def test_guardrail_forms_are_checked(rail, where, problem):
    with pytest.raises(ConfigError) as info:
        parse_policy(Path("jit.toml"), {"guardrails": [rail]})
    assert f"guardrails[0].{where}" in str(info.value) and problem in str(info.value)


def test_both_forms_describe_themselves():
    assert [g.describe() for g in CONFIG.guardrails] == [
        "deny match '^/usr/bin/rm -rf /( |$)'",
        "deny program /usr/bin/rm args '^-[^-]*[rR]|^--recursive$' '^/'",
        "approve match '^/usr/bin/touch /root/approved'"]


def test_a_deny_match_is_also_tried_on_the_line_as_typed():
    config = Config(**parse_policy(Path("jit.toml"), {
        "roles": POLICY["roles"], "guardrails": [{"match": "^rm -rf"}]}))
    assert decide(["rm", "-rf", "x"], config=config).code == "guardrail_denied"
    assert decide(["/bin/rm", "-rf", "x"], config=config).code == "allowed"


# --name=/path options and sudoedit (the gaps left by the first pass) ---------------------

CP = FileId("/usr/bin/cp", 2049, 79)
OPTION_RAILS = {
    "roles": POLICY["roles"],
    "guardrails": [
        {"program": "/usr/bin/cp", "args": [r"^--target-directory=/root/\.ssh(/|$)"],
         "message": "not into root's keys"},
        {"match": r"--reference=/root/secret( |$)", "message": "no"},
        {"program": "/usr/bin/sudoedit", "args": ["^/etc/shadow$"], "message": "vipw -s"},
    ],
}


@pytest.mark.parametrize("raw,folded,collapsed", [
    ("--out=/root//x", "--out=/root/x", "--out=/root/x"),
    ("--out=/a/./b/../c", "--out=/a/b/../c", "--out=/a/c"),
    ("--x.y_z=//a", "--x.y_z=/a", "--x.y_z=/a"),
    ("--out=rel//x", "--out=rel//x", "--out=rel//x"),  # not a path: as typed
    ("-o/a//b", "-o/a//b", "-o/a//b"),  # a short option's value is not guessed
    ("--=/a//b", "--=/a//b", "--=/a//b"),
])
def test_long_option_paths_are_folded(raw, folded, collapsed):
    assert (fold(raw), collapse(raw)) == (folded, collapsed)


@pytest.mark.parametrize("arg", ["--target-directory=/root//.ssh",
                                 "--target-directory=/root/./.ssh/",
                                 "--target-directory=/root/x/../.ssh",
                                 "--target-directory=//root/.ssh"])
def test_program_guardrail_sees_a_long_options_path_however_spelt(arg):
    config = Config(**parse_policy(Path("jit.toml"), OPTION_RAILS))
    d = decide(["cp", arg, "/tmp/k"], files={**FILES, "/usr/bin/cp": CP}, config=config)
    assert (d.code, d.guardrail) == ("guardrail_denied", 0), arg


def test_match_guardrail_sees_a_long_options_path_folded():
    config = Config(**parse_policy(Path("jit.toml"), OPTION_RAILS))
    d = decide(["touch", "--reference=/root/./secret", "/tmp/x"], config=config)
    assert (d.code, d.guardrail) == ("guardrail_denied", 1)
    assert d.line == "/usr/bin/touch --reference=/root/secret /tmp/x"  # what is logged


def sudoedit(files: list[str], config: Config) -> sp.Decision:
    info = ["user=alice", "uid=1000", "gid=1000", "cwd=/home/alice", "tty=/dev/pts/3"]
    req = sp.SudoRequest.from_wire(["sudoedit=true"], info, ["sudoedit", *files], [], [])
    return sp.decide(req, config, [ALL], set(), ROOT, NOW, HOST, which, files=FILES)


@pytest.mark.parametrize("path", ["/etc/shadow", "/etc//shadow", "/etc/./shadow",
                                  "../../etc/shadow", "/etc/x/../shadow"])
def test_program_guardrail_holds_for_sudoedit_and_its_files(path):
    config = Config(**parse_policy(Path("jit.toml"), OPTION_RAILS))
    d = sudoedit(["/tmp/notes", path], config)
    assert (d.code, d.guardrail) == ("guardrail_denied", 2), path


def test_sudoedit_guardrail_holds_for_sudoedit_only():
    config = Config(**parse_policy(Path("jit.toml"), OPTION_RAILS))
    assert sudoedit(["/etc/passwd"], config).code == "allowed"
    assert decide(["/usr/bin/editor", "/etc/shadow"], config=config).code == "allowed"
    # an absolute program guardrail is not sudoedit's (sudoers: the editor runs as you)
    assert sudoedit(["/tmp/x"], CONFIG).code == "allowed"
    assert config.guardrails[2].describe() == "deny program sudoedit args '^/etc/shadow$'"
