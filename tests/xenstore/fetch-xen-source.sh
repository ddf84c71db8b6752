#!/bin/sh
# Prints the directory of Xen's tools/tests/xenstore (from Debian's xen source package), fetching
# and extracting the package into ${PVBACK_CACHE:-$HOME/.cache/pvback}/xen-src on first use.
# Xen's code stays in the cache; nothing of it is committed to this repository.
set -eu

cache_root=${PVBACK_CACHE:-$HOME/.cache/pvback}
src_cache=$cache_root/xen-src

find_test_dir() {
  for d in "$src_cache"/xen-*/tools/tests/xenstore; do
    if [ -f "$d/test-xenstore.c" ]; then echo "$d"; return 0; fi
  done
  return 1
}

if find_test_dir; then exit 0; fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# apt-get source needs a deb-src entry; the image ships binary entries only.
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "fetch-xen-source: adding a bookworm deb-src entry" >&2
  as_root sh -c 'cat > /etc/apt/sources.list.d/pvback-deb-src.sources' <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  as_root apt-get update -qq >&2
fi
if ! command -v dpkg-source >/dev/null 2>&1; then
  as_root apt-get install -y -qq dpkg-dev >&2
fi

mkdir -p "$src_cache"
staging=$(mktemp -d "$src_cache/.fetch.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# The newest version may be missing from a mirror (security pool); any 4.17 test-xenstore.c will do.
fetched=no
for version in "" $(apt-cache showsrc xen 2>/dev/null | awk '/^Version:/ {print $2}'); do
  spec=xen${version:+=$version}
  if (cd "$staging" && apt-get source -qq "$spec" >&2); then fetched=yes; break; fi
  rm -rf "${staging:?}"/*
  echo "fetch-xen-source: $spec unavailable, trying another version" >&2
done
[ "$fetched" = yes ] || { echo "fetch-xen-source: apt-get source xen failed" >&2; exit 1; }
for d in "$staging"/xen-*/; do
  [ -d "$d" ] || continue
  name=$(basename "$d")
  rm -rf "${src_cache:?}/$name"
  mv "$d" "$src_cache/$name"
done
find_test_dir || { echo "fetch-xen-source: test-xenstore.c not found in the xen source package" >&2; exit 1; }
