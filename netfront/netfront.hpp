// Userspace Xen network frontend (netfront): a process acting as a guest attaches to a vif,
// negotiates like Linux drivers/net/xen-netfront.c and sends/receives Ethernet frames through the
// shared tx/rx rings (and, when the backend offers it, the control ring).
//
//   grant::Platform platform(grant::PlatformConfig::from_env());
//   auto front = netfront::NetFront::attach(platform, "/local/domain/1/device/vif/0", options);
//   auto& q = (*front)->queue(0);
//   q.send(frame, {});                 // copies into a granted page, pushes, notifies if asked to
//   q.wait(100ms); q.reap_tx();        // TX responses free their slots (statuses are counted)
//   netfront::RxFrame f; while (q.receive(f)) {...}
//   (*front)->detach();
//
// Threading: each Queue is driven by one thread (queues may run on different threads); the
// NetFront-level calls (process_xenstore, control ring, multicast helpers, detach) by one thread.
// Queue calls never touch XenStore.
//
// Data path: each queue owns a TX pool (one page per TX ring slot, granted read-only) and an RX
// pool (one page per RX ring slot, granted read-write) for its lifetime: frames are copied into
// TX pages and out of RX pages. RX request i always carries the page of ring slot i & (size-1),
// and, as netif.h requires, the backend answers request i in slot i (Linux netfront relies on this
// too, since extra-info slots have no id).
//
// Untrusted backend: every response is copied out of the ring once and validated; malformed ones
// are counted in QueueStats and dropped (a frame with one bad slot is dropped whole), never trusted.
//
// Raw access: a test playing a malicious frontend takes tx_ring()/rx_ring(), the pools and their
// grant refs, and the ports, and crafts requests by hand (then must not mix send/receive on that
// queue).
#pragma once
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "grant/event_channel.hpp"
#include "grant/grant_table.hpp"
#include "grant/platform.hpp"
#include "ring/netif.hpp"
#include "xenbus/state.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::netfront {

using Mac = std::array<std::uint8_t, 6>;
std::string format_mac(const Mac& mac);
std::optional<Mac> parse_mac(std::string_view text);

// XEN_NETIF_MAX_XDP_HEADROOM; Linux writes XDP_PACKET_HEADROOM (256) when XDP is on.
inline constexpr std::uint16_t kMaxXdpHeadroom = 0x7fff;
inline constexpr std::uint16_t kLinuxXdpHeadroom = 256;
// Slots one received frame may span (Linux: MAX_SKB_FRAGS + 1 = 18 on 4 KiB pages).
inline constexpr std::uint32_t kMaxRxSlots = netif::kNrSlotsMin;

struct Options {
  unsigned max_queues = 8;            // min(this, backend's multi-queue-max-queues); Linux default 8
  bool split_event_channels = true;   // used when the backend offers feature-split-event-channels
  // What we offer (Linux writes all of these as "1"); false writes "0".
  bool sg = true;                     // feature-sg: we accept multi-slot RX frames
  bool gso_tcpv4 = true;              // feature-gso-tcpv4
  bool gso_tcpv6 = true;              // feature-gso-tcpv6
  bool ipv6_csum_offload = true;      // feature-ipv6-csum-offload
  bool csum_offload = true;           // false: feature-no-csum-offload = 1 (Linux never writes it)
  bool ctrl_ring = true;              // set up the control ring when the backend offers feature-ctrl-ring
  bool multicast_control = false;     // request-multicast-control = 1 (if the backend offers it)
  // XDP headroom: when the backend offers feature-xdp-headroom, write xdp-headroom (as Linux's
  // talk_to_netback_xdp does: XDP_PACKET_HEADROOM when XDP is on, 0 otherwise).
  bool xdp = false;
  std::uint16_t xdp_headroom = kLinuxXdpHeadroom;
  bool post_rx_buffers = true;        // fill the RX ring (false: leave it empty, for stall tests)
  bool require_rx_copy = true;        // refuse a backend without feature-rx-copy (Linux does)
  std::chrono::milliseconds connect_timeout{10000};  // each of: backend InitWait, backend Connected
  std::chrono::milliseconds close_timeout{5000};
  std::chrono::milliseconds ctrl_timeout{5000};      // one control-ring request
};

