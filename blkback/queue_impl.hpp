// Queue::Impl, shared by the two halves of a queue: queue.cpp (set-up, the loop, events, the
// crash-recovery record) and queue_requests.cpp (one request's path from the ring to its answer).
// Private to blkback.
#pragma once
#include <poll.h>
#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "base/stop_signal.hpp"
#include "base/unique_fd.hpp"
#include "blkback/queue.hpp"
#include "blkback/recovery.hpp"
#include "blkback/request.hpp"
#include "blkback/segments.hpp"
#include "blkback/slot.hpp"
#include "grant/spurious_wakeups.hpp"
#include "ring/blkif.hpp"
#include "storage/loop.hpp"

namespace pvback::blkback {

namespace native = blkif::native;

inline constexpr bool kNativeIs32 = std::is_same_v<blkif::native::Request, blkif::x86_32::Request>;

// The queue's own completions; the storage engine's carry storage::Loop::kEngineTag.
inline constexpr std::uint64_t kTagEvent = 1;
inline constexpr std::uint64_t kTagStop = 2;
inline constexpr std::uint64_t kTagTimer = 3;
inline constexpr std::uint64_t kTagThrottle = 4;
inline constexpr std::uint64_t kTagControl = 5;  // Queue::pause / resume asked
inline constexpr std::int64_t kPurgeIntervalNs = 100'000'000;  // persistent-grant expiry check, at most
inline constexpr std::uint32_t kMaxIov = IOV_MAX;
inline constexpr std::uint32_t kSegsPerPage = blkif::kSegmentsPerIndirectPage;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// What another thread asks of the queue's (Queue::pause, resume): the latest request, and an
// eventfd the queue's io_uring polls.
struct PauseRequest {
  std::mutex mutex;
  UniqueFd fd;
  bool pending = false;
  bool pause = false;
  std::function<void(const Queue::PauseReport&)> paused;
  std::function<void(std::uint64_t)> resumed;
  bool tune_pending = false;  // Queue::tune's latest, not taken yet
  LiveTuning tuning;
};

struct Queue::Impl final : storage::CompletionSink, RequestFailer {
  Impl(storage::Engine& e, QueueConfig c, QueueStats& st, FatalHandler f)
      : engine(e), config(std::move(c)), stats(st), on_fatal(std::move(f)), name(config.name.c_str()) {}
  ~Impl();

  // ---- set-up ----
  int init(const grant::Platform& platform);

  // ---- ring access (ABI dispatch) ----
  std::expected<ring::RingIdx, int> unconsumed() const {
    return is32 ? ring32.unconsumed_requests() : ring64.unconsumed_requests();
  }
  // Asks the frontend to notify the next request (req_event just past req_cons), then looks again.
  std::expected<bool, int> final_check() {
    notifications_armed = true;
    return is32 ? ring32.final_check_for_requests() : ring64.final_check_for_requests();
  }
  native::Request take_request() {
    if (is32) return blkif::to_native(ring32.next_request());
    return blkif::to_native(ring64.next_request());
  }
  void put_response(const native::Response& r) {
    if (is32) ring32.put_response(blkif::to_x86_32(r)); else ring64.put_response(blkif::to_x86_64(r));
  }
  ring::RingIdx req_cons() const { return is32 ? ring32.req_cons() : ring64.req_cons(); }
  ring::RingIdx rsp_prod_pvt() const { return is32 ? ring32.rsp_prod_pvt() : ring64.rsp_prod_pvt(); }
  bool push_responses() { return is32 ? ring32.push_responses_and_check_notify() : ring64.push_responses_and_check_notify(); }

  // ---- main loop pieces ----
  void run();
  // Before sleeping: true when the ring has requests (found while polling or by the final check
  // that asks the frontend for a notification again); false: sleep.
  [[nodiscard]] bool poll_before_sleeping();
  void adapt_poll_window(std::int64_t slept_ns);
  void grow_poll_window();
  bool polling() const { return config.poll_max.count() > 0; }
  void arm_polls();
  void arm_timer();
  void handle_event();
  void unmask_events();
  void throttle_events();
  std::uint32_t process_ring();
  void take_one();
  void count_waiting(ring::RingIdx waiting);
  void take_recovered(std::uint32_t idx, const native::Request& req);
  void prepare_batch();
  int open_recovery();
  std::uint32_t resume_recovered();
  void parse_header(Slot& s);
  void copy_indirect_descriptors();
  void validate_segments(Slot& s);
  request::Limits limits() const;
  void submit_pending();
  bool submit_slot(std::uint32_t idx);
  bool submit_io(std::uint32_t idx);
  bool submit_sync(std::uint32_t idx);
  bool submit_discard(std::uint32_t idx);
  bool fail_submission(std::uint32_t idx, int error);
  [[nodiscard]] bool storage_lost();
  void route(std::uint64_t tag, int res);
  void completed(std::uint32_t tag, int res) override {
    if (tag == pause_flush_tag()) pause_flushed(res); else handle_completion(tag, res);
  }
  void handle_completion(std::uint32_t idx, int res);
  void complete(std::uint32_t idx, std::int16_t status);
  void finish_copybacks();
  void respond(std::uint32_t idx);
  void count_for_kernel(const Slot& s);
  void flush_responses();
  void fatal(int error, const char* reason);
  void ring_overflow();  // fatal(EPROTO), naming the ring's indices
  void maybe_purge(std::int64_t now);
  void drain_in_flight();
  void fail(Slot& s, std::int16_t status, const char* why) override;

