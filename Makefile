# jitaccess: build, test and demo on Debian 12, with Debian's /usr/bin/python3.
# `make test` and `make demo` install what they need first (scripts/install-deps.sh).
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider
RUFF ?= /var/cache/jitaccess-tools/venv/bin/ruff

.PHONY: test test-unit test-integration test-crash crash test-e2e lint deb demo bench clean deps

test: deps lint test-unit test-integration test-crash test-e2e

deps:
	./scripts/install-deps.sh

lint:
	$(RUFF) check hostd tests benchmarks

test-unit:
	$(PYTEST) -q tests/unit

test-integration:
	$(PYTEST) -q tests/integration

test-crash:
	$(PYTEST) -q tests/crash

crash:
	$(PYTHON) tests/crash/crash.py --iterations 500

test-e2e: deb
	$(PYTEST) -q tests/e2e

deb:
	./packaging/build-deb.sh

demo: deps deb
	$(PYTHON) tests/e2e/demo.py

bench:
	$(PYTHON) benchmarks/grants.py
	$(PYTHON) benchmarks/daemon_scale.py

clean:
	rm -rf dist build *.egg-info
