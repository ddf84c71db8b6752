// How many queues a device offers its frontend (multi-queue-max-queues) when the operator does not
// say: one per CPU, as the kernel's blkback and netback offer, but at most 8. The CPUs counted are
// those the calling thread may run on (a unit's CPUAffinity=, taskset, a cpuset): more queues than
// that would only be more threads on the same CPUs.
//
// Why a cap. A guest never uses more queues than its own frontend wants (Linux's xen-blkfront asks
// for 4 by default, xen-netfront for 8, which it capped in 4.11 because every queue holds grants of
// its own), so more are only a cost: each queue is a thread of the device's data plane, and a vbd's
// queue keeps up to max_persistent_grants (1056) of the guest's pages mapped, every one an entry of
// dom0's maptrack in Xen, which is bounded host-wide. Per device, the data plane's threads, memory
// and task limits grow with its queues (bench/scale.sh: at 2 queues per device, 3 threads and the
// same memory per device at 1, 8 and 32 guests), so on a large dom0 the cap is what keeps 32
// guests' devices from being 32 times every CPU.
#pragma once
#include <sched.h>

#include <algorithm>
#include <thread>

namespace pvback {

inline constexpr unsigned kDefaultQueueCap = 8;

// The CPUs the calling thread may run on; every online CPU if the kernel does not say.
inline unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return static_cast<unsigned>(CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

inline unsigned default_queue_count() { return std::clamp(usable_cpus(), 1u, kDefaultQueueCap); }

}  // namespace pvback
