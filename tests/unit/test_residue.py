"""residue: which processes still hold a group a grant took away, read from a fake /proc
tree; signalling only after checking again (a real child of the test, a fake status)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from hostd.server import residue

ALICE, BOB = 1001, 1002
DOCKER, ADM, DEV = 999, 4, 2000


def status(uid: int | tuple[int, ...], groups: tuple[int, ...], name: str = "bash",
           gid: int | None = None) -> str:
    uids = (uid,) * 4 if isinstance(uid, int) else uid
    tab = "\t"
    if gid is None:  # as initgroups leaves it: the primary group among the groups
        gid = groups[0] if groups else uids[0]
    gids = tab.join([str(gid)] * 4)
    return (f"Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\n"
            f"Uid:\t{tab.join(map(str, uids))}\nGid:\t{gids}\n"
            f"FDSize:\t64\nGroups:\t{' '.join(map(str, groups))} \nNStgid:\t1\n")


def put(root: Path, pid: int, text: str, cmdline: bytes = b"bash\0-l\0",
        comm: str = "bash", stat: str = "S") -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "status").write_text(text)
    (d / "cmdline").write_bytes(cmdline)
    (d / "comm").write_text(comm + "\n")
    (d / "stat").write_text(f"{pid} ({comm}) {stat} 1 1 1 0 -1\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    put(root, 1, status(0, ()), b"/sbin/init\0")
    put(root, 100, status(ALICE, (DEV, DOCKER)), b"bash\0-l\0")  # a shell from the grant
    put(root, 101, status(ALICE, (DEV,)), b"sleep\0300\0")  # started after: no docker
    put(root, 102, status(ALICE, (DOCKER,)), b"", comm="kworker")  # no command line
    put(root, 103, status(BOB, (DOCKER,)), b"bash\0")  # another user
    put(root, 104, status((ALICE, 0, 0, 0), (DOCKER,)), b"sudo\0id\0")  # set-uid root
    put(root, 105, status(0, (DOCKER,)), b"dockerd\0")  # root's
    put(root, 106, status(ALICE, (ADM, DOCKER)), b"tail\0-f\0/var/log/x\nforged\0")
    put(root, 107, "Name:\tbroken\nUid:\tx y\nGroups:\t999\n")  # unreadable: skipped
    put(root, 108, "Name:\tnouid\nGroups:\t999\n")
    (root / "self").mkdir()
    (root / "net").mkdir()
    return root


def test_parse_status_reads_the_four_uids_and_groups():
    assert residue.parse_status(status(ALICE, (DEV, DOCKER))) == ((ALICE,) * 4, (DEV, DOCKER))
    assert residue.parse_status("Uid:\t1 1 1 1\nGid:\t1 1 1 1\nGroups:\t\n") == \
        ((1, 1, 1, 1), (1,))
    assert residue.parse_status("Uid:\t1 1 1\nGid:\t1 1 1 1\nGroups:\t2\n") is None
    assert residue.parse_status("Uid:\t1 1 1 1\nGid:\t1 1 1 1\n") is None
    assert residue.parse_status("Uid:\t1 1 1 1\nGroups:\t2\n") is None
    assert residue.parse_status("Uid:\t1 1 1 1\nGid:\t1 1 1 1\nGroups:\tx\n") is None


def test_scan_finds_the_users_processes_holding_a_taken_group(proc):
    found = residue.scan(proc, ALICE, {DOCKER})
    assert [p.pid for p in found] == [100, 102, 106]
    assert found[0].command == "bash -l"
    assert found[1].command == "[kworker]"
    assert found[2].command == "tail -f /var/log/x\nforged"  # raw: the event escapes it


def test_scan_never_names_root_other_users_or_set_uid_programs(proc):
    pids = {p.pid for p in residue.scan(proc, ALICE, {DOCKER, ADM, DEV})}
    assert pids == {100, 101, 102, 106}
    assert residue.scan(proc, 0, {DOCKER}) == []  # root: never
    assert [p.pid for p in residue.scan(proc, BOB, {DOCKER})] == [103]


def test_scan_without_groups_or_without_proc_finds_nothing(proc, tmp_path):
    assert residue.scan(proc, ALICE, set()) == []
    assert residue.scan(tmp_path / "missing", ALICE, {DOCKER}) == []


def test_scan_only_the_groups_asked_for(proc):
    assert [p.pid for p in residue.scan(proc, ALICE, {ADM})] == [106]
    assert residue.scan(proc, ALICE, {DOCKER}, skip=frozenset({100, 102})) == \
        residue.scan(proc, ALICE, {ADM})


@pytest.mark.parametrize("uids,groups,held", [
    ((ALICE,) * 4, (DOCKER,), True),
    ((ALICE,) * 4, (DEV,), False),
    ((ALICE, ALICE, ALICE, 0), (DOCKER,), False),
    ((0, ALICE, ALICE, ALICE), (DOCKER,), False),
    ((BOB,) * 4, (DOCKER,), False),
])
def test_the_choice_of_what_to_end(uids, groups, held):
    assert residue.holds(residue.Proc(5, uids, groups, "x"), ALICE, {DOCKER}) is held


def test_zombies_and_vanished_processes_are_gone(proc):
    put(proc, 102, status(ALICE, (DOCKER,)), stat="Z")
    (proc / "106" / "status").unlink()
    assert [p.pid for p in residue.scan(proc, ALICE, {DOCKER})] == [100]


def thread(root: Path, pid: int, tid: int, text: str) -> None:
    d = root / str(pid) / "task" / str(tid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "status").write_text(text)


def test_a_primary_group_from_newgrp_counts(proc):
    """`newgrp docker` / `sg docker`: docker is the gid, not in `Groups:`."""
    put(proc, 120, status(ALICE, (ALICE, DEV), gid=DOCKER), b"sh\0")
    (p,) = [p for p in residue.scan(proc, ALICE, {DOCKER}) if p.pid == 120]
    assert p.groups == (ALICE, DEV, DOCKER)
    assert residue.parse_status(status(ALICE, (DEV,), gid=DOCKER)) == ((ALICE,) * 4,
                                                                       (DEV, DOCKER))


def test_a_group_kept_by_one_thread_is_found(proc):
    """The leader dropped docker with a raw setgroups(2); another thread still has it."""
    put(proc, 110, status(ALICE, (DEV,)), b"java\0")
    thread(proc, 110, 110, status(ALICE, (DEV,)))
    thread(proc, 110, 111, status(ALICE, (DEV, DOCKER)))
    (p,) = [p for p in residue.scan(proc, ALICE, {DOCKER}) if p.pid == 110]
    assert p.groups == (DEV, DOCKER)


def test_a_thread_of_another_uid_makes_it_no_candidate(proc):
    put(proc, 112, status(ALICE, (DOCKER,)), b"x\0")
    thread(proc, 112, 113, status(0, (DOCKER,)))
    assert 112 not in [p.pid for p in residue.scan(proc, ALICE, {DOCKER})]


def test_a_command_name_cannot_pass_for_a_zombie(proc):
    """A process ignoring SIGTERM that names itself `x) Z y` still gets SIGKILL."""
    put(proc, 100, status(ALICE, (DOCKER,)), comm="x) Z y")
    assert 100 in [p.pid for p in residue.scan(proc, ALICE, {DOCKER})]
    assert not residue.zombie(proc, 100)


def test_describe_names_taken_groups_and_numbers_the_rest(proc):
    p = residue.read_proc(proc, 106)
    assert residue.describe(p, {DOCKER: "docker"}) == \
        "106 [4,docker] tail -f /var/log/x\nforged"


def test_command_lines_are_cut(tmp_path):
    put(tmp_path, 9, status(ALICE, (DOCKER,)), b"x" * 5000)
    assert len(residue.read_proc(tmp_path, 9).command) == residue.MAX_COMMAND


# --- signalling: checked again right before, through a pidfd --------------------------------

@pytest.fixture
def child():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def test_signal_goes_to_a_process_that_still_holds_the_group(tmp_path, child):
    put(tmp_path, child.pid, status(ALICE, (DOCKER,)))
    assert residue.signal_checked(tmp_path, child.pid, ALICE, {DOCKER}, signal.SIGTERM)
    assert child.wait(5) == -signal.SIGTERM


@pytest.mark.parametrize("text", [
    status(ALICE, (DEV,)),  # the pid now is a process without the group
    status(BOB, (DOCKER,)),  # ... or another user's
    status(0, (DOCKER,)),  # ... or root's
    None,  # ... or gone
], ids=["no-group", "other-user", "root", "gone"])
def test_no_signal_when_the_check_right_before_fails(tmp_path, child, text):
    if text is not None:
        put(tmp_path, child.pid, text)
    assert not residue.signal_checked(tmp_path, child.pid, ALICE, {DOCKER}, signal.SIGTERM)
    assert child.poll() is None


def test_no_signal_to_a_pid_that_is_gone(tmp_path):
    proc = subprocess.Popen(["true"])
    proc.wait()
    put(tmp_path, proc.pid, status(ALICE, (DOCKER,)))
    assert not residue.signal_checked(tmp_path, proc.pid, ALICE, {DOCKER}, 0)  # 0: harmless


@pytest.mark.parametrize("stat,leads", [
    ("4242 (bash) S 4241 4242 4242 34816 4242 4194560", True),   # su -l's login shell
    ("4242 (a) b) S 4241 4242 4242 34816 4242 4194560", True),   # a ')' in its name
    ("4242 (sleep) S 4241 4242 4200 34816 4242 4194560", False),  # not the leader
    ("4242 (daemon) S 1 4242 4242 0 -1 4194560", False),         # no terminal
    ("4242 (bash) S", False),                                     # cut short
])
def test_a_login_shell_is_a_tty_session_leader(tmp_path, stat, leads):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(stat + "\n")
    assert residue.leads_a_tty_session(tmp_path, 4242) is leads
    assert residue.leads_a_tty_session(tmp_path, 4243) is False  # gone
