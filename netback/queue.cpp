// Queue: one netif queue (a TX ring and an RX ring) served by one thread. See queue.hpp.
//
// Loop (run): wait with poll(2) on the event-channel fd, the stop eventfd and the port's rx_fd;
// then serve TX, then RX, and repeat while either found work. Before sleeping, the rings' final
// checks ask the guest for a notification so no request published meanwhile is missed.
//
// TX (guest -> port), one batch = every request the guest produced (at most a ring):
//   1. each slot is copied out of the ring once (TxRequest or ExtraInfo) into tx_reqs_/the
//      packet's extras and only the copy is validated (XSA-155). Rules follow Linux netback
//      (xenvif_count_requests, xenvif_get_extras): a packet is the first slot, its extra-info
//      slots, then the slots chained by kTxfMoreData. Packets of more than max_slots slots are
//      dropped, more than fatal_slots (or a chain running past req_prod, or a producer overflow)
//      disconnect the vif. Unlike Linux, a bad extra (type 0/unknown/duplicate, bad GSO) and a
//      slot crossing its page are dropped rather than fatal;
//   2. port.alloc_tx for the good packets, then ONE batched grant copy guest -> port chunks
//      (segments split at chunk boundaries; zero-length frags are never copied: XSA-448);
//   3. per segment status: a failed copy drops only its packet; offload metadata is filled, the
//      checksum completed in software if the exit cannot take it; port.transmit hands every
//      buffer back (a buffer netback gave up on goes back with length 0);
//   4. responses for every slot in ring order (extras answer kRspNull, like Linux), one push,
//      one notify if the ring asks.
// Rate limit (the `rate` key): Linux's credit scheduler. Credit `bytes` per `usec` window, at
// most max(128 KiB, bytes) accumulated; a packet larger than the remaining credit stops TX (the
// requests stay in the ring, nothing is dropped) until the window ends; the loop's poll timeout
// is that deadline.
//
// RX (port -> guest): receive() fills at most kRxBatch buffers, and only when no packet of the
// previous batch still waits for guest buffers, so a queue never holds more than one batch.
// Without steering it asks for at most as many packets as the guest posted buffers. Per packet:
// multicast filter, offload checks against what the guest negotiated, slots needed (data slots of
// 4096 - xdp_headroom bytes, + a GSO extra, + a hash extra) and the plan that puts it into the
// guest's posted requests (both pure: rx_postings.hpp), then one batched grant copy into the
// guest's buffers and the responses (first data slot, extras, other data slots: Linux's order).
//
// RX steering: with a Toeplitz hash configured and more than one queue, the thread that received
// a packet computes its hash and target queue (mapping[hash % mapping_size], or hash % queues
// without a mapping table; a packet without a hashable tuple has hash 0) and delivers it into the
// target queue's RX ring itself: it takes the target's RX lock once per batch, copies with its
// own grant handle and notifies the guest on the target's port. A target without room drops the
// packet (counted as the target's rx_no_buffers); packets for the receiving queue itself wait for
// buffers as above. Each queue's RX ring and rx_* counters are touched only under its RX lock;
// the group's shared lock keeps the target alive during the delivery.
//
// Stall: a guest that posts fewer RX buffers than the next packet needs (none, when nothing is
// held) for rx_stall_timeout makes the queue stalled (gauge
// `stalled`, rx_stalls counted): held packets and whatever the port delivers are dropped
// (rx_stalled) until buffers appear again. The driver reads the gauge to drop the carrier.
//
// Poll-mode ports (rx_fd() == -1, DPDK): receive() is called on every loop; after
// kPollSpinIterations consecutive idle loops the thread sleeps in poll(2) with a 1 ms timeout
// (still woken at once by guest events), so an idle vif costs ~1000 wake-ups/s instead of a core.
#include "netback/queue.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <vector>

#include "base/log.hpp"
#include "base/stop_signal.hpp"
#include "base/unique_fd.hpp"
#include "grant/spurious_wakeups.hpp"
#include "netback/headers.hpp"
#include "netback/rx_postings.hpp"
#include "netback/tx_request.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {

struct QueueGroup::State {
  std::shared_mutex mutex;
  std::vector<void*> members;  // Queue::Impl*, by queue index; nullptr if absent
};

QueueGroup::QueueGroup(unsigned num_queues) : state_(std::make_unique<State>()) {
  state_->members.assign(num_queues, nullptr);
}
QueueGroup::~QueueGroup() = default;
unsigned QueueGroup::size() const { return static_cast<unsigned>(state_->members.size()); }

