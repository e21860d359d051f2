"""pytest entry for the sudo plugin shim: builds jit_sudo.so and the test driver, then
runs every case of run_case.py (own mount namespace, fake hostd, valgrind memcheck).

Needs root and the Debian packages gcc, make, dpkg-dev, libjson-c-dev, sudo, valgrind,
util-linux (unshare, setpriv, mount), python3. A missing one fails the test, never skips.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_DIR = os.path.dirname(HERE)

_spec = importlib.util.spec_from_file_location("jit_sudo_run_case",
                                               os.path.join(HERE, "run_case.py"))
run_case = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_case)

NEEDED_PROGRAMS = {"gcc": "gcc", "make": "make", "dpkg-buildflags": "dpkg-dev",
                   "valgrind": "valgrind", "sudo": "sudo", "unshare": "util-linux",
                   "setpriv": "util-linux", "mount": "mount"}
NEEDED_FILES = {"/usr/include/json-c/json.h": "libjson-c-dev",
                "/usr/include/sudo_plugin.h": "sudo",
                run_case.SYSTEM_PYTHON: "python3"}


@pytest.fixture(scope="module")
def built():
    missing = sorted({pkg for prog, pkg in NEEDED_PROGRAMS.items() if not shutil.which(prog)}
                     | {pkg for path, pkg in NEEDED_FILES.items() if not os.path.exists(path)})
    if missing:
        pytest.fail("sudo plugin tests need the Debian packages: " + " ".join(missing),
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("sudo plugin tests need root (mount namespaces, a root-owned socket)",
                    pytrace=False)
    p = subprocess.run(["make", "-C", PLUGIN_DIR, "jit_sudo.so", "tests/driver"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.fail(f"building the sudo plugin failed:\n{p.stdout}{p.stderr}", pytrace=False)


@pytest.mark.parametrize("case", list(run_case.CASES))
def test_case(built, case):
    p = subprocess.run([sys.executable, os.path.join(HERE, "run_case.py"), case],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"case {case} failed:\n{p.stdout}{p.stderr}"
