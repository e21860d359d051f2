"""sudo_policy: the decisions of `sudo.check` (as sudoers would take them on Debian 12),
table by table, over a policy parsed by config.parse_policy, a fixed clock and a fake
file system (`which`). Nothing here touches the host: the module is pure."""

from __future__ import annotations

import ast
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from hostd.errors import JitError
from hostd.policy import guardrails, sudoenv, sudorequest, sudorules
from hostd.policy import sudo as sp
from hostd.policy.approvals import command_subject
from hostd.policy.config import Config, parse_policy

NOW = 1_800_000_000
HOST = "db1"
SECURE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

POLICY = {
    "roles": {
        "db-admin": {
            "sudo": [
                {"runas": "postgres", "commands": ["/usr/bin/psql *"]},
                {"runas": "root", "commands": [
                    "/usr/bin/systemctl restart postgresql",
                    "/usr/bin/systemctl stop *",
                    "/usr/bin/ls",
                    '/usr/bin/uptime ""',
                    "/usr/bin/echo a\\*",
                    "/usr/bin/cat /var/log/[a-c]*.log",
                    "/usr/bin/sudoedit /etc/postgresql/*/main/pg_hba.conf",
                ]},
            ],
            "authenticate": True,
        },
        "ops": {"sudo": [{"runas": "root", "commands": ["ALL"]}], "authenticate": False},
        "local": {"sudo": [{"runas": "root", "commands": ["/usr/local/bin/*", "/opt/tools/"]}]},
        "docker": {"groups": ["docker"]},
    },
    "guardrails": [
        {"action": "deny", "match": "^/usr/bin/rm -rf /( |$)",
         "message": "not the root file system"},
        {"action": "approve", "match": "^/usr/bin/systemctl (stop|disable) "},
    ],
    "standing": [
        {"members": ["carol", "%oncall"],
         "sudo": [{"runas": "root", "commands": ["/usr/bin/journalctl *"]}]},
    ],
}
CONFIG = Config(**parse_policy(Path("/etc/jit/jit.toml"), POLICY))

EXECUTABLES = {
    "/usr/bin/ls", "/bin/ls", "/usr/bin/psql", "/usr/bin/systemctl", "/usr/bin/uptime",
    "/usr/bin/echo", "/usr/bin/cat", "/usr/bin/rm", "/usr/bin/journalctl",
    "/usr/local/bin/tool", "/usr/bin/tool", "/usr/local/bin/sub/x", "/opt/tools/a",
    "/opt/tools/x/b", "/home/alice/bin/script", "/bin/bash", "/usr/bin/editor",
    "/usr/bin/vim", "/usr/bin/sudoedit",
}


def which(path: str) -> str | None:
    return path if path in EXECUTABLES else None


ROOT = sp.RunasUser("root", 0, 0, "/root", "/bin/bash", (0,), "root")
POSTGRES = sp.RunasUser("postgres", 105, 110, "/var/lib/postgresql", "/bin/bash",
                        (110, 111), "postgres")
NOBODY = sp.RunasUser("nobody", 65534, 65534, "/nonexistent", "/usr/sbin/nologin", (65534,),
                      "nogroup")
ACCOUNTS = {"root": ROOT, "postgres": POSTGRES, "#105": POSTGRES, "nobody": NOBODY}


def grant(role: str, gid: str = "g1", exp: int = NOW + 600, **extra) -> dict:
    return {"id": gid, "user": "alice", "role": role, "exp": exp,
            "not_after": "2027-01-15T08:10:00Z", **extra}


def request(argv: list[str], user: str = "alice", uid: int = 1000, cwd: str = "/home/alice",
            env: dict | None = None, env_add: list[str] | None = None,
            umask: str = "022", **settings: str) -> sp.SudoRequest:
    info = [f"user={user}", f"uid={uid}", "gid=1000", f"cwd={cwd}", "tty=/dev/pts/3",
            f"host={HOST}", f"umask={umask}"]
    env = {"TERM": "xterm", "PATH": "/home/alice/bin:/usr/bin"} if env is None else env
    return sp.SudoRequest.from_wire([f"{k}={v}" for k, v in settings.items()], info, argv,
                                    [f"{k}={v}" for k, v in env.items()], env_add or [])


def decide(req: sp.SudoRequest, grants: list[dict], runas: sp.RunasUser | None = None,
           groups: set[str] | None = None) -> sp.Decision:
    runas = runas or ACCOUNTS[req.runas_user]
    return sp.decide(req, CONFIG, grants, groups or set(), runas, NOW, HOST, which)


DB, OPS, LOCAL, DOCKER = grant("db-admin"), grant("ops", "g2"), grant("local", "g3"), \
    grant("docker", "g4")

