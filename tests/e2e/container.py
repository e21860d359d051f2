"""A booted Debian 12 in systemd-nspawn: the e2e tests', the demo's and benchmarks' host.

The host machine has no systemd as PID 1, but a container booted with `systemd-nspawn -b`
has systemd, journald, D-Bus and logind, which is what jitaccess drives in production
(transient timers, socket activation, the reconcile unit, the journal). So the e2e tier
installs the real .deb in such a container instead of faking any of it.

The rootfs is built once with debootstrap and cached (keyed by the package list), each
user of it gets a throwaway copy (an overlayfs mount where the kernel allows it, else a
copy), and everything is undone in `close()` whatever happened.

Usage:

    with Container.create("jit-e2e") as box:
        box.boot()
        print(box.run(["id", "alice"], check=False).stdout)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

SUITE = "bookworm"
CACHE_DIR = Path(os.environ.get("JIT_E2E_CACHE", "/var/cache/jitaccess-e2e"))
WORK_DIR = Path(os.environ.get("JIT_E2E_WORK", "/var/tmp"))

# What the container needs to boot and be logged into, plus every runtime dependency
# of the jitaccess package: `apt install ./jitaccess_*.deb` must need no download.
PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "sudo", "libpam-python",
    "python3", "pamtester", "procps", "passwd",
    "python3-cryptography", "python3-jwt", "python3-dbus-next", "python3-systemd",
    "python3-pyroute2", "python3-pampy", "python3-pamela", "iproute2",
    # debootstrap does not resolve virtual packages: python3-cryptography depends on
    # python3-cffi-backend-api-min/-max, which only python3-cffi-backend provides.
    "python3-cffi-backend",
    # Recommended by jitaccess: Debian 12's python3-pampy imports six without depending on it;
    # libhyperscan5, the masker's literal pre-filter (apt would fetch it, and the box has no
    # network).
    "python3-six", "libhyperscan5",
    # Sessions, recordings and shipping: tmux drives full-screen programs, rsyslog and
    # systemd-journal-remote carry events to a SIEM sink.
    "tmux", "rsyslog", "systemd-journal-remote",
    # The fetcher and `jit login` (issue 21): python3-requests (Depends), python3-qrcode
    # (Recommends; it depends on the virtual python3-pillow, which python3-pil provides).
    "python3-requests", "python3-qrcode", "python3-pil",
)

# Inside the container the host's environment (pyenv's PATH, locale) would mislead.
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "PAGER": "cat",
    "SYSTEMD_COLORS": "0",
    "DEBIAN_FRONTEND": "noninteractive",
}

_COMPLETE_MARK = ".jit-e2e-complete"


def log(message: str) -> None:
    """Progress on stderr: pytest shows it on failure, the demo keeps it out of stdout."""
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


def mirror_uri(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The host's Debian mirror, read at run time so no registry host is written here."""
    if sources.exists():
        stanzas = sources.read_text().split("\n\n")
        for stanza in stanzas:
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (line.partition(":") for line in stanza.splitlines())
                if v and not k.startswith("#")
            )
            if SUITE in fields.get("suites", "").split() and fields.get("uris"):
                return fields["uris"].split()[0]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise RuntimeError(f"no {SUITE} mirror found in {sources} or {legacy}")