namespace {

using netif::ExtraInfo;
using netif::RxRequest;
using netif::RxResponse;
using netif::TxRequest;
using netif::TxResponse;

constexpr std::uint32_t kEthHlen = 14;
constexpr unsigned kPollSpinIterations = 2000;
constexpr int kPollIdleSleepMs = 1;
constexpr unsigned kMaxExtras = netif::kExtraTypeMax - 1;
constexpr unsigned kStallDrainBatches = 16;  // port batches dropped per loop while stalled

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Control: a multicast filter request, answered OKAY (ControlFailed: ERROR) without a packet.
enum class TxVerdict : std::uint8_t { Ok, Drop, Control, ControlFailed };

struct TxPacket {
  std::uint32_t first = 0;      // index in tx_reqs_ of the first data slot
  std::uint16_t nslots = 0;     // data slots (the first included)
  std::uint16_t nextras = 0;    // extra-info slots after the first
  std::uint32_t total = 0;      // the packet's size (first slot's size field)
  std::uint32_t first_len = 0;  // bytes in the first slot
  std::uint16_t flags = 0;      // first slot's kTxf*
  TxVerdict verdict = TxVerdict::Ok;
  bool has_gso = false;
  netif::ExtraGso gso{};
  std::int32_t buf = -1;        // index in tx_bufs_ once allocated
};

// One RX packet being delivered.
struct RxPlan {
  PacketBuffer* buf = nullptr;
  std::uint32_t rsp_first = 0;  // index in rx_rsps_
  std::uint16_t nrsp = 0;
  bool error = false;
};

// A response prepared before the grant copy, written after it.
struct RxPrepared {
  bool extra = false;
  std::uint32_t plan = 0;
  RxResponse rsp{};
  ExtraInfo ex{};
};

struct RxHash {
  bool valid = false;     // a hash extra goes to the guest
  std::uint8_t type = 0;
  std::uint32_t value = 0;
};

// Copies `n` bytes at `offset` of a chunked packet into `out`; false if the packet is shorter.
bool gather(const PacketBuffer& pkt, std::uint32_t offset, std::byte* out, std::uint32_t n) {
  for (unsigned c = 0; c < pkt.nr_chunks && n > 0; ++c) {
    const Chunk& ch = pkt.chunks[c];
    if (offset >= ch.len) {
      offset -= ch.len;
      continue;
    }
    const std::uint32_t take = std::min(n, ch.len - offset);
    std::memcpy(out, ch.data + offset, take);
    out += take;
    n -= take;
    offset = 0;
  }
  return n == 0;
}

}  // namespace

struct Queue::Impl {
  Impl(QueueConfig c, Port& p, VifShared& s, QueueStats& st, FatalHandler f)
      : config(std::move(c)),
        port(p),
        shared(s),
        stats(st),
        on_fatal(std::move(f)),
        name(config.name.c_str()),
        xdp_headroom(config.xdp_headroom) {}
  ~Impl();

  int init(const grant::Platform& platform);
  void run();

  // ---- shared state ----
  void refresh_shared();

  // ---- TX ----
  bool process_tx();
  bool credit_exceeded(std::uint32_t size, std::int64_t now);
  void add_credit();
  void tx_respond(const TxPacket& p, std::int16_t status);

  // ---- RX ----
  bool process_rx();
  void steer_batch();
  unsigned deliver(Impl& target, PacketBuffer* const* pkts, const RxHash* hashes, unsigned n, bool hold);
  bool rx_acceptable(Impl& target, PacketBuffer& b, bool hash, rx::Needs* needs, unsigned* needed);
  void drop_held_locked(Counter QueueStats::*reason);
  void release_batch_if_done();
  bool arm_rx_event();

  void fatal(int error, const char* reason);
  void notify(const grant::BoundPort& p, QueueStats& count_in);

  QueueConfig config;
  Port& port;
  VifShared& shared;
  QueueStats& stats;
  FatalHandler on_fatal;
  const char* name;
  ExitCapabilities caps;  // read once at create; the exit's are fixed while queues run

  // Declared first so they are destroyed last: every Mapping/BoundPort below refers to them.
  std::unique_ptr<grant::GrantMapper> mapper;
  std::unique_ptr<grant::EventChannels> channels;
  grant::Mapping tx_mapping, rx_mapping;
  grant::BoundPort tx_port, rx_port;  // rx_port unset unless split event channels
  netif::TxRing::Back tx;
  netif::RxRing::Back rx;
  StopSignal stop;
  bool fatal_seen = false;
  bool registered = false;

  // Shared-state copies, refreshed when VifShared::generation() moves.
  std::uint64_t generation = ~std::uint64_t{0};
  HashConfig hash;
  RateLimit rate;
  std::uint32_t xdp_headroom = 0;  // config.xdp_headroom until VifShared sets one (reconfigure)

  // Credit scheduler (TX).
  std::uint64_t remaining_credit = 0;
  std::int64_t credit_window_start = 0;
  std::int64_t credit_deadline = 0;  // != 0: TX waits for this instant

  // TX scratch, sized at create: no allocation on the data path.
  std::vector<TxRequest> tx_reqs;
  tx::Limits tx_limits;  // from config, set once in init()
  std::vector<TxPacket> tx_pkts;
  std::vector<PacketBuffer> tx_bufs;
  std::vector<std::uint32_t> tx_buf_owner;   // tx_bufs index -> tx_pkts index
  std::vector<grant::CopySegment> tx_segs;
  std::vector<std::uint32_t> tx_seg_owner;   // segment -> tx_pkts index

