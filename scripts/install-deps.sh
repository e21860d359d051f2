#!/bin/bash
# Install what building, testing, linting and the demo need on Debian 12, once: Debian
# packages only (runtime, build, and shellcheck for `make lint`), plus ruff (a lint tool
# Debian 12 lacks) in a private venv under /var/cache, never in the system Python. Does
# nothing when all is there.
set -euo pipefail

PACKAGES=(
    make python3 python3-venv python3-pytest
    python3-cryptography python3-jwt python3-dbus-next python3-systemd python3-pyroute2
    python3-pampy python3-pamela python3-six libpam-python pamtester sudo passwd util-linux
    iproute2 debootstrap systemd-container debian-archive-keyring
    build-essential debhelper dh-python python3-all python3-setuptools lintian fakeroot
    libjson-c-dev valgrind
    shellcheck
    libpam-wrapper python3-pypamtest python3-hypothesis asciinema tmux hyperfine chromium
)
TOOLS=/var/cache/jitaccess-tools

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ] || [ ! -x "$TOOLS/venv/bin/ruff" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-deps: run as root (sudo make ...): missing ${missing[*]:-ruff}" >&2
        exit 2
    fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x "$TOOLS/venv/bin/ruff" ]; then
    echo "install-deps: installing ruff into $TOOLS/venv"
    mkdir -p "$TOOLS"
    /usr/bin/python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check "ruff==0.17.6"
fi
