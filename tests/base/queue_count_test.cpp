// base/queue_count: the default queue count follows the CPUs the thread may run on, capped.
#include <sched.h>

#include <thread>

#include <gtest/gtest.h>

#include "base/queue_count.hpp"

namespace pvback {
namespace {

TEST(QueueCount, FollowsTheThreadsAffinityNotEveryCpu) {
  cpu_set_t all;
  ASSERT_EQ(::sched_getaffinity(0, sizeof all, &all), 0);
  // In a thread of its own, so the test's main thread keeps its affinity.
  unsigned one = 0, unrestricted = 0;
  std::thread([&] {
    unrestricted = default_queue_count();
    cpu_set_t single;
    CPU_ZERO(&single);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
      if (CPU_ISSET(cpu, &all)) {
        CPU_SET(cpu, &single);
        break;
      }
    if (::sched_setaffinity(0, sizeof single, &single) == 0) one = default_queue_count();
  }).join();
  EXPECT_EQ(one, 1u);
  EXPECT_EQ(unrestricted, std::min(static_cast<unsigned>(CPU_COUNT(&all)), kDefaultQueueCap));
  EXPECT_GE(unrestricted, 1u);
}

}  // namespace
}  // namespace pvback