  // RX: the batch received from the port, which of it waits for this queue's guest.
  std::vector<PacketBuffer> rx_bufs;
  unsigned rx_received = 0;                  // buffers of rx_bufs owned by us (to release)
  std::vector<PacketBuffer*> rx_held;        // this queue's packets waiting for buffers, in order
  std::vector<RxHash> rx_held_hash;
  unsigned rx_held_first = 0, rx_held_count = 0;
  unsigned rx_head_needed = 1;  // slots the first held packet needs (when one is held)
  std::vector<RxHash> rx_hash;               // per rx_bufs entry
  std::vector<std::uint32_t> rx_target;      // per rx_bufs entry
  std::vector<PacketBuffer*> rx_out;         // scratch: packets for one other queue
  std::vector<RxHash> rx_out_hash;
  // Delivery scratch (used by this thread, whatever ring it fills).
  std::vector<RxPlan> rx_plans;
  std::vector<RxPrepared> rx_rsps;
  std::vector<grant::CopySegment> rx_segs;
  rx::Slot rx_slot_plan[rx::kMaxSlotsPerPacket];        // one packet's plan (rx_postings.hpp)
  rx::Segment rx_seg_plan[rx::kMaxSegmentsPerPacket];
  std::vector<std::uint32_t> rx_seg_owner;

  // RX ring state, guarded by rx_mutex (other queues' threads deliver into this ring).
  std::mutex rx_mutex;
  bool stalled = false;
  std::int64_t last_rx_buffers = 0;          // last time the guest had buffers posted

  unsigned idle_loops = 0;
  // Event storms: ports read from the channel handle and left masked, until throttle_until.
  std::vector<EvtchnPort> masked_ports;
  grant::SpuriousWakeups wakeups;  // XSA-332 (grant/spurious_wakeups.hpp)
  std::int64_t throttle_until = 0;
  void unmask_events() {
    for (EvtchnPort p : masked_ports) channels->unmask(p);
    masked_ports.clear();
    throttle_until = 0;
  }
};

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
  // At each ring's rsp_prod, not 0: a frontend that stayed Connected across a backend restart
  // keeps its indices. TX requests after rsp_prod are sent again (the old process never answered
  // them); RX buffers posted after the RX rsp_prod are still the guest's free buffers.
  auto t = netif::TxRing::Back::attach_at_rsp_prod(tx_mapping.data(), 1);
  if (!t) return t.error();
  tx = *t;
  auto r = netif::RxRing::Back::attach_at_rsp_prod(rx_mapping.data(), 1);
  if (!r) return r.error();
  rx = *r;

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
  const std::size_t ring = tx.size();
  tx_reqs.resize(ring);
  tx_pkts.resize(ring);
  tx_bufs.resize(ring);
  tx_buf_owner.resize(ring);
  tx_segs.resize(ring * (1 + kMaxChunks));
  tx_seg_owner.resize(tx_segs.size());

  rx_bufs.resize(kRxBatch);
  rx_held.resize(kRxBatch);
  rx_held_hash.resize(kRxBatch);
  rx_hash.resize(kRxBatch);
  rx_target.resize(kRxBatch);
  rx_out.resize(kRxBatch);
  rx_out_hash.resize(kRxBatch);
  rx_plans.resize(kRxBatch);
  rx_rsps.resize(rx.size());
  rx_segs.resize(std::size_t{kRxBatch} * rx::kMaxSegmentsPerPacket);  // a batch's plans always fit
  rx_seg_owner.resize(rx_segs.size());

  last_rx_buffers = now_ns();
  credit_window_start = last_rx_buffers;

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
// TX

void Queue::Impl::add_credit() {
  // As Linux's tx_add_credit: allow a burst of up to max(128 KiB, bytes) so that a packet larger
  // than one window's credit can still pass eventually.
  const std::uint64_t max_burst = std::max<std::uint64_t>(131072, rate.bytes);
  std::uint64_t max_credit = remaining_credit + rate.bytes;
  if (max_credit < remaining_credit) max_credit = ~std::uint64_t{0};
  remaining_credit = std::min(max_credit, max_burst);
}

bool Queue::Impl::credit_exceeded(std::uint32_t size, std::int64_t now) {
  if (credit_deadline != 0) {
    if (now < credit_deadline) return true;
    credit_deadline = 0;
    add_credit();
  }
  const std::int64_t period = static_cast<std::int64_t>(rate.usec) * 1000;
  const std::int64_t next = credit_window_start + period;
  if (now >= next) {
    credit_window_start = now;
    add_credit();
  }
  if (size > remaining_credit) {
    credit_deadline = std::max(next, now + 1);
    credit_window_start = credit_deadline;
    stats.rate_limited.add();
    return true;
  }
  return false;
}

void Queue::Impl::tx_respond(const TxPacket& p, std::int16_t status) {
  tx.put_response(TxResponse{tx_reqs[p.first].id, status});
  for (unsigned e = 0; e < p.nextras; ++e) tx.put_response(TxResponse{0, netif::kRspNull});
  for (unsigned k = 1; k < p.nslots; ++k) tx.put_response(TxResponse{tx_reqs[p.first + k].id, status});
}