# name, argv, settings, grants, expected code, expected command (command_info's command=)
CASES = [
    # ALL and secure_path resolution
    ("all-any-command", ["ls", "-la"], {}, [OPS], "allowed", "/usr/bin/ls"),
    ("secure-path-order", ["tool"], {}, [OPS], "allowed", "/usr/local/bin/tool"),
    ("user-path-ignored", ["script"], {}, [OPS], "command_not_found", ""),
    ("relative-with-slash-from-cwd", ["bin/script"], {}, [OPS], "allowed",
     "/home/alice/bin/script"),
    ("dot-relative", ["./bin/script"], {}, [OPS], "allowed", "/home/alice/bin/script"),
    ("dotdot-normalised", ["../../usr/bin/ls"], {}, [DB], "allowed", "/usr/bin/ls"),
    ("double-slash-normalised", ["//usr//bin/ls"], {}, [DB], "allowed", "/usr/bin/ls"),
    ("absolute-as-given", ["/usr/bin/ls"], {}, [DB], "allowed", "/usr/bin/ls"),
    ("absolute-other-spelling-no-rule", ["/bin/ls"], {}, [DB], "no_rule", ""),
    ("not-found", ["nosuch"], {}, [OPS], "command_not_found", ""),
    ("not-found-relative", ["./nosuch"], {}, [OPS], "command_not_found", ""),
    # a rule without arguments allows any; `""` allows none
    ("no-args-rule-any-args", ["ls", "/etc", "-l"], {}, [DB], "allowed", "/usr/bin/ls"),
    ("empty-args-rule-no-args", ["uptime"], {}, [DB], "allowed", "/usr/bin/uptime"),
    ("empty-args-rule-refuses-args", ["uptime", "-p"], {}, [DB], "no_rule", ""),
    ("empty-args-rule-refuses-empty-arg", ["uptime", ""], {}, [DB], "no_rule", ""),
    # exact arguments and argument globs (joined with spaces, `*` matches spaces and /)
    ("exact-args", ["systemctl", "restart", "postgresql"], {}, [DB], "allowed",
     "/usr/bin/systemctl"),
    ("exact-args-extra", ["systemctl", "restart", "postgresql", "x"], {}, [DB], "no_rule", ""),
    ("exact-args-other", ["systemctl", "restart", "nginx"], {}, [DB], "no_rule", ""),
    ("glob-args", ["psql", "-U", "app", "db/x"], {"runas_user": "postgres"}, [DB], "allowed",
     "/usr/bin/psql"),
    ("glob-star-matches-no-args", ["psql"], {"runas_user": "postgres"}, [DB], "allowed",
     "/usr/bin/psql"),  # sudoers: fnmatch("*", "")
    ("escaped-star-literal", ["echo", "a*"], {}, [DB], "allowed", "/usr/bin/echo"),
    ("escaped-star-not-wild", ["echo", "ab"], {}, [DB], "no_rule", ""),
    ("bracket-range", ["cat", "/var/log/boot.log"], {}, [DB], "allowed", "/usr/bin/cat"),
    ("bracket-range-out", ["cat", "/var/log/syslog.log"], {}, [DB], "no_rule", ""),
    ("arg-glob-crosses-slash", ["cat", "/var/log/a/../../../etc/shadow.log"], {}, [DB],
     "allowed", "/usr/bin/cat"),  # as sudoers warns: wildcards in arguments match `/`
    # path globs and directories never match `/`
    ("path-glob", ["tool"], {}, [LOCAL], "allowed", "/usr/local/bin/tool"),
    ("path-glob-not-subdir", ["/usr/local/bin/sub/x"], {}, [LOCAL], "no_rule", ""),
    ("directory-rule", ["/opt/tools/a"], {}, [LOCAL], "allowed", "/opt/tools/a"),
    ("directory-not-subdir", ["/opt/tools/x/b"], {}, [LOCAL], "no_rule", ""),
    # runas
    ("runas-by-uid", ["psql", "-l"], {"runas_user": "#105"}, [DB], "allowed", "/usr/bin/psql"),
    ("runas-wrong-user", ["psql", "-l"], {}, [DB], "no_rule", ""),
    ("runas-none-for-user", ["ls"], {"runas_user": "nobody"}, [DB], "runas_not_allowed", ""),
    ("runas-group-own", ["psql", "-l"], {"runas_user": "postgres", "runas_group": "postgres"},
     [DB], "allowed", "/usr/bin/psql"),
    ("runas-group-own-gid", ["ls"], {"runas_group": "#0"}, [DB], "allowed", "/usr/bin/ls"),
    ("runas-group-other", ["psql", "-l"], {"runas_user": "postgres", "runas_group": "root"},
     [DB], "runas_not_allowed", ""),
    # grants
    ("no-grant", ["ls"], {}, [], "no_grant", ""),
    ("expired-grant-ignored", ["ls"], {}, [grant("ops", exp=NOW)], "no_grant", ""),
    ("revoked-grant-ignored", ["ls"], {}, [grant("ops", state="revoked")], "no_grant", ""),
    ("other-users-grant-ignored", ["ls"], {}, [grant("ops", user="bob")], "no_grant", ""),
    ("role-without-sudo", ["ls"], {}, [DOCKER], "no_grant", ""),
    ("unknown-role", ["ls"], {}, [grant("gone")], "no_grant", ""),
    ("other-role-ignored", ["journalctl"], {}, [DB], "no_rule", ""),
    ("second-grant-allows", ["journalctl"], {}, [DOCKER, DB, OPS], "allowed",
     "/usr/bin/journalctl"),
    # guardrails come first: deny beats ALL and even no grant
    ("guardrail-deny-over-all", ["rm", "-rf", "/"], {}, [OPS], "guardrail_denied", ""),
    ("guardrail-deny-no-grant", ["rm", "-rf", "/"], {}, [], "guardrail_denied", ""),
    ("guardrail-deny-resolved", ["../../usr/bin/rm", "-rf", "/", "x"], {}, [OPS],
     "guardrail_denied", ""),
    ("guardrail-deny-not-matching", ["rm", "-rf", "/tmp/x"], {}, [OPS], "allowed",
     "/usr/bin/rm"),
    ("guardrail-approve", ["systemctl", "stop", "nginx"], {}, [OPS], "needs_approval", ""),
    ("guardrail-approve-needs-rule", ["systemctl", "disable", "x"], {}, [DB], "no_rule", ""),
    # options sudoers needs a tag for
    ("preserve-env", ["ls"], {"preserve_environment": "true"}, [OPS], "option_not_allowed", ""),
    ("preserve-env-false", ["ls"], {"preserve_environment": "false"}, [OPS], "allowed",
     "/usr/bin/ls"),
    ("chdir", ["ls"], {"cmnd_cwd": "/etc"}, [OPS], "option_not_allowed", ""),
    ("preserve-groups", ["ls"], {"preserve_groups": "true"}, [OPS], "option_not_allowed", ""),
    ("chroot", ["ls"], {"cmnd_chroot": "/srv"}, [OPS], "option_not_allowed", ""),
    # shells
    ("login-shell", ["/bin/bash"], {"login_shell": "true"}, [OPS], "allowed", "/bin/bash"),
    ("login-shell-needs-rule", ["/bin/bash"], {"login_shell": "true"}, [DB], "no_rule", ""),
]


