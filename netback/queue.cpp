// Queue: one netif queue (a TX ring and an RX ring) served by one thread. See queue.hpp.
//
// Loop (run): wait with poll(2) on the event-channel fd, the stop eventfd and the port's rx_fd;
// then serve TX, then RX, and repeat while either found work. Before sleeping, the rings' final
// checks ask the guest for a notification so no request published meanwhile is missed.
//
// Poll-mode ports (rx_fd() == -1: DPDK ports without an RX interrupt fd): receive() is called on every loop; after
// kPollSpinIterations consecutive idle loops the thread sleeps in poll(2) with a 1 ms timeout
// (still woken at once by guest events), so an idle vif costs ~1000 wake-ups/s instead of a core.
//
// The rest is in its own files: queue_tx.cpp, queue_rx.cpp, queue_steering.cpp.
#include "netback/queue.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <system_error>

#include "base/log.hpp"
#include "base/unique_fd.hpp"
#include "netback/headers.hpp"
#include "netback/queue_impl.hpp"

namespace pvback::netback {

using namespace queue_detail;

QueueGroup::QueueGroup(unsigned num_queues) : state_(std::make_unique<State>()) {
  state_->members.assign(num_queues, nullptr);
}
QueueGroup::~QueueGroup() = default;
unsigned QueueGroup::size() const { return static_cast<unsigned>(state_->members.size()); }

// ---------------------------------------------------------------------------------------------
// Set-up and tear-down

int Queue::Impl::init(const grant::Platform& platform) {
  if (config.max_slots == 0 || config.fatal_slots < config.max_slots || config.fatal_slots >= netif::kTxRingSize ||
      config.xdp_headroom >= kXenPageSize / 2) {
    PVBACK_LOG(Error, "%s: bad limits (max_slots %u, fatal_slots %u, xdp_headroom %u)", name, config.max_slots,
               config.fatal_slots, config.xdp_headroom);
    return EINVAL;
  }
  if (config.group != nullptr && config.index >= config.group->size()) {
    PVBACK_LOG(Error, "%s: queue index %u outside its group of %u", name, config.index, config.group->size());
    return EINVAL;
  }
  tx_limits = {config.max_slots, config.fatal_slots, config.guest.gso_tcpv4, config.guest.gso_tcpv6};
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

  // This handle binds the frontend's ports and nothing else; restricted to its domain, a process
  // taken over through a bug cannot bind (and so signal or wait on) another guest's channels.
  if (int e = channels->restrict_to(config.frontend_domid))
    PVBACK_LOG(Warning, "%s: cannot restrict the event-channel handle to domain %u: %s", name, config.frontend_domid,
               std::strerror(e));

  auto map_ring = [&](GrantRef ref, const char* which, grant::Mapping& out) -> int {
    const GrantRef refs[1] = {ref};
    auto m = mapper->map(config.frontend_domid, refs, Access::ReadWrite);
    if (!m) {
      PVBACK_LOG(Error, "%s: cannot map the %s ring (gref %u) of domain %u: %s", name, which, ref,
                 config.frontend_domid, std::strerror(m.error()));
      return m.error();
    }
    out = std::move(*m);
    return 0;
  };
  if (int err = map_ring(config.tx_ring_ref, "tx", tx_mapping); err != 0) return err;
  if (int err = map_ring(config.rx_ring_ref, "rx", rx_mapping); err != 0) return err;
  auto bind = [&](EvtchnPort remote, grant::BoundPort& out) -> int {
    auto local =
        grant::bind_interdomain_patiently(*channels, config.frontend_domid, remote, config.bind_patience, name);
    if (!local) {
      PVBACK_LOG(Error, "%s: cannot bind event channel %u of domain %u: %s", name, remote, config.frontend_domid,
                 std::strerror(local.error()));
      return local.error();
    }
    out = grant::BoundPort(*channels, *local);
    return 0;
  };
  if (int err = bind(config.tx_event_channel, tx_port); err != 0) return err;
  if (config.split_event_channels) {
    if (int err = bind(config.rx_event_channel, rx_port); err != 0) return err;
  }
  if (int e = stop.open()) return e;

  caps = config.exit;
  const std::size_t ring = netif::kTxRingSize;  // netif rings are one page
  tx_reqs.resize(ring);
  tx_pkts.resize(ring);
  tx_bufs.resize(ring);
  tx_buf_owner.resize(ring);
  tx_segs.resize(ring * (1 + kMaxChunks));
  tx_seg_owner.resize(tx_segs.size());
  tx_rsps.resize(ring);

  rx_bufs.resize(kRxBatch);
  rx_held.resize(kRxBatch);
  rx_held_hash.resize(kRxBatch);
  rx_hash.resize(kRxBatch);
  rx_target.resize(kRxBatch);
  rx_out.resize(kRxBatch);
  rx_out_hash.resize(kRxBatch);
  rx_plans.resize(kRxBatch);
  rx_rsps.resize(netif::kRxRingSize);
  rx_segs.resize(std::size_t{kRxBatch} * rx::kMaxSegmentsPerPacket);  // a batch's plans always fit
  rx_seg_owner.resize(rx_segs.size());
  return 0;
}

// The first access to the guest's ring memory (a data plane makes it confined).
int Queue::Impl::attach() {
  // A batch a killed predecessor logged and did not make visible is answered first, as it was
  // decided (ring_journal.hpp); then each ring is taken at its rsp_prod, not 0: a frontend that
  // stayed Connected across a backend restart keeps its indices. TX requests after rsp_prod are
  // taken again (the old process never answered them); RX buffers posted after it are still
  // the guest's free buffers, their slots untouched.
  const Replay tx_replay = config.tx_journal.replay<netif::TxRing>(tx_mapping.data());
  const Replay rx_replay = config.rx_journal.replay<netif::RxRing>(rx_mapping.data());
  for (auto [replay, which] : {std::pair{tx_replay, "tx"}, std::pair{rx_replay, "rx"}}) {
    if (replay == Replay::Rewritten)
      PVBACK_LOG(Notice, "%s: %s ring: answered the batch its predecessor had logged and not made visible", name, which);
    else if (replay == Replay::Mismatch)
      PVBACK_LOG(Warning, "%s: %s ring: rsp_prod fits neither end of the logged batch: taken from rsp_prod", name, which);
  }
  auto t = netif::TxRing::Back::attach_at_rsp_prod(tx_mapping.data(), 1);
  if (!t) return t.error();
  tx = *t;
  auto r = netif::RxRing::Back::attach_at_rsp_prod(rx_mapping.data(), 1);
  if (!r) return r.error();
  rx = *r;

  // Whatever the predecessor did or did not say, the guest looks at both rings now.
  tx_port.notify();
  if (rx_port) rx_port.notify();
  last_rx_buffers = now_ns();
  credit_window_start = last_rx_buffers;
  // Only now may another queue of the vif deliver into this one's RX ring.
  if (config.group != nullptr) {
    auto& st = config.group->state();
    std::unique_lock lock(st.mutex);
    if (st.members[config.index] != nullptr) {
      PVBACK_LOG(Error, "%s: queue %u already in its group", name, config.index);
      return EEXIST;
    }
    st.members[config.index] = this;
    registered = true;
  }
  attached = true;
  return 0;
}

Queue::Impl::~Impl() {
  if (registered) {
    // Waits for any other queue's thread delivering into our ring.
    auto& st = config.group->state();
    std::unique_lock lock(st.mutex);
    st.members[config.index] = nullptr;
  }
  if (rx_received != 0) port.release(std::span(rx_bufs.data(), rx_received));
  rx_received = 0;
  rx_port.reset();
  tx_port.reset();
  rx_mapping.reset();
  tx_mapping.reset();
}

void Queue::Impl::fatal(int error, const char* reason) {
  if (fatal_seen) return;
  fatal_seen = true;
  PVBACK_LOG(Error, "%s: %s; disconnecting", name, reason);
  if (on_fatal) on_fatal(error, reason);
}

void Queue::Impl::notify(const grant::BoundPort& p, QueueStats& count_in) {
  if (p.notify() == 0) count_in.notifications_sent.add();
}

void Queue::Impl::refresh_shared() {
  const std::uint64_t g = shared.generation();
  if (g == generation) return;
  generation = g;
  hash = shared.hash();
  // Checked like QueueConfig's at create: at least half a page stays for data.
  if (const int h = shared.xdp_headroom(); h >= 0 && static_cast<unsigned>(h) < kXenPageSize / 2) xdp_headroom = h;
  const RateLimit r = shared.rate();
  if (r.bytes != rate.bytes || r.usec != rate.usec) {
    rate = r;
    remaining_credit = r.bytes;
    credit_window_start = now_ns();
    credit_deadline = 0;
  }
}


// ---------------------------------------------------------------------------------------------
// Main loop

void Queue::Impl::run() {
  if (!attached) {
    fatal(EINVAL, "served before its rings were attached");
    return;
  }
  const int rx_fd = port.rx_fd();
  const bool poll_mode = rx_fd < 0;
  pollfd fds[3];
  bool event_woke = false;
  while (!stop.requested() && !fatal_seen) {
    refresh_shared();
    bool work = process_tx();
    if (fatal_seen) break;
    work |= process_rx();
    if (fatal_seen) break;
    if (event_woke) {
      event_woke = false;
      if (work) wakeups.work_found();
      else if (wakeups.nothing_found()) stats.spurious_events.add();
    }
    if (throttle_until != 0 && (work || now_ns() >= throttle_until)) unmask_events();

    int timeout = 0;
    bool receive_ready = false;
    if (work) {
      idle_loops = 0;
    } else {
      // Going idle: ask the guest to notify us for new requests, and re-check.
      bool more = false;
      if (credit_deadline == 0) {
        auto r = tx.final_check_for_requests();
        if (!r) {
          fatal(r.error(), "tx ring: producer index overflow");
          break;
        }
        more |= *r;
      }
      bool waiting_for_buffers;
      {
        std::lock_guard lock(rx_mutex);
        // Stalled, the queue waits for what the packet that stalled it needed, and must hear of
        // every post until then (an unarmed req_event would leave it stalled for ever).
        waiting_for_buffers = rx_held_count != 0 ||
                              rx.unconsumed_requests().value_or(0) < (stalled ? rx_head_needed : 1u);
        if (waiting_for_buffers) more |= arm_rx_event();
      }
      if (more) continue;
      const bool steering = config.group != nullptr && config.group->size() > 1 &&
                            hash.algorithm == netif::kHashAlgorithmToeplitz && hash.flags != 0;
      receive_ready = rx_received == 0 && (stalled || steering || !waiting_for_buffers);
      const std::int64_t now = now_ns();
      std::int64_t deadline = -1;
      auto consider = [&](std::int64_t d) {
        if (deadline < 0 || d < deadline) deadline = d;
      };
      if (credit_deadline != 0) consider(credit_deadline);
      if (throttle_until != 0) consider(throttle_until);
      if (!stalled && waiting_for_buffers && config.rx_stall_timeout.count() > 0)
        consider(last_rx_buffers + std::chrono::nanoseconds(config.rx_stall_timeout).count());
      if (poll_mode && receive_ready) {
        if (++idle_loops < kPollSpinIterations) consider(now);
        else consider(now + std::int64_t{kPollIdleSleepMs} * 1'000'000);
      }
      if (deadline < 0) {
        timeout = -1;
      } else {
        const std::int64_t ms = (deadline - now + 999'999) / 1'000'000;
        timeout = static_cast<int>(std::clamp<std::int64_t>(ms, 0, 60'000));
      }
    }
    nfds_t nfds = 0;
    fds[nfds++] = pollfd{channels->fd(), POLLIN, 0};
    fds[nfds++] = pollfd{stop.fd(), POLLIN, 0};
    if (!poll_mode && (work || receive_ready)) fds[nfds++] = pollfd{rx_fd, POLLIN, 0};
    const int r = ::poll(fds, nfds, timeout);
    if (r < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "%s: poll: %s", name, std::strerror(errno));
      fatal(errno, "poll failed");
      break;
    }
    if (fds[1].revents != 0) break;
    // A failed event-channel handle would report readable forever: the loop would spin on it.
    if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      fatal(EIO, "event channel handle failed");
      break;
    }
    if (fds[0].revents != 0) {
      stats.events_received.add();
      event_woke = true;
      for (;;) {
        auto p = channels->pending();
        if (!p) break;
        masked_ports.push_back(*p);
      }
      if (wakeups.mask_ms() == 0) {
        unmask_events();
      } else if (throttle_until == 0) {
        throttle_until = now_ns() + std::int64_t{wakeups.mask_ms()} * 1'000'000;
        stats.events_throttled.add();
        if (wakeups.masking_starts())
          PVBACK_LOG_RATELIMITED(Warning, "%s: the frontend notifies without work (%u times in a row): its event "
                                 "channels are throttled", name, wakeups.streak());
      }
    }
  }
  // Leave no port buffer behind.
  std::lock_guard lock(rx_mutex);
  drop_held_locked(&QueueStats::rx_no_buffers);
  release_batch_if_done();
}


std::expected<std::unique_ptr<Queue>, int> Queue::create(const grant::Platform& platform, QueueConfig config,
                                                         Port& port, VifShared& shared, QueueStats& stats,
                                                         FatalHandler on_fatal) {
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(std::move(config), port, shared, stats, std::move(on_fatal));
    if (int err = impl->init(platform); err != 0) return std::unexpected(err);
  } catch (const std::bad_alloc&) {
    return std::unexpected(ENOMEM);
  }
  return std::unique_ptr<Queue>(new Queue(std::move(impl)));
}

Queue::Queue(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Queue::~Queue() = default;

int Queue::attach() { return impl_->attach(); }

void Queue::run() { impl_->run(); }

void Queue::stop() {
  impl_->stop.request();
}


}  // namespace pvback::netback
