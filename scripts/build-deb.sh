#!/usr/bin/env bash
# Builds pvback's Debian binary package from a clean export of the committed tree (HEAD, or the
# commit given): `dpkg-buildpackage -us -uc -b` in a temporary directory, lintian on the result,
# and the .deb, .buildinfo and .changes in dist/ (printed at the end). Nothing in the work tree,
# committed or not, is built but what `git archive` exports. Needs the Build-Depends of
# debian/control (scripts/install-deps.sh installs them) and no network.
#   scripts/build-deb.sh [COMMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:-HEAD}
out=$PWD/dist
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$out"
git archive --format=tar "$commit" | tar -x -C "$work/src"
(cd "$work/src" && DEB_BUILD_OPTIONS="parallel=$(nproc) ${DEB_BUILD_OPTIONS:-}" dpkg-buildpackage -us -uc -b)
shopt -s nullglob
artifacts=("$work"/*.deb "$work"/*.buildinfo "$work"/*.changes)
((${#artifacts[@]})) || { echo "build-deb: dpkg-buildpackage made no package" >&2; exit 1; }
cp "${artifacts[@]}" "$out/"
changes=$(ls "$work"/*.changes)
echo "=== lintian ==="
lintian --info --display-info "$changes" || { echo "build-deb: lintian reported errors" >&2; exit 1; }
for f in "${artifacts[@]}"; do echo "build-deb: $out/$(basename "$f")"; done