def rootfs_key(packages: Iterable[str] = PACKAGES, suite: str = SUITE) -> str:
    """Cache key: a different package list or suite is a different rootfs."""
    text = ",".join(sorted(set(packages))) + "|" + suite
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_rootfs(packages: Sequence[str] = PACKAGES, suite: str = SUITE,
                  cache_dir: Path = CACHE_DIR) -> Path:
    """Return the cached rootfs, building it with debootstrap if missing.

    Built in a temporary directory and renamed into place, under a lock, so that an
    interrupted build leaves no half rootfs and two runs never build at once."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"rootfs-{rootfs_key(packages, suite)}"
    if (final / _COMPLETE_MARK).exists():
        return final
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / _COMPLETE_MARK).exists():
            return final
        if final.exists():  # a rootfs without the mark is not trusted
            shutil.rmtree(final)
        for stale in cache_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            mirror = mirror_uri()
            started = time.monotonic()
            log(f"debootstrap {suite} into {tmp} from {mirror} (once; cached in {final})")
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", "--include=" + ",".join(packages),
                 suite, str(tmp), mirror],
                capture_output=True, text=True, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"debootstrap failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
            _prepare_rootfs(tmp)
            log(f"debootstrap done in {time.monotonic() - started:.1f} s")
            (tmp / _COMPLETE_MARK).write_text(f"{time.time():.0f}\n")
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def _prepare_rootfs(root: Path) -> None:
    """One-time settings that make every boot quick and its journal readable."""
    # A persistent journal: the reboot scenario reads events from before and after.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    # Each copy gets its own machine-id (written in Container.create); empty here.
    (root / "etc/machine-id").write_text("")
    # Units that only slow a container's boot down or fail in it.
    wants = root / "etc/systemd/system"
    for unit in ("systemd-networkd-wait-online.service", "apt-daily.timer",
                 "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
                 "man-db.timer", "dpkg-db-backup.timer"):
        link = wants / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    # No downloads ever: apt must find every dependency already installed.
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def overlay_supported(work: Path = WORK_DIR) -> bool:
    """Whether this kernel and sandbox let us mount overlayfs (probed, not assumed)."""
    probe = Path(tempfile.mkdtemp(prefix="jit-ovl-probe-", dir=work))
    try:
        for sub in ("lower", "upper", "work", "merged"):
            (probe / sub).mkdir()
        opts = f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work"
        ok = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts,
                             str(probe / "merged")], capture_output=True,
                            check=False).returncode == 0
        if ok:
            subprocess.run(["umount", str(probe / "merged")], check=False)
        return ok
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _terminate_as_exit() -> None:
    """Let SIGTERM (a CI timeout, `kill`) run the `finally` blocks that stop containers
    and unmount overlays, as Ctrl-C does; left alone, it would leave them running."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def handler(signum: int, frame: object) -> None:
            raise SystemExit(128 + signum)
        with contextlib.suppress(ValueError):  # not the main thread: leave it
            signal.signal(signal.SIGTERM, handler)


def prune_stale(work: Path = WORK_DIR) -> None:
    """Remove copies left by runs that were killed outright (SIGKILL, a lost machine).

    A live copy holds an exclusive lock on its `.lock` for its whole life, so a copy
    whose lock can be taken belongs to nobody; concurrent runs are never touched."""
    for lock_path in work.glob("jit-*/.lock"):
        top = lock_path.parent
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            for proc_dir in Path("/proc").glob("[0-9]*"):
                with contextlib.suppress(OSError, ValueError):
                    argv = (proc_dir / "cmdline").read_bytes().split(b"\0")
                    if (argv[0].endswith(b"systemd-nspawn") and
                            argv[argv.index(b"-D") + 1].startswith(f"{top}/".encode())):
                        # its container's init first: killing it ends the whole pid ns
                        for pid in [*_descendants(int(proc_dir.name)), int(proc_dir.name)]:
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(pid, signal.SIGKILL)
            merged = top / "merged"
            if os.path.ismount(merged):
                subprocess.run(["umount", "-l", str(merged)], check=False)
            log(f"removing stale container copy {top}")
            shutil.rmtree(top, ignore_errors=True)
        finally:
            os.close(fd)