  // ---- the operator's pause (queue_pause.cpp) ----
  void request_tuning(const LiveTuning& tuning);
  void request_pause(bool pause, std::function<void(const Queue::PauseReport&)> paused,
                     std::function<void(std::uint64_t)> resumed);
  void arm_control();
  bool take_control();  // after kTagControl fired: true if the queue resumed
  void apply_tuning(const LiveTuning& tuning);
  void set_timer_period();  // the purge timer's, from config.persistent_idle_expiry
  void advance_pause();  // after every round: a drained pause flushes
  void pause_flushed(int res);
  void report_pause(int error);
  // The storage flush of a pause is tagged past the slots (an engine may index its per-tag state).
  std::uint32_t pause_flush_tag() const { return ring_size; }

  storage::Engine& engine;
  QueueConfig config;
  QueueStats& stats;
  FatalHandler on_fatal;
  const char* name;

  // Declared first so they are destroyed last: every Mapping/BoundPort below refers to them.
  std::unique_ptr<grant::GrantMapper> mapper;
  std::unique_ptr<grant::EventChannels> channels;
  grant::Mapping ring_mapping;
  grant::BoundPort port;
  bool is32 = false;
  blkif::x86_32::BackRing ring32;
  blkif::x86_64::BackRing ring64;
  ring::RingIdx ring_size = 0;
  StopSignal stop;
  storage::Loop loop;
  std::unique_ptr<storage::Channel> channel;  // on `loop`; destroyed first

  std::uint32_t max_segs = 0;  // per request: max(11, max_indirect_segments)
  std::vector<Slot> slots;
  std::vector<blkif::Segment> seg_store;
  std::vector<iovec> iov_store;
  std::vector<std::uint32_t> free_slots;
  std::uint32_t slots_used = 0;

  std::vector<std::uint32_t> batch;           // slots taken in this wake-up, ring order
  std::vector<std::uint32_t> pending;         // FIFO of slots ready to submit (ring buffer)
  std::uint32_t pending_head = 0, pending_count = 0;
  std::uint32_t submitted = 0;                // slots whose I/O is in the io_uring
  bool barrier_active = false;

  std::unique_ptr<SegmentPath> segments;      // how data segments reach memory (segments.hpp)
  std::vector<std::uint32_t> copyback;        // finished reads whose data is still to reach the guest

  // Indirect descriptors.
  std::vector<grant::CopySegment> ind_segs;
  std::vector<std::uint32_t> ind_owner;

  bool responses_pending = false;
  // Slots answered but not yet pushed: freed only once the frontend can see the answer, so that
  // the recovery record keeps each answer until then.
  std::vector<std::uint32_t> unpushed;
  RecoveryLog log;
  std::optional<recovery::Recovered> recovered;  // what a predecessor left, until run() resumes it
  bool notify_on_start = false;

  bool event_armed = false, stop_armed = false, timer_armed = false;
  __kernel_timespec timer_ts{};
  // Event storms (XSA-332, grant/spurious_wakeups.hpp): ports read from the channel and still masked.
  std::vector<EvtchnPort> masked_ports;
  grant::SpuriousWakeups wakeups;
  bool throttle_armed = false;
  __kernel_timespec throttle_ts{};
  bool stopping = false;
  bool fatal_seen = false;
  bool storage_lost_reported = false;
  bool backlog = false;       // requests left in the ring for lack of slots/bounce pages
  ring::RingIdx oo_counted_to = 0;  // requests before this ring index were counted in kernel_oo_req
  std::int64_t last_purge = 0;
  // Polling before sleeping (queue_poll.cpp): the current window, adapted between 0 and
  // config.poll_max as QEMU's event loop does.
  std::int64_t poll_ns = 0;
  // req_event asks for a notification of the next request: set by final_check, cleared as a
  // request is taken. The queue never sleeps with it clear (poll_before_sleeping), or a frontend
  // could push without notifying and wait for ever.
  bool notifications_armed = false;
  // Requests taken (by polling, or by the final check) since the last event: the notification
  // that follows may announce them, and is not counted as spurious.
  std::uint32_t taken_since_event = 0;
  unsigned unsubmitted = 0;  // started since the last io_uring_enter (submit_pending)

  // The operator's pause: nothing is taken from the ring while `paused`. Draining: waiting for
  // what was taken to be answered; Flushing: the storage flush after it.
  PauseRequest control;
  bool control_armed = false;
  bool paused = false;
  enum class PausePhase { None, Draining, Flushing } pause_phase = PausePhase::None;
  bool pause_flush_in_flight = false;
  std::int64_t pause_started_ns = 0, flush_started_ns = 0;
  std::uint64_t pause_drained = 0;
  std::function<void(const Queue::PauseReport&)> pause_done;
};

}  // namespace pvback::blkback
