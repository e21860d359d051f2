# jitaccess: build, test and demo. Runs on Debian 12 with Debian's /usr/bin/python3.
PYTHON ?= /usr/bin/python3
PYTEST = $(PYTHON) -m pytest -p no:cacheprovider

.PHONY: test test-unit test-integration test-e2e lint deb demo bench clean deps

test: lint test-unit test-integration test-e2e

lint:
	$(PYTHON) -m ruff check hostd pam tests benchmarks || ruff check hostd pam tests benchmarks

test-unit:
	$(PYTEST) -q tests/unit

test-integration:
	$(PYTEST) -q tests/integration

test-e2e: deb
	$(PYTEST) -q tests/e2e

deb:
	./packaging/build-deb.sh

demo: deb
	$(PYTHON) tests/e2e/demo.py

bench:
	$(PYTHON) benchmarks/grants.py
	$(PYTHON) benchmarks/daemon_scale.py

clean:
	rm -rf dist build *.egg-info