@pytest.mark.parametrize("name,argv,settings,grants,code,command", CASES,
                         ids=[c[0] for c in CASES])
def test_decide(name, argv, settings, grants, code, command):
    d = decide(request(argv, **settings), grants)
    assert d.code == code, d.message
    assert d.allowed == (code == "allowed")
    if command:
        assert f"command={command}" in d.command_info


SUDOEDIT_CASES = [
    # name, files, cwd, env, grants, code, editor argv
    ("rule-glob", ["/etc/postgresql/15/main/pg_hba.conf"], "/home/alice", {"EDITOR": "vim"},
     [DB], "allowed", ["/usr/bin/vim"]),
    ("relative-file", ["pg_hba.conf"], "/etc/postgresql/15/main", {"EDITOR": "vim"}, [DB],
     "allowed", ["/usr/bin/vim"]),
    ("glob-not-across-slash", ["/etc/postgresql/15/x/main/pg_hba.conf"], "/", {}, [DB],
     "no_rule", None),
    ("other-file", ["/etc/shadow"], "/", {}, [DB], "no_rule", None),
    ("dotdot-out", ["/etc/postgresql/15/main/../../../shadow"], "/", {}, [DB], "no_rule", None),
    ("two-files-one-rule", ["/etc/postgresql/15/main/pg_hba.conf", "/etc/postgresql/16/main/"
                            "pg_hba.conf"], "/", {}, [DB], "no_rule", None),
    ("all-allows-sudoedit", ["/etc/shadow"], "/", {"VISUAL": "vim -n"}, [OPS], "allowed",
     ["/usr/bin/vim", "-n"]),
    ("sudo-editor-first", ["/etc/motd"], "/", {"SUDO_EDITOR": "vim", "EDITOR": "nano"}, [OPS],
     "allowed", ["/usr/bin/vim"]),
    ("editor-with-dashdash-skipped", ["/etc/motd"], "/", {"EDITOR": "vim -- /etc/shadow"},
     [OPS], "allowed", ["/usr/bin/editor"]),
    ("editor-not-found-falls-back", ["/etc/motd"], "/", {"EDITOR": "nano"}, [OPS], "allowed",
     ["/usr/bin/editor"]),
    ("no-files", [], "/", {}, [OPS], "bad_request", None),
    ("no-grant", ["/etc/motd"], "/", {}, [], "no_grant", None),
]


