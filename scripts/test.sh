#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds the Release and the ASan+UBSan (Debug)
# flavours and runs every default-tier test (labels unit, sim) in both, the soak's short version
# (label soak) in the Release one, runs each libFuzzer target
# for a bounded time (label fuzz, built with clang in build-fuzz), then compiles once more
# with Debian's packaging flags (dpkg-buildflags), all with warnings as errors. The real-Xen tier
# (tests/xen/run.sh) is separate.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Xen's own XenStore test program comes from Debian's xen source package (cached, never committed).
tests/xenstore/fetch-xen-source.sh >/dev/null
# So does fio's source, for the fio engine (scripts/build.sh builds it against this).
scripts/fio-source.sh >/dev/null
start=$(date +%s)

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for flavour in release asan; do
  scripts/build.sh "$flavour"
  dir=build; [ "$flavour" = asan ] && dir=build-asan
  echo "=== tests ($flavour) ==="
  # halt_on_error makes any ASan/UBSan finding fail the test that triggered it.
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$dir" -L 'unit|sim' --output-on-failure -j2 --timeout 300 2>&1 | tee -a "$log" \
    || status=1
done
# The soak's short version (label soak, Release build only: 8 guests under the supervisor for 75 s,
# about 2 minutes in all; scripts/soak.sh is the long one).
echo "=== soak (release, short) ==="
ctest --test-dir build -L soak --output-on-failure 2>&1 | tee -a "$log" || status=1
# Every libFuzzer target for a bounded time (label fuzz; PVBACK_FUZZ_SECONDS each, 20 by default),
# from its seed corpus: any crash, sanitizer report or broken invariant fails it.
scripts/build.sh fuzz
echo "=== fuzz targets ==="
ctest --test-dir build-fuzz -L fuzz --output-on-failure 2>&1 | tee -a "$log" || status=1
# A package build's flags (-O2, _FORTIFY_SOURCE, stack protector) bring their own diagnostics:
# compiled here so that a warning they raise is seen before a packager sees it.
echo "=== build with dpkg-buildflags ==="
scripts/build.sh debian >/dev/null || { echo "test.sh: the build with dpkg-buildflags failed" >&2; status=1; }
# One closing line over both flavours, from ctest's own summaries.
read -r passed failed < <(awk '/tests passed, [0-9]+ tests? failed out of/ {
    total += $(NF); failed += $4 } END { print total - failed, failed + 0 }' "$log")
echo "test.sh: finished in $(( $(date +%s) - start ))s"
echo "total: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ] || status=1
exit $status