bool Queue::Impl::process_tx() {
  auto pending = tx.unconsumed_requests();
  if (!pending) {
    fatal(pending.error(), "tx ring: producer index overflow");
    return false;
  }
  const ring::RingIdx avail = *pending;
  stats.tx_ring_pending.set(avail);
  if (avail == 0) return false;
  const bool limited = rate.bytes != 0 && rate.usec != 0;
  const std::int64_t now = limited ? now_ns() : 0;
  const ring::RingIdx cons = tx.req_cons();

  ring::RingIdx used = 0;
  std::uint32_t nreq = 0;
  unsigned npkts = 0;
  while (used < avail) {
    const TxRequest first = tx.copy_request(cons + used);
    if (limited && first.size > remaining_credit && credit_exceeded(first.size, now)) break;
    const tx::Packet r = tx::read_packet(tx, cons + used, avail - used, first, tx_limits, &tx_reqs[nreq]);
    switch (r.fatal) {
      case tx::Fatal::None:
        break;
      case tx::Fatal::ExtraPastEnd:
        fatal(EPROTO, "tx ring: extra info missing after the last request");
        return false;
      case tx::Fatal::DataPastEnd:
        fatal(EPROTO, "tx ring: packet continues past the last request");
        return false;
      case tx::Fatal::TooManySlots:
        PVBACK_LOG_RATELIMITED(Error, "%s: tx packet of more than %u slots", name, config.fatal_slots);
        fatal(E2BIG, "tx ring: malicious frontend, packet of too many slots");
        return false;
    }
    TxPacket& p = tx_pkts[npkts];
    p = TxPacket{};
    p.first = nreq;
    p.flags = first.flags;
    p.total = r.total;
    p.nslots = r.nslots;
    p.nextras = r.nextras;
    p.first_len = r.first_len;
    p.has_gso = r.has_gso;
    p.gso = r.gso;
    nreq += r.nslots;
    used += r.consumed;
    ++npkts;

    p.verdict = TxVerdict::Drop;
    switch (r.verdict) {
      case tx::Verdict::Control: {
        p.verdict = TxVerdict::Control;
        MacAddress mac;
        std::memcpy(mac.data(), r.mcast.addr, mac.size());
        if (r.mcast_type == netif::kExtraTypeMcastAdd) {
          if (config.multicast_control && !shared.multicast_add(mac)) p.verdict = TxVerdict::ControlFailed;
          stats.mcast_add.add();
        } else {
          if (config.multicast_control) shared.multicast_del(mac);
          stats.mcast_del.add();
        }
        break;
      }
      case tx::Verdict::TooManySlots:
        stats.tx_too_many_slots.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet of %u slots dropped (limit %u)", name, r.nslots,
                               config.max_slots);
        break;
      case tx::Verdict::BadExtra:
        stats.tx_bad_extra.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet with a bad extra-info segment dropped", name);
        break;
      case tx::Verdict::BadSize:
        stats.tx_bad_size.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet of bad size dropped (size %u, first slot %u)", name, p.total,
                               p.first_len);
        break;
      case tx::Verdict::BadOffset:
        stats.tx_bad_offset.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx slot crossing its page dropped", name);
        break;
      case tx::Verdict::Ok:
        p.verdict = TxVerdict::Ok;
        if (limited) remaining_credit -= std::min<std::uint64_t>(remaining_credit, p.total);
        break;
    }
  }
  if (used == 0) return false;
  tx.skip_requests(used);
  stats.batches.add();

  // Buffers from the port for the good packets.
  unsigned nbufs = 0;
  for (unsigned k = 0; k < npkts; ++k) {
    TxPacket& p = tx_pkts[k];
    if (p.verdict != TxVerdict::Ok) continue;
    PacketBuffer& b = tx_bufs[nbufs];
    b.length = p.total;
    b.meta = PacketMeta{};
    b.nr_chunks = 0;
    b.handle = nullptr;
    p.buf = static_cast<std::int32_t>(nbufs);
    tx_buf_owner[nbufs] = k;
    ++nbufs;
  }
  if (nbufs != 0 && port.alloc_tx(std::span(tx_bufs.data(), nbufs)) != 0) {
    stats.tx_no_buffers.add(nbufs);
    PVBACK_LOG_RATELIMITED(Warning, "%s: port has no buffers, %u tx packets dropped", name, nbufs);
    for (unsigned k = 0; k < npkts; ++k)
      if (tx_pkts[k].verdict == TxVerdict::Ok) tx_pkts[k].verdict = TxVerdict::Drop;
    nbufs = 0;
  }

  // One batched copy guest -> port chunks.
  std::size_t nsegs = 0;
  for (unsigned bi = 0; bi < nbufs; ++bi) {
    const std::uint32_t k = tx_buf_owner[bi];
    TxPacket& p = tx_pkts[k];
    PacketBuffer& b = tx_bufs[bi];
    unsigned c = 0;
    std::uint32_t pos = 0;
    bool short_chunks = false;
    for (unsigned s = 0; s < p.nslots && !short_chunks; ++s) {
      const TxRequest& r = tx_reqs[p.first + s];
      std::uint32_t len = s == 0 ? p.first_len : r.size;
      std::uint32_t off = r.offset;
      while (len > 0) {  // zero-length frags are never copied (XSA-448)
        while (c < b.nr_chunks && pos >= b.chunks[c].len) {
          ++c;
          pos = 0;
        }
        if (c >= b.nr_chunks || nsegs >= tx_segs.size()) {
          short_chunks = true;
          break;
        }
        const std::uint32_t n = std::min(len, b.chunks[c].len - pos);
        grant::CopySegment& seg = tx_segs[nsegs];
        seg = grant::CopySegment{};
        seg.source.foreign.ref = r.gref;
        seg.source.foreign.offset = static_cast<std::uint16_t>(off);
        seg.source.foreign.domid = config.frontend_domid;
        seg.dest.virt = b.chunks[c].data + pos;
        seg.len = static_cast<std::uint16_t>(n);
        seg.flags = GNTCOPY_source_gref;
        tx_seg_owner[nsegs++] = k;
        len -= n;
        off += n;
        pos += n;
      }
    }
    if (short_chunks) {
      // The port gave less room than asked: a port bug, not the guest's.
      PVBACK_LOG_RATELIMITED(Error, "%s: port gave %u chunks too small for %u bytes", name, b.nr_chunks, b.length);
      stats.tx_no_buffers.add();
      p.verdict = TxVerdict::Drop;
    }
  }
  if (nsegs != 0) {
    stats.grant_copy_segments.add(nsegs);
    const int err = mapper->copy(std::span(tx_segs.data(), nsegs));
    for (std::size_t s = 0; s < nsegs; ++s) {
      if (err == 0 && tx_segs[s].status == GNTST_okay) continue;
      TxPacket& p = tx_pkts[tx_seg_owner[s]];
      if (p.verdict == TxVerdict::Ok) {
        p.verdict = TxVerdict::Drop;
        stats.tx_bad_grant.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: tx grant copy from gref %u failed (status %d, error %d)", name,
                               tx_segs[s].source.foreign.ref, tx_segs[s].status, err);
      }
    }
  }

  // Metadata; buffers of dropped packets go back with length 0.
  unsigned nvalid = 0;
  for (unsigned bi = 0; bi < nbufs; ++bi) {
    TxPacket& p = tx_pkts[tx_buf_owner[bi]];
    PacketBuffer& b = tx_bufs[bi];
    if (p.verdict == TxVerdict::Ok) {
      if (p.flags & netif::kTxfCsumBlank) b.meta.csum_partial = true;
      else if (p.flags & netif::kTxfDataValidated) b.meta.csum_validated = true;
      // A GSO packet is always partial; one the guest did not mark "checksum blank" gets the
      // pseudo-header sum written in (Linux's checksum_setup recalculates it the same way).
      const bool fixup = p.has_gso && !b.meta.csum_partial;
      if (p.has_gso) {
        b.meta.gso_type = p.gso.type;
        b.meta.gso_size = p.gso.size;
        b.meta.csum_partial = true;
        b.meta.csum_validated = false;
      }
      if (b.meta.csum_partial) {
        bool ok = setup_partial_checksum(b, fixup);
        if (ok && p.has_gso) {
          // GSO must describe the packet: TCP (csum at 16), over the IP version its type names.
          // A mismatch would reach the exit's segmentation (virtio_net_hdr) as a lie.
          std::byte ip_first{};
          const unsigned version = gather(b, b.meta.l2_len, &ip_first, 1) ? std::to_integer<unsigned>(ip_first) >> 4 : 0;
          ok = b.meta.csum_offset == 16 && b.meta.l4_len != 0 &&
               version == (p.gso.type == netif::kGsoTypeTcpv4 ? 4u : 6u);
          if (!ok) stats.tx_bad_extra.add();
        } else if (ok && !caps.tx_csum) {
          ok = complete_checksum(b);
        }
        if (!ok) {
          stats.tx_bad_checksum.add();
          PVBACK_LOG_RATELIMITED(Warning, "%s: tx packet with checksum blank is not TCP/UDP over IP, dropped", name);
          p.verdict = TxVerdict::Drop;
        }
      }
    }
    if (p.verdict == TxVerdict::Ok) {
      ++nvalid;
      stats.tx_packets.add();
      stats.tx_bytes.add(b.length);
    } else {
      b.length = 0;
    }
  }
  if (nbufs != 0) {
    const unsigned sent = port.transmit(std::span(tx_bufs.data(), nbufs));
    if (sent < nvalid) stats.tx_port_dropped.add(nvalid - sent);
  }

  for (unsigned k = 0; k < npkts; ++k) {
    const TxPacket& p = tx_pkts[k];
    const bool failed = p.verdict == TxVerdict::Drop || p.verdict == TxVerdict::ControlFailed;
    tx_respond(p, failed ? netif::kRspError : netif::kRspOkay);
  }
  if (tx.push_responses_and_check_notify()) notify(tx_port, stats);
  stats.tx_ring_pending.set(avail - used);
  return true;
}

