// Polling before sleeping: the wake-ups a busy queue saves.
//
// A queue that answered requests can expect the frontend to queue more within microseconds (fio
// or blk-mq refilling its queue depth), and its storage to complete more. Sleeping in between costs
// the frontend a notification and the queue a wake-up and the event channel's read and unmask (in
// a PV dom0, hypercalls); a request that waits for them is a request not yet at the disk. So before
// sleeping, the queue looks at its ring and its completions for a while, with the frontend's
// notifications left off (req_event not advanced: the frontend's RING_PUSH_REQUESTS_AND_CHECK_NOTIFY
// then finds nothing to notify); only when it is about to sleep does it ask for one again (the
// final check), as the kernel's blkback does before every sleep.
//
// The window adapts, in the spirit of QEMU's event loop with its poll-max-ns: it doubles (from
// 4 us, up to config.poll_max) when polling found work, when work was there as the poll ended, or
// when the queue slept less than poll_max after polling (a longer poll would have caught it); it halves (to 0 below 4 us) after a sleep
// longer than poll_max, so that a queue whose frontend is idle or slow soon costs no CPU.
#include <sched.h>

#include <algorithm>

#include "blkback/queue_impl.hpp"

namespace pvback::blkback {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

constexpr std::int64_t kPollStartNs = 4'000;
constexpr std::int64_t kYieldEveryNs = 8'000;

}  // namespace

bool Queue::Impl::poll_before_sleeping() {
  if (paused || stopping || fatal_seen) return false;
  // Requests left in the ring for want of a slot or bounce pages (or behind a predecessor's still
  // to be executed again) are taken when a completion frees room (run()'s backlog path): they are
  // no work a poll can do, and counting them would spin without end.
  const bool ring_counts = !backlog && !recovered;
  if (polling() && poll_ns > 0) {
    const std::int64_t start = now_ns();
    const std::int64_t deadline = start + poll_ns;
    std::int64_t yielded = start;
    for (unsigned spins = 0;; ++spins) {
      if (loop.ready() != 0) {  // the loop reaps without sleeping
        grow_poll_window();
        return false;
      }
      if (ring_counts) {
        auto n = unconsumed();
        if (!n || *n != 0) {  // an impossible req_prod: process_ring disconnects
          grow_poll_window();
          return true;
        }
      }
      if ((spins & 31) == 31) {
        const std::int64_t now = now_ns();
        if (now >= deadline) break;
        // A frontend (or anything else) waiting for this CPU gets it: a poll must not hold off the
        // very thread it waits for. With nothing else runnable, this returns at once.
        if (now - yielded >= kYieldEveryNs) {
          ::sched_yield();
          yielded = now;
        }
      }
      cpu_relax();
    }
  }
  if (!ring_counts || notifications_armed) return false;
  // About to sleep: notifications on again, and a last look at what the frontend queued meanwhile.
  auto more = final_check();
  const bool ring_ready = !more || *more;
  if (polling() && (ring_ready || loop.ready() != 0)) grow_poll_window();  // a longer poll would have found it
  return ring_ready;
}

void Queue::Impl::grow_poll_window() {
  const std::int64_t max = std::chrono::duration_cast<std::chrono::nanoseconds>(config.poll_max).count();
  poll_ns = std::min(max, poll_ns == 0 ? kPollStartNs : poll_ns * 2);
}

void Queue::Impl::adapt_poll_window(std::int64_t slept_ns) {
  const std::int64_t max = std::chrono::duration_cast<std::chrono::nanoseconds>(config.poll_max).count();
  if (slept_ns <= max) {
    grow_poll_window();
  } else {
    poll_ns /= 2;
    if (poll_ns < kPollStartNs) poll_ns = 0;
  }
}

}  // namespace pvback::blkback