@pytest.mark.parametrize("name,files,cwd,env,grants,code,editor", SUDOEDIT_CASES,
                         ids=[c[0] for c in SUDOEDIT_CASES])
def test_sudoedit(name, files, cwd, env, grants, code, editor):
    d = decide(request(["sudoedit", *files], cwd=cwd, env=env, sudoedit="true"), grants)
    assert d.code == code, d.message
    if editor is not None:
        resolved = [f if f.startswith("/") else f"{cwd}/{f}" for f in files]
        assert d.argv == (*editor, "--", *resolved)
        assert f"command={editor[0]}" in d.command_info
        assert "sudoedit=true" in d.command_info
        assert f"sudoedit_nfiles={len(files)}" in d.command_info
        assert "intercept=true" not in d.command_info  # the editor runs as the user


def test_sudoedit_rule_does_not_allow_running_sudoedit_as_a_command():
    d = decide(request(["sudoedit", "/etc/postgresql/15/main/pg_hba.conf"]), [DB])
    assert d.code == "no_rule"


# standing rules ---------------------------------------------------------------------------

STANDING = [
    ("by-name", "carol", set(), "allowed"),
    ("by-group", "dave", {"oncall"}, "allowed"),
    ("group-name-is-not-user", "oncall", set(), "no_grant"),
    ("not-member", "erin", {"developers"}, "no_grant"),
]


@pytest.mark.parametrize("name,user,groups,code", STANDING, ids=[c[0] for c in STANDING])
def test_standing(name, user, groups, code):
    d = decide(request(["journalctl", "-u", "x"], user=user), [], groups=groups)
    assert d.code == code
    if code == "allowed":
        assert d.source == sp.Source("standing", "root", "/usr/bin/journalctl *", standing=0)
        assert d.needs_password  # no setting for standing entries: sudoers' default


def test_grant_comes_before_standing_and_names_itself():
    d = decide(request(["journalctl"], user="carol"),
               [grant("ops", "abc123", user="carol")])
    assert d.source == sp.Source("grant", "root", "ALL", grant_id="abc123", role="ops")


def test_intercepted_command_is_checked_as_itself():
    """A program started inside `sudo -i` comes back as itself: no shell, no password,
    the invocation's flags gone (sudoers' MODE_INTERCEPT_MASK), guardrails and rules
    applied as to any command."""
    def again(argv, grants):
        req = sp.SudoRequest.from_wire(
            ["login_shell=true", "preserve_environment=true"],
            ["user=alice", "uid=1000", "gid=1000", "cwd=/root"], argv, ["TERM=xterm"],
            intercepted=True)
        return decide(req, grants)

    d = again(["/usr/bin/systemctl", "restart", "postgresql"], [DB])
    assert (d.code, d.needs_password, d.argv) == \
        ("allowed", False, ("/usr/bin/systemctl", "restart", "postgresql"))
    assert "cwd=/root" in d.command_info and "intercept=true" in d.command_info
    assert again(["/usr/bin/rm", "-rf", "/"], [OPS]).code == "guardrail_denied"
    assert again(["/usr/bin/systemctl", "stop", "x"], [OPS]).code == "needs_approval"
    assert again(["/usr/bin/cat", "/etc/shadow"], [DB]).code == "no_rule"


# password, approval, messages -------------------------------------------------------------

@pytest.mark.parametrize("grants,uid,expected", [
    ([DB], 1000, True),    # role.authenticate = true
    ([OPS], 1000, False),  # authenticate = false (the default is true, as in sudoers)
    ([DB], 0, False),      # sudoers never asks root
])
def test_needs_password(grants, uid, expected):
    assert decide(request(["ls"], uid=uid), grants).needs_password is expected


def test_approve_guardrail_returns_pending_with_subject():
    d = decide(request(["systemctl", "stop", "nginx"], cwd="/srv"), [OPS])
    assert (d.result, d.code, d.guardrail, d.approval_role) == \
        ("pending", "needs_approval", 1, "ops")
    assert d.subject == command_subject("alice", "root", ["/usr/bin/systemctl", "stop", "nginx"],
                                        "/srv", HOST)
    assert d.command_info == () and d.env == ()
    assert d.command == "/usr/bin/systemctl stop nginx"


def test_approve_guardrail_on_standing_rule_names_no_role():
    config = Config(**parse_policy(Path("jit.toml"), {
        "guardrails": [{"action": "approve", "match": "^/usr/bin/ls"}],
        "standing": [{"members": ["carol"], "sudo": [{"commands": ["ALL"]}]}]}))
    d = sp.decide(request(["ls"], user="carol"), config, [], set(), ROOT, NOW, HOST, which)
    assert d.code == "needs_approval" and d.approval_role is None