// ---------------------------------------------------------------------------------------------
// RX

// Checks a packet for `target`'s guest (filters, offloads), computing what it needs of the guest's
// buffers and how many slots (rx_postings.hpp). false: dropped and counted (target's RX lock held).
bool Queue::Impl::rx_acceptable(Impl& t, PacketBuffer& b, bool has_hash, rx::Needs* needs, unsigned* needed) {
  const GuestOffloads& g = t.config.guest;
  if (b.length < kEthHlen || b.length > kMaxPacketBytes) {
    t.stats.rx_too_big_for_guest.add();
    return false;
  }
  if (t.config.multicast_control) {
    MacAddress dst;
    if (gather(b, 0, reinterpret_cast<std::byte*>(dst.data()), 6) && (dst[0] & 1) != 0) {
      static constexpr MacAddress kBroadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
      if (dst != kBroadcast && !shared.multicast_allowed(dst)) {
        t.stats.rx_multicast_filtered.add();
        return false;
      }
    }
  }
  unsigned extras = has_hash ? 1 : 0;
  if (b.meta.gso_type != netif::kGsoTypeNone) {
    const bool ok = (b.meta.gso_type == netif::kGsoTypeTcpv4 && g.gso_tcpv4) ||
                    (b.meta.gso_type == netif::kGsoTypeTcpv6 && g.gso_tcpv6);
    if (!ok || b.meta.gso_size == 0) {
      t.stats.rx_gso_not_negotiated.add();
      PVBACK_LOG_RATELIMITED(Warning, "%s: rx GSO packet (type %u) the guest did not negotiate, dropped", t.name,
                             b.meta.gso_type);
      return false;
    }
    ++extras;
  }
  if (b.meta.csum_partial) {
    bool guest_takes = g.csum;
    if (guest_takes && !g.ipv6_csum) {
      auto h = parse_headers(b);
      if (!h || h->ipv6) guest_takes = false;
    }
    if (!guest_takes) {
      if (b.meta.gso_type != netif::kGsoTypeNone || !complete_checksum(b)) {
        t.stats.rx_bad_checksum.add();
        return false;
      }
    }
  }
  // The headroom is vif-wide: this thread's copy (below kXenPageSize / 2).
  *needs = rx::Needs{b.length, static_cast<std::uint16_t>(xdp_headroom), extras, g.sg};
  auto slots = rx::slots_needed(*needs, t.rx.size());
  if (!slots) {
    t.stats.rx_too_big_for_guest.add();
    if (slots.error() == rx::Refusal::NeedsSg)
      PVBACK_LOG_RATELIMITED(Warning, "%s: rx packet of %u bytes for a guest without feature-sg, dropped", t.name,
                             b.length);
    return false;
  }
  *needed = *slots;
  return true;
}

