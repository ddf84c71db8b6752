// The private state of one netif queue (queue.hpp), shared by the files that serve it: queue.cpp
// (set-up, the loop, events), queue_tx.cpp (guest -> port), queue_rx.cpp (port -> guest) and
// queue_steering.cpp (RX packets hashed to other queues). Only those include it.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "base/stop_signal.hpp"
#include "grant/spurious_wakeups.hpp"
#include "netback/queue.hpp"
#include "netback/rx_postings.hpp"
#include "netback/tx_request.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {

struct QueueGroup::State {
  std::shared_mutex mutex;
  std::vector<void*> members;  // Queue::Impl*, by queue index; nullptr if absent
};

namespace queue_detail {

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

inline std::int64_t now_ns() {
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
inline bool gather(const PacketBuffer& pkt, std::uint32_t offset, std::byte* out, std::uint32_t n) {
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

}  // namespace queue_detail

struct Queue::Impl {
  using TxPacket = queue_detail::TxPacket;
  using RxPlan = queue_detail::RxPlan;
  using RxPrepared = queue_detail::RxPrepared;
  using RxHash = queue_detail::RxHash;
  using TxRequest = netif::TxRequest;
  using TxResponse = netif::TxResponse;
  using RxRequest = netif::RxRequest;
  using RxResponse = netif::RxResponse;
  using ExtraInfo = netif::ExtraInfo;
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
  int attach();
  void run();

  // ---- shared state ----
  void refresh_shared();

  // ---- TX ----
  bool process_tx();
  bool credit_exceeded(std::uint32_t size, std::int64_t now);
  void add_credit();
  // The responses of packet `p` into tx_rsps from index `n`; returns the index after them.
  std::uint32_t tx_respond(const TxPacket& p, std::int16_t status, std::uint32_t n);

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
  bool attached = false;  // attach() took the rings

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
  std::vector<TxResponse> tx_rsps;           // one batch's responses, in ring order

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

}  // namespace pvback::netback