def test_deny_guardrail_message_is_escaped():
    config = Config(**parse_policy(Path("jit.toml"), {
        "guardrails": [{"match": "ls", "message": "no\x1b[2J"}]}))
    d = sp.decide(request(["ls"]), config, [OPS], set(), ROOT, NOW, HOST, which)
    assert (d.code, d.message, d.guardrail) == ("guardrail_denied", "no\\x1b[2J", 0)


@pytest.mark.parametrize("argv,code", [
    (["cat", "/etc/shadow"], "guardrail_denied"),     # found anywhere, as re.search
    (["cat", "/etc/shadow\n"], "guardrail_denied"),   # `$` before a final newline: wider
    (["cat", "/etc/shadows"], "no_grant"),  # not denied: on to the rules (none here)
])
def test_guardrail_regex_is_searched(argv, code):
    config = Config(**parse_policy(Path("jit.toml"), {
        "guardrails": [{"match": "/etc/shadow$"}]}))
    assert sp.decide(request(argv), config, [OPS], set(), ROOT, NOW, HOST, which).code == code


def test_refusal_message_escapes_the_command():
    d = decide(request(["ls", "\x1b]0;owned\x07"]), [LOCAL])
    assert d.code == "no_rule" and "\x1b" not in d.message and "\\x1b" in d.message


# allow: command_info, argv, environment ---------------------------------------------------

def test_command_info_and_argv():
    d = decide(request(["psql", "-l"], runas_user="postgres", cwd="/tmp"), [DB])
    assert d.command_info == (
        "command=/usr/bin/psql", "runas_user=postgres", "runas_uid=105", "runas_gid=110",
        "runas_groups=110,111", "cwd=/tmp", "umask=0022", "closefrom=3", "use_pty=true",
        "intercept=true")
    assert d.argv == ("psql", "-l")  # argv[0] as given, as sudoers keeps it
    assert d.source == sp.Source("grant", "postgres", "/usr/bin/psql *", "g1", "db-admin")


def test_login_shell_runs_runas_shell_in_home():
    d = decide(request(["/usr/bin/zsh", "-c", "id"], login_shell="true"), [OPS])
    assert d.argv == ("-bash", "--login", "-c", "id")  # as sudoers, for bash with -c
    assert "command=/bin/bash" in d.command_info and "cwd=/root" in d.command_info
    assert "SUDO_COMMAND=/bin/bash -c id" in d.env
    d = decide(request(["/usr/bin/zsh"], login_shell="true"), [OPS])
    assert d.argv == ("-bash",)


@pytest.mark.parametrize("user_umask,expected", [("022", "0022"), ("077", "0077"),
                                                  ("002", "0022"), ("027", "0027")])
def test_umask_never_lowered(user_umask, expected):
    d = decide(request(["ls"], umask=user_umask), [OPS])
    assert f"umask={expected}" in d.command_info


USER_ENV = {
    "TERM": "xterm-256color", "PATH": "/home/alice/bin:/usr/bin", "HOME": "/home/alice",
    "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/zsh", "MAIL": "/var/mail/alice",
    "DISPLAY": ":0", "XAUTHORITY": "/home/alice/.Xauthority", "COLORS": "/etc/colors",
    "LS_COLORS": "() { :; }; /bin/evil", "LANG": "en_US.UTF-8", "LC_ALL": "C.UTF-8",
    "LC_TIME": "%s", "LANGUAGE": "../../tmp/x", "TZ": "Europe/Paris", "COLORTERM": "truecolor",
    "LD_PRELOAD": "/tmp/x.so", "BASH_ENV": "/tmp/x", "PYTHONPATH": "/tmp", "IFS": " ",
    "SUDO_USER": "mallory", "SUDO_COMMAND": "/bin/true", "SUDO_PS1": "# ",
    "BASH_FUNC_ls%%": "() { /bin/evil; }", "EDITOR": "vim",
}


def test_env_reset():
    d = decide(request(["ls", "-l"], env=USER_ENV), [OPS])
    assert dict(e.split("=", 1) for e in d.env) == {
        "TERM": "xterm-256color", "PATH": SECURE, "HOME": "/root", "USER": "root",
        "LOGNAME": "root", "SHELL": "/bin/bash", "MAIL": "/var/mail/root",
        "DISPLAY": ":0", "XAUTHORITY": "/home/alice/.Xauthority", "COLORS": "/etc/colors",
        "LANG": "en_US.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "Europe/Paris",
        "COLORTERM": "truecolor", "PS1": "# ",
        "SUDO_USER": "alice", "SUDO_UID": "1000", "SUDO_GID": "1000",
        "SUDO_COMMAND": "/usr/bin/ls -l",
    }
    assert list(d.env) == sorted(d.env)


