#!/bin/sh
# Prints the directory of the source of the fio that is installed (Debian's fio package), configured
# (./configure has written config-host.h), fetching it with `apt-get source` into
# ${PVBACK_CACHE:-$HOME/.cache/pvback}/fio-src/ on first use. The pvback fio engine (fioengine/) is
# compiled against it: `cmake -DPVBACK_FIO_SOURCE=$(scripts/fio-source.sh)`. Nothing of fio is
# committed to this repository.
#
# The system's apt configuration is not changed: deb-src entries for the Debian mirrors the system
# already uses are written to a private sources list, and `apt-get update` / `apt-get source` run
# with private lists and cache directories (apt's Dir::Etc::SourceList, Dir::Etc::SourceParts,
# Dir::State::Lists, Dir::Cache) under the cache directory. Needs dpkg-dev (dpkg-source) and fio.
set -eu

cache_root=${PVBACK_CACHE:-$HOME/.cache/pvback}
src_cache=$cache_root/fio-src
log() { echo "fio-source: $*" >&2; }

version=$(dpkg-query -W -f='${Version}' fio 2>/dev/null) || version=
[ -n "$version" ] || { log "Debian's fio package is not installed (scripts/install-deps.sh installs it)"; exit 1; }
upstream=${version#*:}
upstream=${upstream%-*}
dir=$src_cache/fio-$upstream
stamp=$dir/.pvback-configured

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ] && [ -f "$dir/config-host.h" ]; then
  echo "$dir"
  exit 0
fi
command -v dpkg-source >/dev/null 2>&1 || { log "dpkg-source missing (install dpkg-dev)"; exit 1; }

apt_dir=$cache_root/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/sources.list.d"
# deb-src twins of the system's enabled Debian entries (deb822 .sources and one-line .list files),
# so the same mirror and keyring are used; other repositories (vendors' apt repositories rarely
# carry sources) are left out.
{
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         /(^|\n)Types:[^\n]*deb/ && /(^|\n)URIs:[^\n]*debian/ && !/(^|\n)Enabled: *no/ {
           sub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print }' "$f"
  done
} >"$apt_dir/sources.list.d/debian-src.sources"
{
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^[[:space:]]*deb[[:space:]]\(.*debian.*\)$/deb-src \1/p' "$f"
  done
} >"$apt_dir/sources.list"
if ! [ -s "$apt_dir/sources.list" ] && ! [ -s "$apt_dir/sources.list.d/debian-src.sources" ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  log "no Debian entry in the system's sources: using deb.debian.org for $codename"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main" \
    >"$apt_dir/sources.list"
fi

apt_private() {
  apt-get -o Dir::Etc::SourceList="$apt_dir/sources.list" \
    -o Dir::Etc::SourceParts="$apt_dir/sources.list.d" \
    -o Dir::State::Lists="$apt_dir/lists" \
    -o Dir::Cache="$apt_dir/cache" \
    -o APT::Sandbox::User=root \
    "$@"
}

log "fetching the source of fio $version (private apt lists in $apt_dir)"
apt_private update -qq >&2 || { log "apt-get update of the deb-src entries failed"; exit 1; }
mkdir -p "$src_cache"
staging=$(mktemp -d "$src_cache/.fetch.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# The installed version first (the engine must match the fio that loads it); a mirror that no longer
# has it offers the candidate, which is only used when its upstream version is the same.
if ! (cd "$staging" && apt_private source -qq "fio=$version" >&2); then
  rm -rf "${staging:?}"/*
  candidate=$(apt_private showsrc fio 2>/dev/null | awk '/^Version:/ {print $2; exit}')
  c_upstream=${candidate#*:}
  c_upstream=${c_upstream%-*}
  if [ -z "$candidate" ] || [ "$c_upstream" != "$upstream" ]; then
    log "apt-get source fio=$version failed, and no source of fio $upstream is offered (found: ${candidate:-none})"
    exit 1
  fi
  log "fio=$version unavailable; using the source of $candidate (same upstream version)"
  (cd "$staging" && apt_private source -qq "fio=$candidate" >&2) || { log "apt-get source fio=$candidate failed"; exit 1; }
fi
[ -f "$staging/fio-$upstream/fio.h" ] || { log "no fio-$upstream/fio.h in the source package"; exit 1; }

# fio's own configure, as for any out-of-tree engine: it writes config-host.h (and config-host.mak),
# which fio's headers include. Only the headers are used: fio itself is not built. The struct layouts
# the engine relies on (thread_data, io_u, fio_file) depend on no optional library's presence in
# fio 3.33; the engine checks FIO_IOOPS_VERSION against the loading fio at load time.
(cd "$staging/fio-$upstream" && ./configure --disable-native >"$staging/configure.log" 2>&1) || {
  log "fio's ./configure failed:"; cat "$staging/configure.log" >&2; exit 1; }
[ -f "$staging/fio-$upstream/config-host.h" ] || { log "fio's configure wrote no config-host.h"; exit 1; }
echo "$version" >"$staging/fio-$upstream/.pvback-configured"
rm -rf "$dir"
mv "$staging/fio-$upstream" "$dir"
echo "$dir"
