// CHECK(cond) for the fuzz targets: a broken invariant is a finding, reported and aborted on so
// that libFuzzer saves the input.
#pragma once
#include <cstdio>
#include <cstdlib>

#define PVBACK_FUZZ_CHECK(cond)                                                       \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "fuzz target: %s violated at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
#define CHECK(cond) PVBACK_FUZZ_CHECK(cond)
