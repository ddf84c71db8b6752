#!/usr/bin/env bash
# Line and branch coverage of each parser by its fuzz target: fuzzes for SECONDS (default 60)
# into a scratch corpus, replays seeds + scratch on a coverage-instrumented build and prints
# llvm-cov's report for the parser's own source files.
#   tests/fuzz/coverage.sh [SECONDS]        (PVBACK_FUZZ_ONLY="target ..." for some of them)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
scripts/install-deps.sh
scripts/build.sh fuzz >/dev/null
CC=clang-16 CXX=clang++-16 cmake -S . -B build-fuzz-cov -DPVBACK_FUZZ=ON -DPVBACK_FUZZ_COVERAGE=ON >/dev/null
cmake --build build-fuzz-cov -j"$(nproc)" >/dev/null
# target -> the parser sources it covers
declare -A sources=([blkif_request]="blkback/request.cpp" [packet_headers]="netback/headers.cpp" [ctrl_messages]="netback/ctrl_messages.cpp" [tx_slots]="netback/tx_request.hpp"
                    [rx_postings]="netback/rx_postings.hpp"
                    [xenstore_wire]="sim/xenstore/protocol.cpp sim/xenstore/store.cpp"
                    [frontend_keys]="blkback/frontend_keys.cpp xenbus/frontend_keys.cpp xenbus/parse_number.cpp"
                    [vif_frontend_keys]="netback/frontend_keys.cpp xenbus/frontend_keys.cpp xenbus/parse_number.cpp")
# Only some targets: PVBACK_FUZZ_ONLY="frontend_keys blkif_request"
if [ -n "${PVBACK_FUZZ_ONLY:-}" ]; then
  declare -A chosen=()
  for t in $PVBACK_FUZZ_ONLY; do chosen[$t]=${sources[$t]}; done
  unset sources
  declare -A sources=()
  for t in "${!chosen[@]}"; do sources[$t]=${chosen[$t]}; done
fi
for corpus in "${!sources[@]}"; do
  scratch=build-fuzz/tests/fuzz/corpus-$corpus
  mkdir -p "$scratch"
  build-fuzz/tests/fuzz/${corpus}_fuzz -max_total_time="$seconds" "$scratch" "tests/fuzz/corpus/$corpus" 2>/dev/null
  prof=build-fuzz-cov/$corpus.profraw
  LLVM_PROFILE_FILE=$prof build-fuzz-cov/tests/fuzz/${corpus}_fuzz -runs=0 "$scratch" "tests/fuzz/corpus/$corpus" 2>/dev/null
  llvm-profdata-16 merge -sparse "$prof" -o "build-fuzz-cov/$corpus.profdata"
  echo "=== $corpus: ${sources[$corpus]} after ${seconds}s of fuzzing ==="
  # shellcheck disable=SC2086
  llvm-cov-16 report "build-fuzz-cov/tests/fuzz/${corpus}_fuzz" -instr-profile="build-fuzz-cov/$corpus.profdata" \
    ${sources[$corpus]}
done
