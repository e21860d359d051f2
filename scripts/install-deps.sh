#!/bin/bash
# Install what building, testing, linting and the demo need on Debian 12, once: Debian
# packages only (runtime, build, and shellcheck for `make lint`), plus ruff (a lint tool
# Debian 12 lacks) in a private venv under /var/cache, never in the system Python. Does
# nothing when all is there.
set -euo pipefail

PACKAGES=(
    make python3 python3-venv python3-pytest python3-pytest-xdist
    python3-cryptography python3-jwt python3-dbus-next python3-systemd python3-pyroute2
    python3-pampy python3-pamela python3-six libpam-python pamtester sudo passwd util-linux
    iproute2 debootstrap systemd-container debian-archive-keyring
    build-essential debhelper dh-python python3-all python3-setuptools lintian fakeroot
    libjson-c-dev libpam0g-dev valgrind
    shellcheck
    libpam-wrapper libnss-wrapper python3-pypamtest python3-hypothesis asciinema tmux hyperfine
    chromium libhyperscan5
    systemd-journal-remote
    python3-requests python3-qrcode
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
# `jit audit` export tests (tests/unit/test_audit_schemas.py): the OCSF schema as the
# ocsf-json-schema package ships it (JSON Schema per class) and jsonschema to apply it;
# the ECS field definitions as Elastic's @elastic/ecs npm package ships them (EcsFlat,
# generated from ecs_flat.yml). Test-only: the runtime never imports them.
if [ ! -d "$TOOLS/venv/lib/python3.11/site-packages/ocsf_json_schema" ] \
        || [ ! -d "$TOOLS/venv/lib/python3.11/site-packages/jsonschema" ]; then
    echo "install-deps: installing ocsf-json-schema and jsonschema into $TOOLS/venv"
    "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
        "ocsf-json-schema==1.2.0" "jsonschema==4.23.0"
fi
if [ ! -f "$TOOLS/npm/node_modules/@elastic/ecs/package.json" ]; then
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        echo "install-deps: installing nodejs and npm (for the ECS field definitions)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    echo "install-deps: installing @elastic/ecs into $TOOLS/npm"
    mkdir -p "$TOOLS/npm"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/npm" "@elastic/ecs@9.4.0"
fi
# The e2e test of `jit login` and the IdP key fetcher (tests/e2e/test_e2e_oidc.py) runs a
# real OIDC provider inside the booted container: panva's certified oidc-provider, on the
# host's Node.js (copied into the box), from this directory keyed by its version.
OIDC_PROVIDER=8.8.1
if [ ! -f "$TOOLS/oidc-provider-$OIDC_PROVIDER/node_modules/oidc-provider/package.json" ]; then
    echo "install-deps: installing oidc-provider $OIDC_PROVIDER into $TOOLS"
    mkdir -p "$TOOLS/oidc-provider-$OIDC_PROVIDER"
    npm install --silent --no-audit --no-fund --prefix "$TOOLS/oidc-provider-$OIDC_PROVIDER" \
        "oidc-provider@$OIDC_PROVIDER"
fi