class Container:
    """One throwaway copy of the cached rootfs, booted and stopped on demand."""

    def __init__(self, name: str, base: Path, top: Path, overlay: bool) -> None:
        self.name = name
        self.base = base          # the cached rootfs (never written)
        self.top = top            # our private directory (overlay layers or the copy)
        self.overlay = overlay
        self.root = top / "merged" if overlay else top / "root"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None     # the container's PID 1, as the host sees it
        self.console_log = top / "console.log"
        self.boot_seconds: float | None = None
        self._lock_fd: int | None = None  # held while this copy exists (prune_stale)

    # ---- life cycle -------------------------------------------------------------------

    @classmethod
    def create(cls, prefix: str = "jit-e2e", packages: Sequence[str] = PACKAGES) -> Container:
        """Make a private copy of the cached rootfs (building that first if needed)."""
        _terminate_as_exit()
        base = ensure_rootfs(packages)
        name = f"{prefix}-{secrets.token_hex(3)}"
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        prune_stale()
        top = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK_DIR))
        use_overlay = overlay_supported()
        box = cls(name, base, top, use_overlay)
        box._lock_fd = os.open(top / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(box._lock_fd, fcntl.LOCK_EX)
        try:
            if use_overlay:
                for sub in ("upper", "work", "merged"):
                    (top / sub).mkdir()
                opts = f"lowerdir={base},upperdir={top}/upper,workdir={top}/work"
                subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts,
                                str(box.root)], check=True, capture_output=True)
            else:
                subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(box.root)],
                               check=True, capture_output=True)
            (box.root / _COMPLETE_MARK).unlink(missing_ok=True)
            (box.root / "etc/machine-id").write_text(secrets.token_hex(16) + "\n")
            (box.root / "etc/hostname").write_text(name + "\n")
        except BaseException:
            box.close()
            raise
        return box

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def boot(self, timeout: float = 90) -> float:
        """Boot systemd in the copy and wait until it is up; returns the seconds taken."""
        if self.proc is not None:
            raise RuntimeError("already booted")
        started = time.monotonic()
        console = open(self.console_log, "ab")
        try:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "-D", str(self.root), "-b", "-M", self.name,
                 "--register=no", "--keep-unit", "--console=pipe",
                 "--private-network", "--resolv-conf=off", "--timezone=off",
                 "--link-journal=no"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env=CONTAINER_ENV,
                start_new_session=True,
            )
        finally:
            console.close()
        deadline = time.monotonic() + timeout
        self.pid = self._find_init(deadline)
        state = ""
        while time.monotonic() < deadline:
            left = max(1.0, deadline - time.monotonic())
            try:
                proc = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                timeout=left)
                state = proc.stdout.strip()
            except subprocess.TimeoutExpired:
                break
            if state in ("running", "degraded"):
                self.boot_seconds = time.monotonic() - started
                if state == "degraded":
                    failed = self.run(["systemctl", "--failed", "--no-legend"], check=False)
                    log(f"{self.name}: degraded: {failed.stdout.strip()}")
                log(f"{self.name}: booted ({state}) in {self.boot_seconds:.1f} s")
                return self.boot_seconds
            time.sleep(0.2)
        self._kill()
        raise RuntimeError(f"{self.name} did not boot in {timeout} s (state {state!r});"
                           f" console:\n{self.console_tail()}")

    def _find_init(self, deadline: float) -> int:
        """The container's systemd: a descendant of nspawn whose pid in its namespace is 1."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                                   f"{self.console_tail()}")
            for pid in _descendants(self.proc.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue
                match = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                if match and match.group(1).split()[-1] == "1" and "systemd" in exe:
                    return pid
            time.sleep(0.05)
        raise RuntimeError(f"no container init found; console:\n{self.console_tail()}")

    def poweroff(self, timeout: float = 60) -> None:
        """Shut the container down cleanly (journal flushed); kill it if it hangs."""
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, RuntimeError):
            self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=15)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: poweroff took over {timeout} s; killing it")
            self._kill()
        self.proc = None
        self.pid = None

    def reboot(self, timeout: float = 90) -> float:
        """Power off and boot the same copy again (what a host reboot does to state)."""
        self.poweroff()
        return self.boot(timeout)

    def _kill(self) -> None:
        for pid in (self.pid, self.proc.pid if self.proc else None):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        self.proc = None
        self.pid = None

    def close(self) -> None:
        """Stop the container if running, unmount and delete the copy. Safe to repeat."""
        try:
            if self.proc is not None:
                self.poweroff(timeout=30)
        finally:
            if self.overlay and os.path.ismount(self.root):
                if subprocess.run(["umount", str(self.root)], check=False).returncode:
                    subprocess.run(["umount", "-l", str(self.root)], check=False)
            if self.top.exists():
                shutil.rmtree(self.top, ignore_errors=True)
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # ---- inside -----------------------------------------------------------------------

    def run(self, cmd: Sequence[str] | str, user: str | None = None, check: bool = True,
            input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command in the container (as root, or as `user` via runuser).

        A string is run by /bin/sh -c. Returns the CompletedProcess (text); with check,
        a non-zero exit raises CalledProcessError whose str includes the output."""
        if self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if user is not None:
            argv = ["runuser", "-u", user, "--", *argv]
        full_env = {**CONTAINER_ENV, "HOME": "/root", **(env or {})}
        envargs = [f"{k}={v}" for k, v in full_env.items()]
        proc = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "--", "/usr/bin/env", "-i", *envargs,
             *argv],
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
            env=CONTAINER_ENV,
        )
        if check and proc.returncode != 0:
            raise CommandFailed(proc, argv)
        return proc

    def popen(self, cmd: Sequence[str], user: str | None = None) -> subprocess.Popen[str]:
        """Start a command in the container without waiting (run() waits); stdout and
        stderr are pipes."""
        if self.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        argv = ["runuser", "-u", user, "--", *cmd] if user is not None else list(cmd)
        envargs = [f"{k}={v}" for k, v in {**CONTAINER_ENV, "HOME": "/root"}.items()]
        return subprocess.Popen(
            ["nsenter", "-t", str(self.pid), "-a", "--", "/usr/bin/env", "-i", *envargs,
             *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=CONTAINER_ENV)

    def write(self, path: str, data: str | bytes, mode: int = 0o644) -> None:
        """Put a file into the container (written into its root directly)."""
        target = self.path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        target.write_bytes(data)
        os.chmod(target, mode)

    def copy_in(self, src: Path, dest: str) -> str:
        """Copy a host file into the container; returns its path inside."""
        self.write(dest, Path(src).read_bytes())
        return dest

    def path(self, inside: str) -> Path:
        """The host path of a path inside the container."""
        return self.root / inside.lstrip("/")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class CommandFailed(subprocess.CalledProcessError):
    """A failed command inside the container, with its output in the message."""

    def __init__(self, proc: subprocess.CompletedProcess[str], argv: Sequence[str]) -> None:
        super().__init__(proc.returncode, list(argv), proc.stdout, proc.stderr)

    def __str__(self) -> str:
        return (f"{' '.join(map(str, self.cmd))!r} exited {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


def _descendants(root: int) -> list[int]:
    """All processes below `root`, breadth first (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    queue = [root]
    while queue:
        pid = queue.pop(0)
        for child in children.get(pid, []):
            out.append(child)
            queue.append(child)
    return out


def main() -> int:
    """`python3 tests/e2e/container.py`: build the cache, boot, reboot, report timings."""
    t0 = time.monotonic()
    base = ensure_rootfs()
    log(f"rootfs {base} ready after {time.monotonic() - t0:.1f} s")
    with Container.create() as box:
        log(f"copy via {'overlayfs' if box.overlay else 'cp -a'}")
        box.boot()
        print(box.run(["systemctl", "is-system-running"], check=False).stdout.strip())
        t1 = time.monotonic()
        box.reboot()
        log(f"poweroff + boot took {time.monotonic() - t1:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