struct BackendFeatures {
  unsigned max_queues = 0;            // 0: key absent (single-queue backend)
  bool multi_queue_key = false;       // multi-queue-max-queues exists (Linux then writes num-queues)
  bool split_event_channels = false;
  bool ctrl_ring = false;
  bool rx_copy = false;
  bool rx_flip = false;
  bool sg = false;
  bool gso_tcpv4 = false;
  bool gso_tcpv6 = false;
  bool gso_tcpv4_prefix = false;
  bool ipv6_csum_offload = false;
  bool no_csum_offload = false;
  bool multicast_control = false;
  bool dynamic_multicast_control = false;
  bool xdp_headroom = false;
};

struct Negotiated {
  std::string frontend_path;
  std::string backend_path;
  DomId self = 0;
  DomId backend_id = 0;
  std::uint32_t handle = 0;
  Mac mac{};
  BackendFeatures backend;
  unsigned num_queues = 1;
  bool split_event_channels = false;
  bool ctrl_ring = false;
  bool multicast_control = false;      // request-multicast-control written
  std::uint16_t xdp_headroom = 0;      // xdp-headroom written (0 also when not written)
  bool xdp_headroom_written = false;
  // What we may put on the TX ring (the backend's features, and ours for sg).
  bool tx_sg = false;                  // frames over one slot
  bool tx_gso_tcpv4 = false;
  bool tx_gso_tcpv6 = false;
  bool tx_ipv6_csum = false;           // csum_blank on IPv6 frames
  std::uint32_t tx_ring_size = netif::kTxRingSize;
  std::uint32_t rx_ring_size = netif::kRxRingSize;
  std::string vif_name() const;        // "vif<self>.<handle>" for logs
};

// Per-frame metadata on TX (maps to NETTXF_* and a GSO extra-info slot).
struct TxMeta {
  bool csum_blank = false;       // NETTXF_csum_blank: checksum to be filled in by the backend/exit
  bool data_validated = false;   // NETTXF_data_validated
  std::uint8_t gso_type = netif::kGsoTypeNone;  // kGsoTypeTcpv4/6: adds a GSO extra
  std::uint16_t gso_size = 0;    // MSS
  // Layout knob: bytes in the first slot (0 = fill whole pages). Linux puts the linear head in
  // the first slot and page fragments after it; tests use this to produce such layouts.
  std::uint16_t first_slot_bytes = 0;
  std::uint16_t first_offset = 0;  // offset of the first slot's data in its page
};

struct RxMeta {
  bool csum_blank = false;       // NETRXF_csum_blank (checksum not yet computed: partial)
  bool data_validated = false;   // NETRXF_data_validated
  std::uint8_t gso_type = netif::kGsoTypeNone;
  std::uint16_t gso_size = 0;
  bool has_hash = false;
  std::uint32_t hash = 0;
  std::uint8_t hash_type = 0;    // kHashTypeBit*
  std::uint8_t hash_algorithm = 0;
  bool has_xdp = false;
  std::uint16_t xdp_headroom = 0;
  std::uint32_t slots = 0;       // ring slots the frame used (data + extras)
};

struct RxFrame {
  std::vector<std::byte> data;
  RxMeta meta;
};

struct QueueStats {
  // TX
  std::uint64_t tx_frames = 0, tx_bytes = 0, tx_slots = 0;
  std::uint64_t tx_okay = 0, tx_error = 0, tx_dropped = 0, tx_null = 0;
  std::uint64_t tx_bad_response = 0;   // unknown/inactive id or unknown status
  std::uint64_t tx_notifies = 0;
  // RX
  std::uint64_t rx_frames = 0, rx_bytes = 0;
  std::uint64_t rx_bad_slot = 0;       // negative status or offset + size beyond the page
  std::uint64_t rx_bad_extra = 0;      // unknown extra type / extras that never end
  std::uint64_t rx_bad_gso = 0;        // GSO extra with size 0 or unknown type
  std::uint64_t rx_too_many_slots = 0; // more than kMaxRxSlots
  std::uint64_t rx_need_more_slots = 0;  // more_data but no further response published
  std::uint64_t rx_dropped_frames = 0; // frames dropped for any of the above
  std::uint64_t rx_notifies = 0;
  std::uint64_t protocol_errors = 0;   // producer index overflow (queue is then broken)
};

class NetFront;

class Queue {
 public:
  Queue(const Queue&) = delete;
  Queue& operator=(const Queue&) = delete;
  ~Queue();

  unsigned index() const { return index_; }

