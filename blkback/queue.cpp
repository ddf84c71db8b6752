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
//      order; it queues them on the queue's io_uring (storage::Loop), started config.submit_batch
//      at a time as they are queued, the rest with the wait (io_uring_submit_and_wait);
//   5. completions reaped together are answered together (reads the segment path holds in its own
//      pages: one batched copy to the guest first), then one push_responses_and_check_notify and at
//      most one notify.
// Before sleeping, a busy queue polls its ring and completions for a while with the frontend's
// notifications off (queue_poll.cpp).
// Barriers: nothing submitted after a barrier starts before the barrier completes, and the barrier
// starts only when everything submitted before it completed (write phase, then fdatasync).
#include "blkback/queue.hpp"

#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <system_error>

#include "base/log.hpp"
#include "blkback/queue_impl.hpp"

namespace pvback::blkback {

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
  // This handle binds the frontend's port and nothing else; restricted to its domain, a process
  // taken over through a bug cannot bind (and so signal or wait on) another guest's channels.
  if (int e = channels->restrict_to(config.frontend_domid))
    PVBACK_LOG(Warning, "%s: cannot restrict the event-channel handle to domain %u: %s", name, config.frontend_domid,
               std::strerror(e));

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
  oo_counted_to = req_cons();
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
  control.fd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!control.fd) return errno;
  paused = config.start_paused;
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
  set_timer_period();
  last_purge = now_ns();
  return 0;
}

void Queue::Impl::set_timer_period() {
  // At most 5 s, so that a shorter expiry the operator sets (Queue::tune) is in effect within 5 s
  // of the timer armed before it (the restricted ring has no IORING_OP_TIMEOUT_REMOVE to re-arm it).
  const auto expiry = std::clamp(config.persistent_idle_expiry / 2, std::chrono::milliseconds(100),
                                 std::chrono::milliseconds(5'000));
  timer_ts.tv_sec = expiry.count() / 1000;
  timer_ts.tv_nsec = (expiry.count() % 1000) * 1'000'000;
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
  // Wait for every submitted I/O so no kernel write lands in memory we are about to unmap. What is
  // queued but not yet started (run() left after a failure) starts first: waiting for it otherwise
  // would never end.
  if (loop.initialised()) loop.submit();
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
  } else if (tag == kTagControl) {
    control_armed = false;
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

// The three indices say which rule the frontend broke (more requests than slots, or req_prod
// moved backwards): an operator reading the log can tell a hostile frontend from a torn ring.
void Queue::Impl::ring_overflow() {
  const ring::RingIdx prod = is32 ? ring32.refused_req_prod() : ring64.refused_req_prod();
  char reason[160];
  std::snprintf(reason, sizeof reason,
                "ring overflow: the frontend's req_prod %u is impossible (req_cons %u, rsp_prod %u, %u slots)", prod,
                req_cons(), rsp_prod_pvt(), ring_size);
  fatal(EPROTO, reason);
}

// While paused the frontend's notifications are left pending on the event channel (they fire the
// poll again once it is armed at resume), so that a pause is not taken for an event storm.
void Queue::Impl::arm_polls() {
  if (!event_armed && !stopping && !fatal_seen && !paused) {
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
  arm_control();
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
  if (wakeups.mask_ms() == 0) unmask_events(); else throttle_events();
}

void Queue::Impl::unmask_events() {
  for (EvtchnPort p : masked_ports) channels->unmask(p);
  masked_ports.clear();
}

// Leaves the ports masked (the guest's notifications latch meanwhile) and unmasks them when the
// throttle timeout fires.
void Queue::Impl::throttle_events() {
  if (throttle_armed || masked_ports.empty()) return;
  const std::uint32_t ms = wakeups.mask_ms();
  throttle_ts.tv_sec = 0;
  throttle_ts.tv_nsec = static_cast<long long>(ms) * 1'000'000;
  if (io_uring_sqe* sqe = loop.sqe()) {
    io_uring_prep_timeout(sqe, &throttle_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, kTagThrottle);
    throttle_armed = true;
    stats.events_throttled.add();
    if (wakeups.masking_starts())
      PVBACK_LOG_RATELIMITED(Warning, "%s: the frontend notifies without requests (%u times in a row): its event "
                             "channel is throttled", name, wakeups.streak());
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
  advance_pause();
  for (;;) {
    if ((stopping || fatal_seen) && slots_used == 0) break;
    arm_polls();
    arm_timer();
    int r = 0;
    bool ring_ready = false;
    if (polling()) {
      // What is queued starts now, then the ring and the completions are polled (queue_poll.cpp).
      r = loop.submit();
      if (r >= 0) {
        ring_ready = poll_before_sleeping();
        if (!ring_ready && loop.ready() == 0) {
          const std::int64_t slept_from = now_ns();
          r = loop.submit_and_wait(1);
          adapt_poll_window(now_ns() - slept_from);
        }
      }
    } else {
      // Not polling (or no longer: a Tune), the frontend may still have been told not to notify.
      ring_ready = poll_before_sleeping();
      r = ring_ready ? loop.submit() : loop.submit_and_wait(1);
    }
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
      PVBACK_LOG(Error, "%s: io_uring_submit_and_wait: %s", name, std::strerror(-r));
      fatal(-r, "io_uring failed");
      break;
    }
    bool event = false;
    bool progressed = false;
    bool asked = false;
    loop.for_each_completion([&](std::uint64_t tag, int res) {
      route(tag, res);
      if ((tag & storage::Loop::kEngineTag) != 0) progressed = true;
      else if (tag == kTagEvent) event = true;
      else if (tag == kTagStop) stopping = true;
      else if (tag == kTagTimer) maybe_purge(now_ns());
      else if (tag == kTagThrottle) unmask_events();  // a notification latched meanwhile fires the poll at once
      else if (tag == kTagControl) asked = true;
    });
    if (stop.requested()) stopping = true;
    finish_copybacks();
    const bool resumed = asked && take_control();
    if (paused) event = false;  // left pending on the channel until resume
    if (event && !stopping && !fatal_seen) handle_event();
    if (!stopping && !fatal_seen) {
      arm_polls();  // re-armed after unmask: an event from now on fires it again
      // resumed: what the frontend queued meanwhile, notified or not; ring_ready: found by polling
      // or by the final check.
      const bool look = resumed || ring_ready || event || (backlog && progressed);
      const std::uint32_t taken = look ? process_ring() : 0;
      if (event) {
        // Work since the last event (taken now, or by a poll the notification raced with) means
        // an honest notification; only one that announces nothing counts towards a storm.
        if (taken != 0 || backlog || taken_since_event != 0) {
          wakeups.work_found();
          unmask_events();  // throttled, but there was work after all
        } else if (wakeups.nothing_found()) {
          stats.spurious_events.add();
        }
        taken_since_event = 0;
      } else if (taken != 0) {
        taken_since_event += taken;
        wakeups.work_found();
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
    advance_pause();
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

void Queue::pause(std::function<void(const PauseReport&)> done) { impl_->request_pause(true, std::move(done), {}); }

void Queue::resume(std::function<void(std::uint64_t waiting)> done) {
  impl_->request_pause(false, {}, std::move(done));
}

void Queue::tune(const LiveTuning& tuning) { impl_->request_tuning(tuning); }


}  // namespace pvback::blkback