// Delivers pkts[0..n) into `t`'s RX ring (t.rx_mutex held by the caller), with this thread's
// scratch and grant handle. hold: stop at the first packet that does not fit (this queue's own
// packets); otherwise such packets are dropped. Returns how many packets were resolved
// (delivered or dropped).
unsigned Queue::Impl::deliver(Impl& t, PacketBuffer* const* pkts, const RxHash* hashes, unsigned n, bool hold) {
  auto avail = t.rx.unconsumed_requests();
  if (!avail) {
    if (&t == this) fatal(avail.error(), "rx ring: producer index overflow");
    t.stats.rx_no_buffers.add(n);
    return n;
  }
  const ring::RingIdx posted = *avail;
  const ring::RingIdx cons = t.rx.req_cons();
  ring::RingIdx used = 0;
  unsigned nplans = 0;
  std::size_t nsegs = 0;
  unsigned i = 0;
  for (; i < n; ++i) {
    PacketBuffer& b = *pkts[i];
    const RxHash& h = hashes[i];
    rx::Needs needs;
    unsigned needed = 0;
    if (!rx_acceptable(t, b, h.valid, &needs, &needed)) continue;
    const rx::Plan p = rx::plan_packet(t.rx, cons + used, posted - used, needed, needs,
                                       std::span(b.chunks, std::min(b.nr_chunks, kMaxChunks)), rx_slot_plan,
                                       rx_seg_plan);
    if (p.verdict == rx::Verdict::Wait) {
      if (hold) {
        t.rx_head_needed = needed;  // what the stall check waits for
        break;
      }
      t.stats.rx_no_buffers.add();
      continue;
    }
    RxPlan& plan = rx_plans[nplans];
    // Short chunks: a port bug; the packet is answered with an error.
    plan = RxPlan{&b, used, static_cast<std::uint16_t>(needed), p.verdict == rx::Verdict::ShortChunks};
    const bool gso = b.meta.gso_type != netif::kGsoTypeNone;
    const unsigned nextras = needs.extras;
    for (std::size_t k = 0; k < p.segments; ++k) {
      const rx::Segment& from = rx_seg_plan[k];
      grant::CopySegment& seg = rx_segs[nsegs];
      seg = grant::CopySegment{};
      seg.source.virt = b.chunks[from.chunk].data + from.chunk_offset;
      seg.dest.foreign.ref = rx_slot_plan[from.slot].gref;
      seg.dest.foreign.offset = from.offset;
      seg.dest.foreign.domid = t.config.frontend_domid;
      seg.len = from.len;
      seg.flags = GNTCOPY_dest_gref;
      rx_seg_owner[nsegs++] = nplans;
    }
    for (unsigned pos = 0; pos < needed; ++pos) {
      const rx::Slot& slot = rx_slot_plan[pos];
      RxPrepared& out = rx_rsps[used + pos];
      out = RxPrepared{};
      out.plan = nplans;
      if (slot.extra) {
        out.extra = true;
        ExtraInfo& ex = out.ex;
        const bool gso_here = gso && pos == 1;
        if (gso_here) {
          ex.type = netif::kExtraTypeGso;
          ex.u.gso.size = b.meta.gso_size;
          ex.u.gso.type = b.meta.gso_type;
        } else {
          ex.type = netif::kExtraTypeHash;
          ex.u.hash.type = h.type;
          ex.u.hash.algorithm = static_cast<std::uint8_t>(netif::kHashAlgorithmToeplitz);
          ex.u.hash.value[0] = static_cast<std::uint8_t>(h.value);
          ex.u.hash.value[1] = static_cast<std::uint8_t>(h.value >> 8);
          ex.u.hash.value[2] = static_cast<std::uint8_t>(h.value >> 16);
          ex.u.hash.value[3] = static_cast<std::uint8_t>(h.value >> 24);
        }
        if (pos < nextras) ex.flags = netif::kExtraFlagMore;
        continue;
      }
      RxResponse& rsp = out.rsp;
      rsp.id = slot.id;
      rsp.offset = slot.offset;
      rsp.status = static_cast<std::int16_t>(slot.bytes);
      std::uint16_t flags = slot.more ? netif::kRxfMoreData : 0;
      if (pos == 0) {
        if (b.meta.csum_partial) flags |= netif::kRxfCsumBlank | netif::kRxfDataValidated;
        else if (b.meta.csum_validated) flags |= netif::kRxfDataValidated;
        if (nextras != 0) flags |= netif::kRxfExtraInfo;
      }
      rsp.flags = flags;
    }
    used += needed;
    ++nplans;
  }
  if (nplans != 0) {
    if (nsegs != 0) {
      stats.grant_copy_segments.add(nsegs);
      const int err = mapper->copy(std::span(rx_segs.data(), nsegs));
      for (std::size_t s = 0; s < nsegs; ++s)
        if (err != 0 || rx_segs[s].status != GNTST_okay) rx_plans[rx_seg_owner[s]].error = true;
    }
    for (ring::RingIdx r = 0; r < used; ++r) {
      RxPrepared& out = rx_rsps[r];
      if (out.extra) {
        t.rx.put_response(out.ex);
        continue;
      }
      if (rx_plans[out.plan].error) out.rsp.status = netif::kRspError;
      t.rx.put_response(out.rsp);
    }
    for (unsigned k = 0; k < nplans; ++k) {
      if (rx_plans[k].error) {
        t.stats.rx_bad_grant.add();
        PVBACK_LOG_RATELIMITED(Warning, "%s: rx grant copy into the guest failed, packet answered with an error",
                               t.name);
      } else {
        t.stats.rx_packets.add();
        t.stats.rx_bytes.add(rx_plans[k].buf->length);
      }
    }
    t.rx.skip_requests(used);
    if (t.rx.push_responses_and_check_notify()) notify(t.config.split_event_channels ? t.rx_port : t.tx_port, stats);
  }
  t.stats.rx_ring_posted.set(posted - used);
  return i;
}

