// Queue: one blkif ring served on one io_uring. See queue.hpp for the contract.
//
// Per wake-up (event-channel event, completions freeing resources):
//   1. every unconsumed request is copied out of the ring once and converted to native; the
//      header is validated on the copy;
//   2. the segment descriptors of all indirect requests are grant-copied into the slots' own
//      arrays with one batched grant copy (a single copy, no mapping to keep), then validated;
//   3. the segment path (segments.hpp: persistent cache and batch maps, or bounce pages and one
//      batched grant copy) makes every data segment of the batch reachable;
//   4. the batch's reads, writes, flushes and discards go to the storage engine's channel in ring
//      order; it queues them on the queue's io_uring (storage::Loop), and they start together
//      with the wait (io_uring_submit_and_wait);
//   5. completions reaped together are answered together (reads the segment path holds in its own
//      pages: one batched copy to the guest first), then one push_responses_and_check_notify and at
//      most one notify.
// Barriers: nothing submitted after a barrier starts before the barrier completes, and the barrier
// starts only when everything submitted before it completed (write phase, then fdatasync).
#include "blkback/queue.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <system_error>

#include "base/log.hpp"
#include "base/stop_signal.hpp"
#include "base/unique_fd.hpp"
#include "blkback/recovery.hpp"
#include "blkback/request.hpp"
#include "blkback/segments.hpp"
#include "blkback/slot.hpp"
#include "ring/blkif.hpp"
#include "storage/loop.hpp"

