#!/bin/bash
# What pam_jit costs a login (issue 9): `pamtester login USER acct_mgmt open_session
# close_session` through Debian's login stack with and without the pam_jit lines, side by
# side in one hyperfine run in a booted Debian 12 container with the built .deb installed.
# Goal: at most 20 ms added. Prints hyperfine's table and the added milliseconds.
#
# Four commands: the stack without pam_jit (baseline); with a no-op pam_python module in
# its place (what pam_python itself costs: an interpreter and its `traceback` import per
# process); with pam_jit for an ungated user (account answers from the gate file,
# session asks hostd); with pam_jit for a gated user holding a login grant (every phase
# asks hostd).
#
# On the host (root): boots the e2e container (tests/e2e/container.py, plus hyperfine)
# and runs itself inside with --inside. RUNS=N sets hyperfine's runs (default 200).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
runs=${RUNS:-200}

inside() {
    cd /etc/pam.d
    # Debian's login stack as it is (with pam_jit), and two copies of it whose
    # common-account/common-session includes are copies too: without the pam_jit lines
    # (and root's skip), and with a no-op pam_python module in pam_jit's place
    grep -v -e pam_jit.py -e 'uid eq 0' common-account > jit-bench-without-account
    grep -v -e pam_jit.py common-session > jit-bench-without-session
    printf 'def pam_sm_acct_mgmt(pamh, flags, argv):\n    return pamh.PAM_SUCCESS\n%s\n' \
        'pam_sm_open_session = pam_sm_close_session = pam_sm_acct_mgmt' > /root/pam_noop.py
    sed 's#/usr/lib/jitaccess/pam_jit.py#/root/pam_noop.py#' common-account \
        > jit-bench-noop-account
    sed 's#/usr/lib/jitaccess/pam_jit.py#/root/pam_noop.py#' common-session \
        > jit-bench-noop-session
    for variant in without noop; do
        sed -e "s/^@include common-account\$/@include jit-bench-$variant-account/" \
            -e "s/^@include common-session\$/@include jit-bench-$variant-session/" \
            login > "jit-bench-$variant"
    done
    grep -q pam_jit.py common-account common-session
    if grep -q -e pam_jit.py -e 'include common-account' -e 'include common-session' \
            jit-bench-without jit-bench-without-account jit-bench-without-session; then
        echo "pam_overhead: the baseline stack still calls pam_jit" >&2
        exit 1
    fi
    out=/root/pam-bench.json
    hyperfine --warmup 20 --runs "$runs" -N --export-json "$out" \
        -n without-pam_jit "pamtester jit-bench-without alice acct_mgmt open_session close_session" \
        -n noop-pam_python "pamtester jit-bench-noop alice acct_mgmt open_session close_session" \
        -n with-pam_jit-ungated "pamtester login bob acct_mgmt open_session close_session" \
        -n with-pam_jit-gated "pamtester login alice acct_mgmt open_session close_session"
    python3 - "$out" <<'EOF'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
base = results["without-pam_jit"]
noop = results["noop-pam_python"]
for name in ("noop-pam_python", "with-pam_jit-ungated", "with-pam_jit-gated"):
    r = results[name]
    added = (r["mean"] - base["mean"]) * 1000
    median = (r["median"] - base["median"]) * 1000
    print(f"{name}: {added:+.1f} ms added (mean), {median:+.1f} ms (median); "
          f"ratio {r['mean'] / base['mean']:.2f} against without-pam_jit "
          f"({base['mean'] * 1000:.1f} ms); goal: at most 20 ms added")
for name in ("with-pam_jit-ungated", "with-pam_jit-gated"):
    r = results[name]
    print(f"{name}: {(r['mean'] - noop['mean']) * 1000:+.1f} ms over a no-op pam_python "
          "module (pam_jit's own share: its code and its hostd round trips)")
EOF
}

if [ "${1:-}" = "--inside" ]; then
    inside
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "pam_overhead: run as root (boots a container with systemd-nspawn)" >&2
    exit 2
fi

RUNS=$runs SCRIPT="$here/pam_overhead.sh" /usr/bin/python3 - <<'EOF'
import os, sys
from pathlib import Path

repo = Path(os.environ["SCRIPT"]).resolve().parents[1]
sys.path.insert(0, str(repo / "tests" / "e2e"))
from container import PACKAGES, Container  # noqa: E402
from jithost import POLICY_TOML, add_users, configure, find_deb, install_deb, issue  # noqa: E402

POLICY = POLICY_TOML + """
[roles.console]
groups = ["docker"]
max_ttl = "1h"
issuers = ["corp"]
login = true

[login]
require_grant = ["alice"]
"""

box = Container.create("jit-bench-pam", packages=(*PACKAGES, "hyperfine"))
try:
    box.boot()
    add_users(box)
    install_deb(box, find_deb())
    configure(box, POLICY)
    box.run(["jit", "activate", issue(box, "alice", "console", "1h")])
    box.copy_in(Path(os.environ["SCRIPT"]), "/root/pam_overhead.sh")
    r = box.run(["bash", "/root/pam_overhead.sh", "--inside"], timeout=1800, check=False,
                env={"RUNS": os.environ["RUNS"]})
    print(r.stdout, end="")
    print(r.stderr, end="", file=sys.stderr)
    sys.exit(r.returncode)
finally:
    box.close()
EOF