void Queue::Impl::drop_held_locked(Counter QueueStats::*reason) {
  if (rx_held_count != 0) (stats.*reason).add(rx_held_count);
  rx_held_first = 0;
  rx_held_count = 0;
}

void Queue::Impl::release_batch_if_done() {
  if (rx_received != 0 && rx_held_count == 0) {
    port.release(std::span(rx_bufs.data(), rx_received));
    rx_received = 0;
  }
}

// Waiting for RX buffers: asks for an event as soon as the guest posts any (req_event = prod + 1,
// as Linux's xenvif_rx_ring_slots_available does; the ring's final check would fire at once while
// the guest has posted too few for a held packet). true if buffers arrived meanwhile.
bool Queue::Impl::arm_rx_event() {
  auto* base = static_cast<std::byte*>(rx_mapping.data());
  const ring::RingIdx prod = rx.shared_req_prod();
  ring::detail::shared_index(base, ring::detail::kReqEvent).store(prod + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return rx.shared_req_prod() != prod;
}

// Hash and target queue of every packet just received; delivers the other queues' packets and
// keeps this queue's in rx_held.
void Queue::Impl::steer_batch() {
  const bool hashing = hash.algorithm == netif::kHashAlgorithmToeplitz && hash.flags != 0;
  const unsigned nq = config.group != nullptr ? config.group->size() : 1;
  const bool steering = hashing && nq > 1;
  const std::span<const std::uint8_t> key(hash.key.data(), std::min<std::size_t>(hash.key_len, hash.key.size()));
  for (unsigned i = 0; i < rx_received; ++i) {
    RxHash h;
    if (hashing) {
      if (auto parsed = parse_headers(rx_bufs[i])) {
        if (auto fh = flow_hash(*parsed, key, hash.flags)) {
          h.valid = true;
          h.type = fh->type;
          h.value = fh->value;
        }
      }
    }
    rx_hash[i] = h;
    std::uint32_t target = config.index;
    if (steering) {
      const std::uint32_t size = std::min<std::uint32_t>(hash.mapping_size, hash.mapping.size());
      target = size != 0 ? hash.mapping[h.value % size] : h.value % nq;
      if (target >= nq) target = config.index;
    }
    rx_target[i] = target;
  }
  rx_held_first = 0;
  rx_held_count = 0;
  for (unsigned i = 0; i < rx_received; ++i) {
    if (rx_target[i] != config.index) continue;
    rx_held[rx_held_count] = &rx_bufs[i];
    rx_held_hash[rx_held_count] = rx_hash[i];
    ++rx_held_count;
  }
  if (!steering) return;
  auto& st = config.group->state();
  std::shared_lock group_lock(st.mutex);
  for (std::uint32_t q = 0; q < nq; ++q) {
    if (q == config.index) continue;
    unsigned n = 0;
    for (unsigned i = 0; i < rx_received; ++i) {
      if (rx_target[i] != q) continue;
      rx_out[n] = &rx_bufs[i];
      rx_out_hash[n] = rx_hash[i];
      ++n;
    }
    if (n == 0) continue;
    stats.rx_steered_out.add(n);
    auto* target = static_cast<Impl*>(st.members[q]);
    if (target == nullptr) {
      std::lock_guard lock(rx_mutex);
      stats.rx_no_buffers.add(n);
      continue;
    }
    std::lock_guard lock(target->rx_mutex);
    deliver(*target, rx_out.data(), rx_out_hash.data(), n, false);
  }
}

bool Queue::Impl::process_rx() {
  bool work = false;
  bool want_receive = false;
  ring::RingIdx posted = 0;
  {
    std::lock_guard lock(rx_mutex);
    auto avail = rx.unconsumed_requests();
    if (!avail) {
      fatal(avail.error(), "rx ring: producer index overflow");
      return false;
    }
    posted = *avail;
    stats.rx_ring_posted.set(posted);
    const std::int64_t now = now_ns();
    // Starved: fewer buffers posted than the packet at the head needs (any at all when none is
    // held). Not just "none posted": a guest that keeps one buffer posted while the head packet
    // needs three would otherwise never stall, and Dom0 would hold its packets for ever (the
    // pattern of XSA-392 / CVE-2021-28714, as Linux's xenvif_rx_queue_stalled() checks it). A
    // stall ends once the guest posts what the packet that caused it needed (its packets are
    // dropped meanwhile), not at the first buffer, or the carrier would flap.
    if (rx_held_count == 0 && !stalled) rx_head_needed = 1;
    const bool starved = posted < rx_head_needed;
    if (!starved) {
      last_rx_buffers = now;
      if (stalled) {
        stalled = false;
        stats.stalled.set(0);
        PVBACK_LOG(Notice, "%s: guest rx ready again", name);
      }
    } else if (!stalled && config.rx_stall_timeout.count() > 0 &&
               now - last_rx_buffers >= std::chrono::nanoseconds(config.rx_stall_timeout).count()) {
      stalled = true;
      stats.rx_stalls.add();
      stats.stalled.set(1);
      PVBACK_LOG_RATELIMITED(Warning, "%s: guest posted %u rx buffer(s) for %lld ms while the next packet needs %u: "
                             "stalled, dropping", name, posted, static_cast<long long>(config.rx_stall_timeout.count()),
                             rx_held_count != 0 ? rx_head_needed : 1u);
    }
    if (stalled) {
      if (rx_held_count != 0) work = true;
      drop_held_locked(&QueueStats::rx_stalled);
    } else if (rx_held_count != 0) {
      const unsigned done = deliver(*this, rx_held.data() + rx_held_first, rx_held_hash.data() + rx_held_first,
                                    rx_held_count, true);
      if (done != 0) work = true;
      rx_held_first += done;
      rx_held_count -= done;
      if (rx_held_count != 0 && fatal_seen) drop_held_locked(&QueueStats::rx_no_buffers);
    }
  }
  if (fatal_seen) return false;
  release_batch_if_done();

  if (stalled) {
    // Drain the port so nothing piles up in Dom0 while the guest does not take packets.
    for (unsigned round = 0; round < kStallDrainBatches; ++round) {
      const unsigned got = port.receive(std::span(rx_bufs.data(), kRxBatch));
      if (got == 0) break;
      work = true;
      port.release(std::span(rx_bufs.data(), got));
      std::lock_guard lock(rx_mutex);
      stats.rx_stalled.add(got);
      if (got < kRxBatch) break;
    }
    return work;
  }
  if (rx_received != 0) return work;  // still holding a batch

  const bool steering = config.group != nullptr && config.group->size() > 1 &&
                        hash.algorithm == netif::kHashAlgorithmToeplitz && hash.flags != 0;
  want_receive = steering || posted != 0;
  if (!want_receive) return work;
  const unsigned ask = steering ? kRxBatch : std::min<unsigned>(kRxBatch, posted);
  rx_received = port.receive(std::span(rx_bufs.data(), ask));
  if (rx_received == 0) return work;
  work = true;
  steer_batch();
  if (rx_held_count != 0) {
    std::lock_guard lock(rx_mutex);
    const unsigned done = deliver(*this, rx_held.data(), rx_held_hash.data(), rx_held_count, true);
    rx_held_first += done;
    rx_held_count -= done;
  }
  release_batch_if_done();
  return work;
}

// ---------------------------------------------------------------------------------------------
// Main loop

void Queue::Impl::run() {
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

}  // namespace pvback::netback

namespace pvback::netback {

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

void Queue::run() { impl_->run(); }

void Queue::stop() {
  impl_->stop.request();
}

const QueueConfig& Queue::config() const { return impl_->config; }

}  // namespace pvback::netback
