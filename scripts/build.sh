#!/usr/bin/env bash
# Configures and builds one flavour of pvback with warnings as errors (the project's own builds;
# the CMake default, for anyone else, is PVBACK_WERROR=OFF):
#   scripts/build.sh release   build/         CMAKE_BUILD_TYPE=Release (what the real-Xen tier boots)
#   scripts/build.sh asan      build-asan/    Debug with AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/build.sh debian    build-debian/  Debian's packaging flags (dpkg-buildflags: -O2,
#                                             _FORTIFY_SOURCE, stack protector, relro), as a
#                                             package build would set them
#   scripts/build.sh fuzz      build-fuzz/    the libFuzzer targets alone (tests/fuzz), clang 16
#   scripts/build.sh relwithdebinfo | debug   build-relwithdebinfo/, build-debug/
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:-release}
env_flags=()
case "$flavour" in
  release) dir=build; extra=(-DCMAKE_BUILD_TYPE=Release) ;;
  asan) dir=build-asan; extra=(-DPVBACK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug) ;;
  fuzz) dir=build-fuzz; extra=(-DPVBACK_FUZZ=ON)
        env_flags=(CC=clang-16 CXX=clang++-16) ;;
  relwithdebinfo) dir=build-relwithdebinfo; extra=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  debug) dir=build-debug; extra=(-DCMAKE_BUILD_TYPE=Debug) ;;
  debian)
    command -v dpkg-buildflags >/dev/null || { echo "build.sh: dpkg-buildflags missing (dpkg-dev)" >&2; exit 1; }
    dir=build-debian
    # As debhelper's cmake build system passes them: the flags through the environment, the build
    # type None so that CMake adds no optimisation flags of its own.
    extra=(-DCMAKE_BUILD_TYPE=None)
    env_flags=(CFLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
               CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
               LDFLAGS="$(dpkg-buildflags --get LDFLAGS)")
    ;;
  *) echo "usage: $0 [release|asan|debian|fuzz|relwithdebinfo|debug]" >&2; exit 2 ;;
esac
# The fio engine (fioengine/) is compiled against the source of the installed fio, which
# scripts/fio-source.sh fetches into the cache once (apt-get source) and configures.
# PVBACK_FIO_SOURCE=DIR uses that tree instead; PVBACK_FIO_SOURCE= (empty) builds without the engine.
if [ "$flavour" != fuzz ]; then
  if [ -n "${PVBACK_FIO_SOURCE+set}" ]; then
    fio_source=$PVBACK_FIO_SOURCE
  else
    fio_source=$(scripts/fio-source.sh) || {
      echo "build.sh: scripts/fio-source.sh failed: cannot build the fio engine (PVBACK_FIO_SOURCE= builds without it)" >&2
      exit 1
    }
  fi
  extra+=(-DPVBACK_FIO_SOURCE="$fio_source")
fi
env "${env_flags[@]}" cmake -S . -B "$dir" -DPVBACK_WERROR=ON "${extra[@]}" >/dev/null
cmake --build "$dir" -j"$(nproc)"