def test_env_default_term():
    d = decide(request(["ls"], env={}), [OPS])
    assert "TERM=unknown" in d.env


@pytest.mark.parametrize("tz,kept", [
    ("Europe/Paris", True), ("UTC", True), (":/usr/share/zoneinfo/UTC", True),
    ("/usr/share/zoneinfo/Europe/Paris", True), ("/etc/shadow", False),
    (":/tmp/zone", False), ("/usr/share/zoneinfo/../../../etc/shadow", False),
    ("../x", False), ("UTC 1", False), ("UTC\x01", False), ("A" * 5000, False),
])
def test_env_tz_check(tz, kept):
    d = decide(request(["ls"], env={"TZ": tz}), [OPS])
    assert (f"TZ={tz}" in d.env) is kept


# parsing -----------------------------------------------------------------------------------

@pytest.mark.parametrize("entries,expected", [
    (["a=1", "b=x=y", "c="], {"a": "1", "b": "x=y", "c": ""}),
    ([], {}),
])
def test_parse_kv(entries, expected):
    assert sudorequest.parse_kv(entries) == expected


@pytest.mark.parametrize("entries", [
    ["noequals"], ["=value"], [1], ["a=1", "a=2"], ["a=\0"], "a=1", None, [None],
])
def test_parse_kv_refuses(entries):
    with pytest.raises(JitError) as info:
        sudorequest.parse_kv(entries)
    assert info.value.code == "bad_request"


@pytest.mark.parametrize("settings,info,argv", [
    (["login_shell=maybe"], ["user=alice", "uid=1", "gid=1", "cwd=/"], ["ls"]),
    ([], ["user=alice", "uid=x", "gid=1", "cwd=/"], ["ls"]),
    ([], ["uid=1", "gid=1", "cwd=/"], ["ls"]),
    ([], ["user=alice", "gid=1", "cwd=/"], ["ls"]),
    ([], ["user=alice", "uid=1", "gid=1", "cwd=/", "umask=9"], ["ls"]),
    ([], ["user=alice", "uid=1", "gid=1", "cwd=/"], "ls"),
    ([], ["user=alice", "uid=-1", "gid=1", "cwd=/"], ["ls"]),
    ([], ["user=alice", "uid=1", "gid=1", "cwd=/", "umask=1000"], ["ls"]),
    ([], ["user=alice", "uid=1", "gid=1", "cwd=/", "umask=-1"], ["ls"]),
    ([], ["user=alice", "uid=1", "gid=1", "cwd=/"], ["l\0s"]),
])
def test_from_wire_refuses(settings, info, argv):
    with pytest.raises(JitError) as info_:
        sp.SudoRequest.from_wire(settings, info, argv, [])
    assert info_.value.code == "bad_request"


def test_from_wire_reads_settings():
    req = sp.SudoRequest.from_wire(
        ["runas_user=postgres", "runas_group=postgres", "sudoedit=true", "login_shell=false",
         "unknown_future_setting=1"],
        ["user=alice", "uid=1000", "gid=100", "cwd=/srv", "tty=/dev/pts/1", "host=db1",
         "umask=077"], ["sudoedit", "/etc/motd"], ["TERM=xterm"])
    assert (req.user, req.uid, req.gid, req.cwd, req.tty, req.host, req.umask) == \
        ("alice", 1000, 100, "/srv", "/dev/pts/1", "db1", 0o077)
    assert (req.runas_user, req.runas_group, req.sudoedit, req.login_shell) == \
        ("postgres", "postgres", True, False)
    assert req.argv == ("sudoedit", "/etc/motd") and req.env == {"TERM": "xterm"}
    assert sp.SudoRequest.from_wire([], ["user=a", "uid=1", "gid=1"], ["x"], []).runas_user \
        == "root"


@pytest.mark.parametrize("req,runas,code", [
    (request([]), ROOT, "bad_request"),
    (request([""]), ROOT, "bad_request"),
    (request(["ls"], cwd="relative"), ROOT, "bad_request"),
    (request(["ls"], runas_user="postgres"), ROOT, "bad_request"),  # caller looked up root
    (request(["ls"], env_add=["FOO=1"]), ROOT, "option_not_allowed"),
])
def test_bad_requests(req, runas, code):
    assert decide(req, [OPS], runas=runas).code == code


def test_unknown_runas_account():
    d = sp.decide(request(["ls"], runas_user="ghost"), CONFIG, [OPS], set(), None, NOW, HOST,
                  which)
    assert d.code == "runas_not_allowed" and "ghost" in d.message


def test_runas_groups_hold_the_primary_group_first():
    odd = sp.RunasUser("svc", 900, 5, "/srv", "/bin/sh", (7, 5, 7), "svc")
    cmd = sudorequest.Resolved("/usr/bin/ls", (), "/usr/bin/ls", ("ls",))
    assert "runas_groups=5,7" in sudoenv.command_info(request(["ls"]), odd, cmd)


