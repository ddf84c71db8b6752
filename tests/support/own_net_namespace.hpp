// main() of a test binary whose daemons make TAP devices: every test runs in a network namespace
// of the binary's own (which takes root), so no TAP reaches the host's.
#pragma once
#include <sched.h>

#include <cstdio>

#include <gtest/gtest.h>

namespace pvback::test {

inline int run_all_tests_in_own_net_namespace(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET): these tests need root");
    return 1;
  }
  return RUN_ALL_TESTS();
}

}  // namespace pvback::test