  // Sends one frame: 0, EAGAIN (ring or TX pages full: reap_tx()/wait first), EMSGSIZE (empty,
  // > 65535 bytes, or more than one slot without sg), EOPNOTSUPP (GSO type not negotiated),
  // EINVAL (bad meta), ENODEV/EPROTO (disconnected/broken). With push = false the requests stay
  // private until flush_tx().
  int send(std::span<const std::byte> frame, const TxMeta& meta = {}, bool push = true);
  void flush_tx();
  // Free TX slots now (a frame needs data slots + 1 with GSO).
  std::uint32_t tx_free_slots() const;
  std::uint32_t tx_in_flight() const { return tx_in_flight_; }
  // Consumes TX responses, frees their pages and counts the statuses; returns responses handled.
  std::uint32_t reap_tx();

  // One received frame if a whole one is ready (malformed ones are counted and skipped), refilling
  // the RX ring as slots are consumed.
  bool receive(RxFrame& out);
  // Re-posts free RX slots (done by receive()); false while posting is disabled.
  void refill_rx();
  void set_rx_posting(bool on);
  std::uint32_t rx_posted() const;  // requests outstanding at the backend

  // Multicast filter updates as a dummy TX request carrying an MCAST_ADD/DEL extra.
  int add_multicast(const Mac& mac) { return send_mcast(netif::kExtraTypeMcastAdd, mac); }
  int del_multicast(const Mac& mac) { return send_mcast(netif::kExtraTypeMcastDel, mac); }

  // Blocks until an event arrives on this queue's channel(s) or the timeout passes. Does the final
  // check on both rings first (RING_FINAL_CHECK_FOR_RESPONSES), so it returns at once when
  // responses are pending. 0, ETIMEDOUT, EINTR, or ENODEV/EPROTO.
  int wait(std::chrono::milliseconds timeout);
  // Non-blocking: clears pending events (unmasking them); true if any.
  bool poll_events();
  int event_fd() const;

  const QueueStats& stats() const { return stats_; }
  bool connected() const { return connected_; }
  int error() const { return error_; }

  // Raw access (tests acting as a malicious frontend).
  netif::TxRing::Front& tx_ring() { return tx_; }
  netif::RxRing::Front& rx_ring() { return rx_; }
  GrantRef tx_ring_ref() const { return tx_ring_page_.refs()[0]; }
  GrantRef rx_ring_ref() const { return rx_ring_page_.refs()[0]; }
  grant::SharedPages& tx_pool() { return tx_pool_; }
  grant::SharedPages& rx_pool() { return rx_pool_; }
  EvtchnPort tx_port() const { return tx_port_.port(); }
  EvtchnPort rx_port() const { return split_ ? rx_port_.port() : tx_port_.port(); }
  bool split() const { return split_; }
  int notify_tx() { return tx_port_.notify(); }
  int notify_rx() { return split_ ? rx_port_.notify() : tx_port_.notify(); }

 private:
  friend class NetFront;
  Queue(NetFront& owner, unsigned index) : owner_(&owner), index_(index) {}
  int setup(grant::GrantSharer& sharer, const grant::Platform& platform, DomId backend, bool split);
  void teardown();
  int check_usable();
  int send_mcast(std::uint8_t type, const Mac& mac);
  void push_tx();
  void mark_broken(const char* what);
  bool consume_one_rx(RxFrame& out, std::uint32_t available);
  void post_rx_slot(ring::RingIdx idx);

  NetFront* owner_;
  unsigned index_;
  bool split_ = false;
  grant::SharedPages tx_ring_page_, rx_ring_page_;
  netif::TxRing::Front tx_;
  netif::RxRing::Front rx_;
  std::unique_ptr<grant::EventChannels> events_;
  grant::BoundPort tx_port_, rx_port_;
  grant::SharedPages tx_pool_, rx_pool_;
  std::vector<std::uint16_t> tx_free_ids_;   // TX ids == TX pool page indices
  std::vector<std::uint8_t> tx_busy_;        // by id
  std::uint32_t tx_in_flight_ = 0;           // busy ids
  bool rx_posting_ = true;
  bool connected_ = false;
  int error_ = 0;
  QueueStats stats_;
};

class NetFront {
 public:
  // Attaches as the platform's domain to the vif whose frontend node is `frontend_path`
  // (/local/domain/<me>/device/vif/<handle>) and returns once both ends are Connected.
  // Errors: ETIMEDOUT, ENOENT (no such device), ENODEV (backend closed or lacks feature-rx-copy),
  // EINVAL (no valid mac), or what XenStore/grants/event channels said.
  static std::expected<std::unique_ptr<NetFront>, int> attach(const grant::Platform& platform,
                                                              const std::string& frontend_path,
                                                              const Options& options = {});
  static std::string frontend_path_for(DomId self, unsigned handle);