namespace pvback::blkback {
namespace {

namespace native = blkif::native;
constexpr bool kNativeIs32 = std::is_same_v<blkif::native::Request, blkif::x86_32::Request>;

// The queue's own completions; the storage engine's carry storage::Loop::kEngineTag.
constexpr std::uint64_t kTagEvent = 1;
constexpr std::uint64_t kTagStop = 2;
constexpr std::uint64_t kTagTimer = 3;
constexpr std::uint64_t kTagThrottle = 4;
// XSA-332's class: a guest can notify its event channel in a tight loop and keep the queue's
// thread busy. A wake-up that finds no new request is spurious. After kSpuriousGrace of them in a
// row (a well-behaved frontend, which notifies only with new requests, makes at most one now and
// then) the event channel stays masked for a while before it is unmasked again: 1 ms more per
// further spurious wake-up, up to kMaxThrottleMs. A storming guest then costs about
// 1000 / kMaxThrottleMs wake-ups a second; any wake-up that finds requests ends the throttling.
constexpr std::uint32_t kSpuriousGrace = 16;
constexpr std::uint32_t kMaxThrottleMs = 100;
constexpr std::int64_t kPurgeIntervalNs = 100'000'000;  // persistent-grant expiry check, at most
constexpr std::uint32_t kMaxIov = IOV_MAX;
constexpr std::uint32_t kSegsPerPage = blkif::kSegmentsPerIndirectPage;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

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
  std::expected<bool, int> final_check() { return is32 ? ring32.final_check_for_requests() : ring64.final_check_for_requests(); }
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
  void arm_polls();
  void arm_timer();
  void handle_event();
  void unmask_events();
  void throttle_events();
  std::uint32_t process_ring();
  void take_one();
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
  void route(std::uint64_t tag, int res);
  void completed(std::uint32_t tag, int res) override { handle_completion(tag, res); }
  void handle_completion(std::uint32_t idx, int res);
  void complete(std::uint32_t idx, std::int16_t status);
  void finish_copybacks();
  void respond(std::uint32_t idx);
  void flush_responses();
  void fatal(int error, const char* reason);
  void maybe_purge(std::int64_t now);
  void drain_in_flight();
  void fail(Slot& s, std::int16_t status, const char* why) override;

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
  // Event storms (kSpuriousGrace): ports read from the channel and still masked.
  std::vector<EvtchnPort> masked_ports;
  std::uint32_t spurious_streak = 0;
  bool throttle_armed = false;
  __kernel_timespec throttle_ts{};
  bool stopping = false;
  bool fatal_seen = false;
  bool backlog = false;       // requests left in the ring for lack of slots/bounce pages
  std::int64_t last_purge = 0;
};

// ---------------------------------------------------------------------------------------------
// Set-up and tear-down

int Queue::Impl::init(const grant::Platform& platform) {
  try {
    mapper = platform.open_mapper();
    channels = platform.open_event_channels();
  } catch (const std::system_error& e) {
    PVBACK_LOG(Error, "%s: cannot open grant/event channel handles: %s", name, e.what());
    return e.code().value() != 0 ? e.code().value() : EIO;
  } catch (const std::exception& e) {
    PVBACK_LOG(Error, "%s: cannot open grant/event channel handles: %s", name, e.what());
    return EIO;
  }
  if (!mapper || !channels) return EIO;

  const std::size_t pages = config.ring_refs.size();
  if (pages == 0 || !std::has_single_bit(pages) || pages > 256) {
    PVBACK_LOG(Error, "%s: bad number of ring pages %zu", name, pages);
    return EINVAL;
  }
  if (config.max_indirect_segments > blkif::kMaxIndirectSegments) {
    PVBACK_LOG(Error, "%s: max_indirect_segments %u above the protocol limit %u", name, config.max_indirect_segments,
               blkif::kMaxIndirectSegments);
    return EINVAL;
  }
  auto ring_map = mapper->map(config.frontend_domid, config.ring_refs, Access::ReadWrite);
  if (!ring_map) {
    PVBACK_LOG(Error, "%s: cannot map the ring (%zu pages) of domain %u: %s", name, pages, config.frontend_domid,
               std::strerror(ring_map.error()));
    return ring_map.error();
  }
  ring_mapping = std::move(*ring_map);
  is32 = config.abi == Abi::X86_32 || (config.abi == Abi::Native && kNativeIs32);
  // At rsp_prod, not 0: a frontend that stayed Connected across a backend restart keeps its
  // indices, and requests it published that the old process never answered are served now.
  if (is32) {
    auto r = blkif::x86_32::BackRing::attach_at_rsp_prod(ring_mapping.data(), pages);
    if (!r) return r.error();
    ring32 = *r;
    ring_size = ring32.size();
  } else {
    auto r = blkif::x86_64::BackRing::attach_at_rsp_prod(ring_mapping.data(), pages);
    if (!r) return r.error();
    ring64 = *r;
    ring_size = ring64.size();
  }
  if (int e = open_recovery()) return e;
  // Patient only when taking over a ring a predecessor left live: a fresh connect (or a frontend
  // naming a port that will never be bindable) fails at once.
  auto local = grant::bind_interdomain_patiently(*channels, config.frontend_domid, config.remote_port,
                                                recovered ? config.bind_patience : std::chrono::milliseconds{0},
                                                name);
  if (!local) {
    PVBACK_LOG(Error, "%s: cannot bind event channel %u of domain %u: %s", name, config.remote_port,
               config.frontend_domid, std::strerror(local.error()));
    return local.error();
  }
  port = grant::BoundPort(*channels, *local);

  if (int e = stop.open()) return e;
  const unsigned entries = std::min(4096u, std::bit_ceil(ring_size * 2u + 8u));
  if (int err = loop.init(entries); err != 0) {
    PVBACK_LOG(Error, "%s: io_uring_queue_init(%u): %s", name, entries, std::strerror(err));
    return err;
  }
  auto opened = engine.open_channel(loop);
  if (!opened) {
    PVBACK_LOG(Error, "%s: cannot open a channel to %s: %s", name, engine.describe().c_str(),
               std::strerror(opened.error()));
    return opened.error();
  }
  channel = std::move(*opened);

  // Slots and their per-segment arrays, for a full ring at the configured limits.
  max_segs = std::max<std::uint32_t>(blkif::kMaxSegmentsPerRequest, config.max_indirect_segments);
  const std::size_t total = std::size_t{ring_size} * max_segs;
  slots.resize(ring_size);
  seg_store.resize(total);
  iov_store.resize(total);
  free_slots.reserve(ring_size);
  std::vector<bool> kept(ring_size, false);  // slots a predecessor's requests and answers still hold
  if (recovered) {
    for (const auto& r : recovered->reexecute) kept[r.slot] = true;
    for (const auto& a : recovered->reanswer) kept[a.slot] = true;
  }
  for (std::uint32_t i = 0; i < ring_size; ++i) {
    Slot& s = slots[i];
    s.segs = &seg_store[std::size_t{i} * max_segs];
    s.iov = &iov_store[std::size_t{i} * max_segs];
    if (!kept[ring_size - 1 - i]) free_slots.push_back(ring_size - 1 - i);
  }
  batch.reserve(ring_size);
  pending.resize(ring_size);
  unpushed.reserve(ring_size);
  copyback.reserve(ring_size);
  ind_segs.resize(std::size_t{ring_size} * blkif::kMaxIndirectPagesPerRequest);
  ind_owner.resize(ind_segs.size());

  // Once persistent grants are negotiated, the cache of mapped grants is the data path (its
  // overflow mapped per batch), whatever data_path says; grant copy serves frontends without.
  SegmentPathConfig sc;
  sc.way = config.persistent_grants           ? SegmentPathConfig::Way::Persistent
           : config.data_path == DataPath::Copy ? SegmentPathConfig::Way::Copy
                                                : SegmentPathConfig::Way::Map;
  sc.name = name;
  sc.frontend_domid = config.frontend_domid;
  sc.ring_size = ring_size;
  sc.max_segs = max_segs;
  sc.max_persistent_grants = config.max_persistent_grants;
  auto path = SegmentPath::create(sc, *mapper, stats, *this);
  if (!path) return path.error();
  segments = std::move(*path);
  const auto expiry = std::max(std::chrono::milliseconds(100), config.persistent_idle_expiry / 2);
  timer_ts.tv_sec = expiry.count() / 1000;
  timer_ts.tv_nsec = (expiry.count() % 1000) * 1'000'000;
  last_purge = now_ns();
  return 0;
}

// The ring is attached at rsp_prod. With a record of this very ring left by a predecessor (a
// crash, a kill, an upgrade), it is re-attached at the record's indices and run() first answers
// what the predecessor answered invisibly and re-executes what it never answered.
int Queue::Impl::open_recovery() {
  if (config.recovery_path.empty()) return 0;
  auto opened = RecoveryLog::open(config.recovery_path, ring_size);
  if (!opened) {
    PVBACK_LOG(Warning, "%s: cannot open the recovery record %s: %s; a crash of this process may lose or repeat "
               "answers", name, config.recovery_path.c_str(), std::strerror(opened.error()));
    return 0;
  }
  log = std::move(*opened);
  const RecoveryKey key{config.frontend_domid, config.remote_port, ring_size, static_cast<std::uint32_t>(config.abi),
                        config.ring_refs};
  auto* base = static_cast<std::byte*>(ring_mapping.data());
  if (config.resume) {
    const ring::RingIdx shared_rsp =
        ring::detail::shared_index(base, ring::detail::kRspProd).load(std::memory_order_acquire);
    const ring::RingIdx shared_req =
        ring::detail::shared_index(base, ring::detail::kReqProd).load(std::memory_order_acquire);
    auto r = recovery::recover(log.header(), log.entries(), key, shared_req, shared_rsp);
    if (r) {
      const std::size_t pages = config.ring_refs.size();
      if (is32) {
        auto ring = blkif::x86_32::BackRing::attach_resume(base, pages, r->req_cons, r->rsp_prod);
        if (!ring) return ring.error();
        ring32 = *ring;
      } else {
        auto ring = blkif::x86_64::BackRing::attach_resume(base, pages, r->req_cons, r->rsp_prod);
        if (!ring) return ring.error();
        ring64 = *ring;
      }
      log.pushed(r->rsp_prod);
      for (std::uint32_t slot : r->forget) log.forget(slot);
      PVBACK_LOG(Notice, "%s: resuming from the recovery record: %zu request(s) to execute again, %zu answer(s) to "
                 "publish again, requests from index %u", name, r->reexecute.size(), r->reanswer.size(), r->req_cons);
      recovered = std::move(*r);
      // The predecessor may have been killed between publishing answers and notifying: a
      // frontend that reads answers only on an event (Linux's) would wait for ever.
      notify_on_start = true;
      return 0;
    }
    // A record that is not live (new, or retired by an orderly end) is the normal case.
    if (std::atomic_ref<const std::uint32_t>(log.header().valid).load(std::memory_order_acquire) == 1)
      PVBACK_LOG(Warning, "%s: not resuming from the recovery record: %s; serving from the ring's rsp_prod", name,
                 r.error());
  }
  log.reset(key, rsp_prod_pvt());  // where the ring was attached (rsp_prod is read once)
  return 0;
}

// Before anything new is taken: the predecessor's answers that never became visible, then its
// requests that were never answered, through the usual path (validated again, from the copy), as
// many at a time as the bounce pool allows. Their slots stay reserved until then.
std::uint32_t Queue::Impl::resume_recovered() {
  for (const auto& a : recovered->reanswer) {
    const ring::RingIdx at = rsp_prod_pvt();
    put_response(a.rsp);
    log.answered(a.slot, at, a.rsp.status);
    ++slots_used;
    unpushed.push_back(a.slot);
    responses_pending = true;
  }
  recovered->reanswer.clear();
  batch.clear();
  auto& todo = recovered->reexecute;
  std::size_t taken = 0, reserved = 0;
  while (taken < todo.size() && segments->room_for_one_more(reserved)) {
    take_recovered(todo[taken].slot, todo[taken].req);
    reserved += segments->pages_taken(slots[batch.back()]);
    ++taken;
  }
  todo.erase(todo.begin(), todo.begin() + static_cast<std::ptrdiff_t>(taken));
  if (todo.empty()) recovered.reset();
  if (!batch.empty()) prepare_batch();
  return static_cast<std::uint32_t>(taken);
}

void Queue::Impl::drain_in_flight() {
  // Wait for every submitted I/O so no kernel write lands in memory we are about to unmap.
  while (submitted > 0 && loop.initialised() && channel) {
    std::uint64_t tag = 0;
    int res = 0;
    const int r = loop.wait_one(tag, res);
    if (r == -EINTR) continue;
    if (r < 0) break;
    route(tag, res);
    finish_copybacks();
    loop.submit();  // a barrier's fdatasync or a short transfer's remainder
  }
}

// One completion of the loop: the engine's (a request's I/O), or one of the queue's polls and
// timers.
void Queue::Impl::route(std::uint64_t tag, int res) {
  if ((tag & storage::Loop::kEngineTag) != 0) {
    channel->on_completion(tag, res, *this);
  } else if (tag == kTagEvent) {
    event_armed = false;
  } else if (tag == kTagStop) {
    stop_armed = false;
  } else if (tag == kTagTimer) {
    timer_armed = false;
  } else if (tag == kTagThrottle) {
    throttle_armed = false;
  }
}

Queue::Impl::~Impl() {
  stopping = true;
  drain_in_flight();
  // Requests still queued but never submitted (run() not running): answer nothing, release all.
  if (segments)
    for (std::uint32_t i = 0; i < slots.size(); ++i) segments->release(i, slots[i]);
  // Everything taken was answered visibly: a successor starts at rsp_prod. Otherwise the record
  // stays live for one.
  if (slots_used == 0 && !recovered) log.retire();
  channel.reset();
  loop.close();
  segments.reset();
  port.reset();
  ring_mapping.reset();
}

// ---------------------------------------------------------------------------------------------
// Main loop

void Queue::Impl::fatal(int error, const char* reason) {
  if (fatal_seen) return;
  fatal_seen = true;
  PVBACK_LOG(Error, "%s: %s; disconnecting", name, reason);
  if (on_fatal) on_fatal(error, reason);
}

void Queue::Impl::arm_polls() {
  if (!event_armed && !stopping && !fatal_seen) {
    if (io_uring_sqe* sqe = loop.sqe()) {
      io_uring_prep_poll_add(sqe, channels->fd(), POLLIN);
      io_uring_sqe_set_data64(sqe, kTagEvent);
      event_armed = true;
    }
  }
  if (!stop_armed && !stopping) {
    if (io_uring_sqe* sqe = loop.sqe()) {
      io_uring_prep_poll_add(sqe, stop.fd(), POLLIN);
      io_uring_sqe_set_data64(sqe, kTagStop);
      stop_armed = true;
    }
  }
}

void Queue::Impl::arm_timer() {
  if (timer_armed || !segments->keeps_idle_state() || stopping || fatal_seen) return;
  if (io_uring_sqe* sqe = loop.sqe()) {
    io_uring_prep_timeout(sqe, &timer_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, kTagTimer);
    timer_armed = true;
  }
}

void Queue::Impl::maybe_purge(std::int64_t now) {
  if (!segments->keeps_idle_state() || now - last_purge < kPurgeIntervalNs) return;
  last_purge = now;
  segments->expire(now - std::chrono::duration_cast<std::chrono::nanoseconds>(config.persistent_idle_expiry).count());
}

void Queue::Impl::handle_event() {
  stats.events_received.add();
  for (;;) {
    auto p = channels->pending();
    if (!p) break;
    masked_ports.push_back(*p);
  }
  if (spurious_streak < kSpuriousGrace) unmask_events(); else throttle_events();
}

void Queue::Impl::unmask_events() {
  for (EvtchnPort p : masked_ports) channels->unmask(p);
  masked_ports.clear();
}

// Leaves the ports masked (the guest's notifications latch meanwhile) and unmasks them when the
// throttle timeout fires.
void Queue::Impl::throttle_events() {
  if (throttle_armed || masked_ports.empty()) return;
  const std::uint32_t ms = std::min(spurious_streak - kSpuriousGrace + 1, kMaxThrottleMs);
  throttle_ts.tv_sec = 0;
  throttle_ts.tv_nsec = static_cast<long long>(ms) * 1'000'000;
  if (io_uring_sqe* sqe = loop.sqe()) {
    io_uring_prep_timeout(sqe, &throttle_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, kTagThrottle);
    throttle_armed = true;
    stats.events_throttled.add();
    if (spurious_streak == kSpuriousGrace)
      PVBACK_LOG_RATELIMITED(Warning, "%s: the frontend notifies without requests (%u times in a row): its event "
                             "channel is throttled", name, spurious_streak);
  } else {
    unmask_events();
  }
}

void Queue::Impl::run() {
  if (stop.requested()) stopping = true;
  arm_polls();
  if (notify_on_start && port.notify() == 0) stats.notifications_sent.add();  // harmless if spurious
  if (!stopping && !fatal_seen) process_ring();  // the frontend may have queued before we bound
  submit_pending();
  flush_responses();
  for (;;) {
    if ((stopping || fatal_seen) && slots_used == 0) break;
    arm_polls();
    arm_timer();
    int r = loop.submit_and_wait(1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
      PVBACK_LOG(Error, "%s: io_uring_submit_and_wait: %s", name, std::strerror(-r));
      fatal(-r, "io_uring failed");
      break;
    }
    bool event = false;
    bool progressed = false;
    loop.for_each_completion([&](std::uint64_t tag, int res) {
      route(tag, res);
      if ((tag & storage::Loop::kEngineTag) != 0) progressed = true;
      else if (tag == kTagEvent) event = true;
      else if (tag == kTagStop) stopping = true;
      else if (tag == kTagTimer) maybe_purge(now_ns());
      else if (tag == kTagThrottle) unmask_events();  // a notification latched meanwhile fires the poll at once
    });
    if (stop.requested()) stopping = true;
    finish_copybacks();
    if (event && !stopping && !fatal_seen) handle_event();
    if (!stopping && !fatal_seen) {
      arm_polls();  // re-armed after unmask: an event from now on fires it again
      if (event) {
        if (process_ring() != 0 || backlog) {
          spurious_streak = 0;
          unmask_events();  // throttled, but there was work after all
        } else if (++spurious_streak > kSpuriousGrace) {
          stats.spurious_events.add();
        }
      } else if (backlog && progressed) {
        process_ring();
      }
    }
    submit_pending();
    flush_responses();
    // Slots are freed once their answers are visible: requests left in the ring for want of one
    // are taken now rather than at the next event.
    if (backlog && !free_slots.empty() && !stopping && !fatal_seen) {
      process_ring();
      submit_pending();
      flush_responses();
    }
  }
  flush_responses();
}

void Queue::Impl::flush_responses() {
  if (!responses_pending) return;
  responses_pending = false;
  const bool notify = push_responses();
  // Visible now: the record forgets them and their slots are free again.
  log.pushed(rsp_prod_pvt());
  for (std::uint32_t idx : unpushed) {
    log.forget(idx);
    free_slots.push_back(idx);
  }
  slots_used -= static_cast<std::uint32_t>(unpushed.size());
  unpushed.clear();
  if (notify) {
    if (int err = port.notify(); err != 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: notify failed: %s", name, std::strerror(err));
    } else {
      stats.notifications_sent.add();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Taking requests

// Returns the number of requests taken (from the ring or from a predecessor's record).
std::uint32_t Queue::Impl::process_ring() {
  std::uint32_t taken = 0;
  if (recovered) {
    taken = resume_recovered();
    if (recovered) {  // the rest once bounce pages are free again
      backlog = true;
      return taken;
    }
  }
  batch.clear();
  bool stalled = false;
  // The segment path hands out its pages (bounce pages) after the whole batch is taken, so the
  // take loop reserves them as it goes; a request is taken only while a largest one would fit.
  std::size_t reserved = 0;
  while (!stalled && !fatal_seen) {
    auto n = unconsumed();
    if (!n) {
      fatal(EPROTO, "ring overflow: the frontend's req_prod is impossible");
      break;
    }
    if (*n == 0) {
      auto more = final_check();
      if (!more) {
        fatal(EPROTO, "ring overflow: the frontend's req_prod is impossible");
        break;
      }
      if (!*more) break;
      continue;
    }
    for (ring::RingIdx i = 0; i < *n; ++i) {
      if (free_slots.empty() || !segments->room_for_one_more(reserved)) {
        stalled = true;
        break;
      }
      take_one();
      reserved += segments->pages_taken(slots[batch.back()]);
    }
  }
  backlog = stalled;
  log.consumed(req_cons());
  if (batch.empty()) return taken;
  taken += static_cast<std::uint32_t>(batch.size());
  prepare_batch();
  return taken;
}

// Steps 2-3 for the requests taken into `batch`, then queues them for submission.
void Queue::Impl::prepare_batch() {
  stats.batches.add();
  maybe_purge(now_ns());
  copy_indirect_descriptors();
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (s.status == blkif::kRspOkay) validate_segments(s);
  }
  segments->prepare(batch, slots);
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (s.status != blkif::kRspOkay) {
      respond(idx);
      continue;
    }
    if (s.has_data()) segments->build_iov(idx, s);
    pending[(pending_head + pending_count) % ring_size] = idx;
    ++pending_count;
  }
  batch.clear();
}

void Queue::Impl::take_one() {
  const std::uint32_t idx = free_slots.back();
  free_slots.pop_back();
  const ring::RingIdx at = req_cons();
  native::Request req = take_request();  // the one and only read of the shared slot
  log.took(idx, at, req);
  take_recovered(idx, req);
}

// Starts serving `req` in slot `idx` (taken from the ring now, or by a predecessor).
void Queue::Impl::take_recovered(std::uint32_t idx, const native::Request& req) {
  ++slots_used;
  stats.in_flight.add();
  Slot& s = slots[idx];
  s.req = req;
  s.kind = Kind::Other;
  s.indirect = false;
  s.phase = Phase::Idle;
  s.status = blkif::kRspOkay;
  s.nsegs = 0;
  s.iov_count = s.iov_first = 0;
  s.offset = s.total_bytes = s.done_bytes = s.sectors = 0;
  parse_header(s);
  batch.push_back(idx);
}

void Queue::Impl::fail(Slot& s, std::int16_t status, const char* why) {
  if (s.status != blkif::kRspOkay) return;
  s.status = status;
  if (status == blkif::kRspEopnotsupp) stats.unsupported.add(); else stats.bad_requests.add();
  PVBACK_LOG_RATELIMITED(Warning, "%s: request id %llu op %u: %s", name, static_cast<unsigned long long>(s.req.id()),
                         s.req.operation(), why);
}

request::Limits Queue::Impl::limits() const {
  request::Limits l;
  const storage::Capabilities& caps = engine.capabilities();
  l.sectors = engine.sectors();  // read each time: the storage may grow while connected
  l.logical_block_size = caps.logical_block_size;
  l.max_indirect_segments = config.max_indirect_segments;
  l.read_only = caps.read_only;
  l.flush = config.flush_enabled;
  l.barrier = config.barrier_enabled;
  l.discard = config.discard_enabled;
  l.discard_supported = caps.discard;
  l.secure_discard = caps.secure_discard;
  return l;
}

void Queue::Impl::parse_header(Slot& s) {
  const request::Header h = request::parse_header(s.req, limits());
  s.kind = h.kind;
  s.indirect = h.indirect;
  if (h.status != blkif::kRspOkay) return fail(s, h.status, h.why);
  s.nsegs = h.nsegs;
  if (s.kind == Kind::Discard) {
    s.offset = h.sector << blkif::kSectorShift;
    s.sectors = h.discard_sectors;
  }
  // A direct request's descriptors are in the request; an indirect one's are copied in
  // copy_indirect_descriptors().
  if (!s.indirect)
    for (std::uint32_t i = 0; i < s.nsegs; ++i) s.segs[i] = s.req.rw.seg[i];
}

void Queue::Impl::copy_indirect_descriptors() {
  std::size_t n = 0;
  for (std::uint32_t idx : batch) {
    Slot& s = slots[idx];
    if (!s.indirect || s.status != blkif::kRspOkay) continue;
    const std::uint32_t pages = (s.nsegs + kSegsPerPage - 1) / kSegsPerPage;
    for (std::uint32_t p = 0; p < pages; ++p) {
      const std::uint32_t count = std::min(kSegsPerPage, s.nsegs - p * kSegsPerPage);
      grant::CopySegment& c = ind_segs[n];
      c = {};
      c.source.foreign.ref = s.req.indirect.indirect_grefs[p];
      c.source.foreign.domid = config.frontend_domid;
      c.source.foreign.offset = 0;
      c.dest.virt = s.segs + std::size_t{p} * kSegsPerPage;
      c.len = static_cast<std::uint16_t>(count * sizeof(blkif::Segment));
      c.flags = GNTCOPY_source_gref;
      ind_owner[n] = idx;
      ++n;
    }
  }
  if (n == 0) return;
  const int err = mapper->copy({ind_segs.data(), n});
  stats.grants_copied.add(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (err != 0 || ind_segs[i].status != GNTST_okay)
      fail(slots[ind_owner[i]], blkif::kRspError, "cannot read the indirect descriptor page");
  }
}

void Queue::Impl::validate_segments(Slot& s) {
  if (!request::moves_data(s.kind)) return;
  request::Header h;
  h.kind = s.kind;
  h.indirect = s.indirect;
  h.nsegs = s.nsegs;
  h.sector = s.indirect ? s.req.indirect.sector_number : s.req.rw.sector_number;
  const request::Extent e = request::check_segments(h, {s.segs, s.nsegs}, limits());
  if (e.status != blkif::kRspOkay) return fail(s, e.status, e.why);
  s.sectors = e.sectors;
  s.total_bytes = e.sectors * blkif::kSectorSize;
  s.offset = e.offset;
}

// Reads finished together whose data the segment path still holds reach the guest together.
void Queue::Impl::finish_copybacks() {
  if (copyback.empty()) return;
  segments->copy_back(copyback, slots);
  for (std::uint32_t idx : copyback) respond(idx);
  copyback.clear();
}

// ---------------------------------------------------------------------------------------------
// Submission

void Queue::Impl::submit_pending() {
  while (pending_count != 0 && !barrier_active) {
    const std::uint32_t idx = pending[pending_head];
    Slot& s = slots[idx];
    if (s.kind == Kind::Barrier && submitted != 0) break;  // drain first
    pending_head = (pending_head + 1) % ring_size;
    --pending_count;
    if (!submit_slot(idx)) continue;
    if (s.kind == Kind::Barrier) barrier_active = true;
  }
}

// Starts a request's I/O; false if it was answered at once (an empty discard, or the channel
// refused it).
bool Queue::Impl::submit_slot(std::uint32_t idx) {
  Slot& s = slots[idx];
  switch (s.kind) {
    case Kind::Discard:
      return submit_discard(idx);
    case Kind::Flush:
      return submit_sync(idx);
    case Kind::Barrier:
      return s.nsegs == 0 ? submit_sync(idx) : submit_io(idx);
    case Kind::Read:
    case Kind::Write:
      return submit_io(idx);
    case Kind::Other:
      break;
  }
  respond(idx);
  return false;
}

// The channel refused the operation: answer the request with an error. Also reached when
// resubmitting the rest of a short transfer or the flush of a barrier, so undo what submission
// counted.
bool Queue::Impl::fail_submission(std::uint32_t idx, int error) {
  Slot& s = slots[idx];
  if (s.phase != Phase::Idle) --submitted;
  if (s.kind == Kind::Barrier) barrier_active = false;
  s.phase = Phase::Idle;
  if (error == EOPNOTSUPP) {
    fail(s, blkif::kRspEopnotsupp, "not supported by the storage");
  } else {
    s.status = blkif::kRspError;
    stats.io_errors.add();
    PVBACK_LOG_RATELIMITED(Warning, "%s: request id %llu: the storage refused it: %s", name,
                           static_cast<unsigned long long>(s.req.id()), std::strerror(error));
  }
  respond(idx);
  return false;
}

bool Queue::Impl::submit_io(std::uint32_t idx) {
  Slot& s = slots[idx];
  storage::Request rq;
  rq.op = s.kind == Kind::Read ? storage::Op::Read : storage::Op::Write;
  rq.offset = s.offset + s.done_bytes;
  rq.iov = s.iov + s.iov_first;
  rq.iovcnt = std::min(s.iov_count - s.iov_first, kMaxIov);
  for (std::uint32_t i = 0; i < rq.iovcnt; ++i) rq.length += rq.iov[i].iov_len;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  if (s.phase == Phase::Idle) ++submitted;
  s.phase = Phase::Io;
  return true;
}

bool Queue::Impl::submit_sync(std::uint32_t idx) {
  Slot& s = slots[idx];
  storage::Request rq;
  rq.op = storage::Op::Flush;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  if (s.phase == Phase::Idle) ++submitted;
  s.phase = Phase::Sync;
  return true;
}

// Asynchronous like any other operation: a discard of the whole disk keeps neither this queue's
// thread nor its disconnect waiting.
bool Queue::Impl::submit_discard(std::uint32_t idx) {
  Slot& s = slots[idx];
  if (s.sectors == 0) {
    respond(idx);
    return false;
  }
  storage::Request rq;
  rq.op = (s.req.discard.flag & blkif::kDiscardSecure) != 0 ? storage::Op::SecureDiscard : storage::Op::Discard;
  rq.offset = s.offset;
  rq.length = s.sectors << blkif::kSectorShift;
  rq.tag = idx;
  if (int e = channel->submit(rq)) return fail_submission(idx, e);
  ++submitted;
  s.phase = Phase::Discard;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Completion

void Queue::Impl::handle_completion(std::uint32_t idx, int res) {
  Slot& s = slots[idx];
  if (s.phase == Phase::Io) {
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: %s at byte %llu failed: %s", name, s.kind == Kind::Read ? "read" : "write",
                             static_cast<unsigned long long>(s.offset), std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    s.done_bytes += static_cast<std::uint64_t>(res);
    if (s.done_bytes < s.total_bytes) {
      if (res == 0) {
        PVBACK_LOG_RATELIMITED(Warning, "%s: short %s at byte %llu", name, s.kind == Kind::Read ? "read" : "write",
                               static_cast<unsigned long long>(s.offset + s.done_bytes));
        stats.io_errors.add();
        return complete(idx, blkif::kRspError);
      }
      // Short transfer (or more than IOV_MAX iovecs): advance the iovecs in place, resubmit.
      std::uint64_t left = static_cast<std::uint64_t>(res);
      while (left != 0 && left >= s.iov[s.iov_first].iov_len) left -= s.iov[s.iov_first++].iov_len;
      if (left != 0) {
        s.iov[s.iov_first].iov_base = static_cast<std::byte*>(s.iov[s.iov_first].iov_base) + left;
        s.iov[s.iov_first].iov_len -= left;
      }
      submit_io(idx);
      return;
    }
    if (s.kind == Kind::Barrier) {
      submit_sync(idx);
      return;
    }
    return complete(idx, blkif::kRspOkay);
  }
  if (s.phase == Phase::Sync) {
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: fdatasync failed: %s", name, std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    return complete(idx, blkif::kRspOkay);
  }
  if (s.phase == Phase::Discard) {
    if (res == -EOPNOTSUPP) {
      fail(s, blkif::kRspEopnotsupp, "discard not supported by the storage");
      return complete(idx, blkif::kRspEopnotsupp);
    }
    if (res < 0) {
      PVBACK_LOG_RATELIMITED(Warning, "%s: discard at byte %llu failed: %s", name,
                             static_cast<unsigned long long>(s.offset), std::strerror(-res));
      stats.io_errors.add();
      return complete(idx, blkif::kRspError);
    }
    return complete(idx, blkif::kRspOkay);
  }
}

void Queue::Impl::complete(std::uint32_t idx, std::int16_t status) {
  Slot& s = slots[idx];
  --submitted;
  if (s.kind == Kind::Barrier) barrier_active = false;
  s.phase = Phase::Idle;
  if (status != blkif::kRspOkay) s.status = status;
  if (s.kind == Kind::Read && s.status == blkif::kRspOkay && !segments->read_done_in_place()) {
    copyback.push_back(idx);
    return;
  }
  respond(idx);
}

void Queue::Impl::respond(std::uint32_t idx) {
  Slot& s = slots[idx];
  segments->release(idx, s);
  if (s.status == blkif::kRspOkay) {
    switch (s.kind) {
      case Kind::Read:
        stats.reads.add();
        stats.sectors_read.add(s.sectors);
        break;
      case Kind::Write:
        stats.writes.add();
        stats.sectors_written.add(s.sectors);
        break;
      case Kind::Barrier:
        stats.barriers.add();
        stats.sectors_written.add(s.sectors);
        break;
      case Kind::Flush:
        stats.flushes.add();
        break;
      case Kind::Discard:
        stats.discards.add();
        stats.sectors_discarded.add(s.sectors);
        break;
      case Kind::Other:
        break;
    }
    if (s.indirect) stats.indirect.add();
  }
  const ring::RingIdx at = rsp_prod_pvt();
  put_response(blkif::make_response(s.req, s.status));
  log.answered(idx, at, s.status);
  responses_pending = true;
  s.kind = Kind::Other;
  s.nsegs = 0;
  unpushed.push_back(idx);  // freed by flush_responses()
  stats.in_flight.sub();
}

}  // namespace pvback::blkback

namespace pvback::blkback {

std::expected<std::unique_ptr<Queue>, int> Queue::create(const grant::Platform& platform, storage::Engine& engine,
                                                         QueueConfig config, QueueStats& stats, FatalHandler on_fatal) {
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(engine, std::move(config), stats, std::move(on_fatal));
    if (int err = impl->init(platform); err != 0) return std::unexpected(err);
  } catch (const std::bad_alloc&) {
    return std::unexpected(ENOMEM);
  }
  return std::unique_ptr<Queue>(new Queue(std::move(impl)));
}

Queue::Queue(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Queue::~Queue() = default;

void Queue::run() { impl_->run(); }

void Queue::stop() {
  impl_->stop.request();
}

const QueueConfig& Queue::config() const { return impl_->config; }

}  // namespace pvback::blkback