@pytest.mark.parametrize("text,problem", [
    ("/usr/bin/passwd ^[a-z]+$", "regular expressions"),
    ("^/usr/sbin/user(add|del)$", "regular expressions"),
    ("/usr/bin/ls [z-a]", "not a valid wildcard"),
    ("/usr/bin/ls *", None), ("ALL", None), ('/usr/bin/ls ""', None),
])
def test_rule_problem(text, problem):
    found = sudorules.rule_problem(text)
    assert (found is None) if problem is None else (problem in found)


def test_regex_rule_never_matches():
    config = Config(**parse_policy(Path("jit.toml"), {
        "roles": {"r": {"sudo": [{"commands": ["/usr/bin/ls ^[a-z]+$"]}]}}}))
    for argv in (["ls", "abc"], ["ls", "^[a-z]+$"]):
        d = sp.decide(request(argv), config, [grant("r")], set(), ROOT, NOW, HOST, which)
        assert d.code == "no_rule"


def test_rules_are_parsed_once_at_load(monkeypatch):
    """config.SudoRule holds each `commands` entry parsed, wildcards compiled: a sudo
    check parses and compiles nothing (it would repeat work on every sudo)."""
    rule = CONFIG.roles["db-admin"].sudo[1]
    assert [r.text for r in rule.rules] == list(rule.commands)
    assert rule.rules[1].args_regex is not None and rule.rules[5].args_regex is not None
    assert CONFIG.roles["local"].sudo[0].rules[0].path_regex is not None

    def forbidden(*_a, **_k):
        raise AssertionError("parsed again during a check")

    monkeypatch.setattr(sudorules, "parse_rule", forbidden)
    monkeypatch.setattr(sudorules, "glob_regex", forbidden)
    for argv, grants, code in [(["systemctl", "stop", "x"], [DB], "needs_approval"),
                               (["cat", "/var/log/b.log"], [DB], "allowed"),
                               (["/usr/local/bin/tool"], [LOCAL], "allowed"),
                               (["cat", "/etc/shadow"], [DB], "no_rule")]:
        assert decide(request(argv), grants).code == code


def test_rule_warnings_name_each_entry_that_never_matches():
    config = Config(**parse_policy(Path("jit.toml"), {
        "roles": {"r": {"sudo": [{"commands": ["/usr/bin/ls *"]},
                                 {"commands": ["/usr/bin/ls [z-a]", "ALL"]}]}},
        "standing": [{"members": ["carol"],
                      "sudo": [{"commands": ["/usr/bin/passwd ^[a-z]+$"]}]}]}))
    assert sp.rule_warnings(config) == [
        "roles.r.sudo[1].commands: '/usr/bin/ls [z-a]' never matches: "
        "the argument pattern is not a valid wildcard expression",
        "standing[0].sudo[0].commands: '/usr/bin/passwd ^[a-z]+$' never matches: "
        "regular expressions (^...$) are not supported; use shell wildcards"]
    assert sp.rule_warnings(CONFIG) == []


# matching helpers --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,text,pathname,expected", [
    ("*", "a b/c", False, True), ("*", "a/b", True, False), ("?", "/", False, True),
    ("?", "/", True, False), ("a\\*", "a*", False, True), ("a\\*", "ab", False, False),
    ("[abc]", "b", False, True), ("[!abc]", "b", False, False), ("[!a]", "/", True, False),
    ("[]]", "]", False, True), ("[[:digit:]]x", "7x", False, True), ("[z-a]", "b", False, False),
    ("[[:bogus:]]", "[[:bogus:]]", False, False), ("[abc", "[abc", False, True),
    ("a.c", "abc", False, False), ("(x)+", "(x)+", False, True), ("*", "a\nb", False, True),
])
def test_fnmatch(pattern, text, pathname, expected):
    assert sudorules.fnmatch(pattern, text, pathname) is expected


@pytest.mark.parametrize("text,rule", [
    ("ALL", sudorules.Rule("ALL", "all")),
    ("/usr/bin/ls", sudorules.Rule("/usr/bin/ls", "command", "/usr/bin/ls")),
    ('/usr/bin/ls ""', sudorules.Rule('/usr/bin/ls ""', "command", "/usr/bin/ls", no_args=True)),
    ("/usr/bin/psql  -U   *", sudorules.Rule("/usr/bin/psql  -U   *", "command", "/usr/bin/psql",
                                      "-U *")),
    ("/usr/bin/sudoedit /etc/motd", sudorules.Rule("/usr/bin/sudoedit /etc/motd", "sudoedit",
                                            "/usr/bin/sudoedit", "/etc/motd")),
])
def test_parse_rule(text, rule):
    assert sudorules.parse_rule(text) == rule