  ~NetFront();
  NetFront(const NetFront&) = delete;
  NetFront& operator=(const NetFront&) = delete;

  const Negotiated& negotiated() const { return neg_; }
  const Options& options() const { return options_; }
  unsigned num_queues() const { return static_cast<unsigned>(queues_.size()); }
  Queue& queue(unsigned i) { return *queues_.at(i); }
  bool connected() const { return connected_; }
  xenbus::State state() const { return state_; }
  xenbus::State backend_state() const { return backend_state_; }
  xenbus::XenStore& xenstore() { return xs_; }
  int xenstore_fd() const { return xs_.fd(); }

  // Handles pending XenStore watch events. Returns ENODEV once the backend is Closing, Closed or
  // gone (the queues stop being usable); the caller then stops its queue threads and calls
  // detach(), which takes the frontend through Closing and Closed as Linux netfront does. 0 otherwise.
  int process_xenstore();

  // Control ring (only when negotiated; otherwise EOPNOTSUPP). Each call is one synchronous
  // request: the result is the backend's XEN_NETIF_CTRL_STATUS_* (and data where there is one),
  // or an errno value (ETIMEDOUT, EPROTO for a malformed response, ENODEV).
  struct CtrlResult {
    std::uint32_t status = 0;
    std::uint32_t data = 0;
  };
  std::expected<CtrlResult, int> ctrl_request(std::uint16_t type, std::uint32_t d0 = 0, std::uint32_t d1 = 0,
                                              std::uint32_t d2 = 0);
  std::expected<CtrlResult, int> set_hash_algorithm(std::uint32_t algorithm);
  std::expected<CtrlResult, int> get_hash_flags();
  std::expected<CtrlResult, int> set_hash_flags(std::uint32_t flags);
  std::expected<CtrlResult, int> set_hash_key(std::span<const std::uint8_t> key);   // <= 4096 bytes
  std::expected<CtrlResult, int> get_hash_mapping_size();
  std::expected<CtrlResult, int> set_hash_mapping_size(std::uint32_t entries);
  std::expected<CtrlResult, int> set_hash_mapping(std::span<const std::uint32_t> table, std::uint32_t offset = 0);
  // Raw access to the control ring and its data page (granted read-only).
  netif::CtrlRing::Front* ctrl_ring() { return neg_.ctrl_ring ? &ctrl_ : nullptr; }
  GrantRef ctrl_ring_ref() const { return ctrl_ring_page_ ? ctrl_ring_page_.refs()[0] : 0; }
  EvtchnPort ctrl_port() const { return ctrl_port_.port(); }
  GrantRef ctrl_data_ref() const { return ctrl_data_ ? ctrl_data_.refs()[0] : 0; }

  // Dynamic multicast control: rewrite request-multicast-control (backend must offer
  // feature-dynamic-multicast-control, else EOPNOTSUPP).
  int set_multicast_control(bool on);

  // Closing, waits for the backend's Closing/Closed, Closed, waits for its Closed, then ends the
  // grants. 0, or ETIMEDOUT if the backend did not follow.
  int detach();

 private:
  friend class Queue;
  NetFront(const grant::Platform& platform, Options options) : platform_(platform), options_(options) {}
  int do_attach(const std::string& frontend_path);
  void read_backend_features();
  int setup_ctrl();
  int publish();
  int wait_backend_state(std::initializer_list<xenbus::State> wanted, std::chrono::milliseconds timeout,
                         bool fail_on_closing);
  int write_state(xenbus::State s);
  void close_after_backend();

  grant::Platform platform_;
  Options options_;
  Negotiated neg_;
  xenbus::XenStore xs_;
  std::unique_ptr<grant::GrantSharer> sharer_;
  std::vector<std::unique_ptr<Queue>> queues_;
  grant::SharedPages ctrl_ring_page_, ctrl_data_;
  netif::CtrlRing::Front ctrl_;
  std::unique_ptr<grant::EventChannels> ctrl_events_;
  grant::BoundPort ctrl_port_;
  std::uint16_t ctrl_next_id_ = 0;
  std::string watch_token_;
  bool watching_ = false;
  bool connected_ = false;
  bool closed_ = false;
  xenbus::State state_ = XenbusStateInitialising;
  xenbus::State backend_state_ = XenbusStateUnknown;
};

}  // namespace pvback::netfront
