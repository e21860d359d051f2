# jitaccess: build, test and demo on Debian 12, with Debian's /usr/bin/python3.
# `make test` and `make demo` install what they need first (scripts/install-deps.sh).
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider
RUFF ?= /var/cache/jitaccess-tools/venv/bin/ruff
SHELLCHECK ?= shellcheck
# Every shell script in the tree (grep -rl '^#!.*sh' --exclude-dir=.git .).
SHELL_SCRIPTS = scripts/*.sh packaging/build-deb.sh .ci/run \
	packaging/debian/jitaccess.preinst packaging/debian/jitaccess.postinst \
	packaging/debian/jitaccess.prerm \
	packaging/debian/jitaccess.postrm \
	benchmarks/pam_overhead.sh benchmarks/recorder.sh

.PHONY: test test-unit test-plugin test-pam test-integration test-fuzz test-crash test-e2e fuzz crash lint deb demo \
	bench clean deps

test: deps lint test-unit test-plugin test-pam test-integration test-fuzz test-crash test-e2e

deps:
	./scripts/install-deps.sh

lint:
	$(RUFF) check hostd tests benchmarks sudo-plugin/tests pam
	$(SHELLCHECK) $(SHELL_SCRIPTS)

test-unit:
	$(PYTEST) -q tests/unit

# the C sudo plugin loaded by a test driver and by the real sudo, each case under valgrind
test-plugin:
	$(PYTEST) -q sudo-plugin/tests

# pam_jit.so through libpam (pamtester, pam_wrapper, nss_wrapper), each run under valgrind,
# and a short fuzz run of the answer parser
test-pam:
	$(PYTEST) -q pam/tests

test-integration:
	$(PYTEST) -q tests/integration

# short fuzz runs (about 3,000 token cases and 2,000 frames) that must find nothing
test-fuzz:
	$(PYTEST) -q tests/fuzz

# full-size runs: 100,000 token cases, 100,000 protocol frames (root: a real daemon),
# 1,000,000 mutated answers through the C answer parser (ASan, UBSan)
fuzz:
	$(PYTHON) tests/fuzz/fuzz_tokens.py
	$(PYTHON) tests/fuzz/fuzz_protocol.py
	$(MAKE) -C pam fuzz

# about 50 kill -9s of a sandbox hostd mid-operation; `make crash` runs 500
test-crash:
	$(PYTEST) -q tests/crash

crash:
	$(PYTHON) tests/crash/crash.py --iterations 500

# one booted container per module; two modules at a time (each waits on its container far
# more than it computes): 8.5 min serially, 3.6 min so on the 2-core machine
test-e2e: deb
	$(PYTEST) -q -n 2 --dist loadfile tests/e2e

deb:
	./packaging/build-deb.sh

demo: deps deb
	$(PYTHON) tests/e2e/demo.py

bench:
	$(PYTHON) benchmarks/grants.py
	$(PYTHON) benchmarks/daemon_scale.py
	$(PYTHON) benchmarks/loop_latency.py
	$(PYTHON) benchmarks/store_sync.py
	$(PYTHON) benchmarks/sudo_check.py
	$(PYTHON) benchmarks/sudo_overhead.py
	$(PYTHON) benchmarks/audit.py
	benchmarks/recorder.sh
	$(PYTHON) benchmarks/masking.py
	./benchmarks/pam_overhead.sh
	$(PYTHON) benchmarks/pam_phases.py
	$(PYTHON) benchmarks/pam_hostd_cpu.py
	$(PYTHON) benchmarks/residue_scan.py
	$(PYTHON) benchmarks/residue_scan.py 15 --spawn 1000 50
	$(PYTHON) benchmarks/setgid_walk.py
	$(PYTHON) benchmarks/revocations.py

clean:
	rm -rf dist build *.egg-info
	$(MAKE) -C pam clean
	$(MAKE) -C sudo-plugin clean