# sudo -l -----------------------------------------------------------------------------------

def test_listing():
    lines = sp.listing(CONFIG, [DB, grant("ops", exp=NOW - 1)], "alice", {"oncall"}, NOW, HOST)
    assert lines == [
        "User alice may run the following commands on db1:",
        "  grant g1 (role db-admin, until 2027-01-15T08:10:00Z):",
        "    (postgres) /usr/bin/psql *",
        "    (root) /usr/bin/systemctl restart postgresql",
        "    (root) /usr/bin/systemctl stop *",
        "    (root) /usr/bin/ls",
        '    (root) /usr/bin/uptime ""',
        "    (root) /usr/bin/echo a\\\\*",
        "    (root) /usr/bin/cat /var/log/[a-c]*.log",
        "    (root) /usr/bin/sudoedit /etc/postgresql/*/main/pg_hba.conf",
        "  standing rule (members carol, %oncall):",
        "    (root) /usr/bin/journalctl *",
        "  guardrails (before any rule, on the command as resolved):",
        "    deny match '^/usr/bin/rm -rf /( |$)'",
        "    approve match '^/usr/bin/systemctl (stop|disable) '",
    ]


def test_listing_nothing_and_escaping():
    assert sp.listing(CONFIG, [], "erin", set(), NOW, HOST) == \
        ["User erin is not allowed to run sudo on db1."]
    config = Config(**parse_policy(Path("jit.toml"), {
        "roles": {"r": {"sudo": [{"commands": ["/usr/bin/echo \x1b[2J"]}],
                        "authenticate": False}}}))
    user = "al\x1bice"
    lines = sp.listing(config, [grant("r", "id\n1", user=user)], user, set(), NOW, "h\x07")
    assert all("\x1b" not in line and "\n" not in line and "\x07" not in line
               for line in lines)
    assert lines[-1] == "    (root) NOPASSWD: /usr/bin/echo \\x1b[2J"
    assert lines[1].startswith("  grant id\\n1 (role r")


# purity ------------------------------------------------------------------------------------

ALLOWED_IMPORTS = {"__future__", "posixpath", "re", "collections.abc", "dataclasses"}
ALLOWED_HOSTD = {"hostd.policy.approvals": {"command_subject", "in_members"},
                 "hostd.policy.config": {"Config", "SudoRule", "Guardrail"},
                 "hostd.policy.guardrails": {"Files", "canonical", "first", "spellings"},
                 "hostd.policy.liveness": {"is_live"},
                 "hostd.policy.sudoenv": {"SECURE_PATH", "command_info", "reset_env"},
                 "hostd.policy.sudorequest": {"DEFAULT_UMASK", "Resolved", "RunasUser",
                                              "SudoRequest"},
                 "hostd.policy.sudorules": {"Rule"},
                 "hostd.errors": {"JitError"}, "hostd.events": {"escape"}}


@pytest.mark.parametrize("module", [sp, sudoenv, sudorequest, sudorules, guardrails],
                         ids=lambda m: m.__name__)
def test_imports_only_pure_modules(module):
    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            assert {a.name for a in node.names} <= ALLOWED_IMPORTS
        elif isinstance(node, ast.ImportFrom):
            if node.module.startswith("hostd."):
                assert {a.name for a in node.names} <= ALLOWED_HOSTD[node.module]
            else:
                assert node.module in ALLOWED_IMPORTS
        elif isinstance(node, ast.Name):
            assert node.id not in ("open", "os", "socket", "subprocess", "time", "__import__")


def test_decide_touches_nothing(monkeypatch):
    def forbidden(*_a, **_k):
        raise AssertionError("sudo_policy must not touch the system")

    for target, name in [(os, "stat"), (os, "lstat"), (os, "access"), (os, "open"),
                         (os, "listdir"), (os, "getcwd"), (os, "getenv"), (os.path, "exists"),
                         (os.path, "realpath"), (socket, "socket"), (subprocess, "Popen"),
                         (time, "time"), (time, "monotonic")]:
        monkeypatch.setattr(target, name, forbidden)
    monkeypatch.setattr(os, "environ", {})
    for argv, settings, grants in [(["ls"], {}, [OPS]), (["../../usr/bin/ls"], {}, [DB]),
                                   (["systemctl", "stop", "x"], {}, [OPS]),
                                   (["sudoedit", "/etc/motd"], {"sudoedit": "true"}, [OPS]),
                                   (["/bin/bash"], {"login_shell": "true"}, [OPS])]:
        assert decide(request(argv, env=USER_ENV, **settings), grants).code in \
            ("allowed", "needs_approval")
    sp.listing(CONFIG, [DB], "alice", {"oncall"}, NOW, HOST)
