#!/bin/bash
# Build the jitaccess .deb: copy the source tree to a scratch directory, add
# packaging/debian as debian/, run dpkg-buildpackage there, and leave the result in
# dist/. Nothing but dist/ is written inside the repository.
#
# Environment: VERBOSE=1 shows the build output; LINTIAN=0 skips the lintian check (default: run it, fail on any error
# or warning); KEEP_BUILD=1 keeps the scratch directory.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

pkg_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
py_version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' hostd/__init__.py)
if [ "$pkg_version" != "$py_version" ]; then
    echo "build-deb: packaging/debian/changelog says $pkg_version," \
         "hostd/__init__.py says $py_version" >&2
    exit 2
fi

scratch=$(mktemp -d /tmp/jitaccess-build.XXXXXX)
if [ "${KEEP_BUILD:-0}" != "1" ]; then
    trap 'rm -rf "$scratch"' EXIT
fi
src="$scratch/jitaccess-$pkg_version"
mkdir -p "$src"

# The source: what git tracks plus untracked files that are not ignored (so a
# working tree builds as it is), or the whole tree when this is not a git checkout.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files deleted in the working tree are left out. The inner script is
    # single-quoted on purpose: its "$f" is the inner shell's (SC2016). `if`, not `&&`:
    # a missing last file must not make sh, then xargs, then the pipeline fail.
    # shellcheck disable=SC2016
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | grep -zv -e '^dist/' -e '^packaging/debian/' -e '\.whl$' \
        | xargs -0 -r sh -c 'for f; do if [ -e "$f" ]; then printf "%s\0" "$f"; fi; done' sh \
        | tar -C "$repo" --null -T - -cf - \
        | tar -C "$src" -xf -
else
    tar -C "$repo" --exclude=./.git --exclude=./dist --exclude=./build \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./packaging/debian \
        --exclude='*.whl' -cf - . | tar -C "$src" -xf -
fi
cp -a packaging/debian "$src/debian"
# Build products a developer may have left in packaging/debian are not sources.
rm -rf "$src/debian/.debhelper" "$src/debian/jitaccess" "$src/debian/files" \
    "$src/debian/debhelper-build-stamp" "$src"/debian/*.substvars "$src"/debian/*.log

mkdir -p "$repo/dist"
# The build's own chatter goes to dist/build.log (VERBOSE=1: to the terminal); on
# failure its end is shown.
if [ "${VERBOSE:-0}" = "1" ]; then
    (cd "$src" && dpkg-buildpackage -us -uc -b)
elif ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$repo/dist/build.log" 2>&1; then
    tail -n 40 "$repo/dist/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed; full log in dist/build.log" >&2
    exit 1
fi

deb="jitaccess_${pkg_version}_$(dpkg-architecture -qDEB_HOST_ARCH).deb"
rm -f "$repo"/dist/jitaccess_*.deb  # one package in dist/: the one just built
cp "$scratch/$deb" "$repo/dist/$deb"
echo "build-deb: dist/$deb"

if [ "${LINTIAN:-1}" != "0" ] && command -v lintian >/dev/null; then
    lintian --fail-on error,warning "$repo/dist/$deb"
    echo "build-deb: lintian: no errors, no warnings"
fi
