// State of one vif that every queue thread reads and the control ring, the XenStore watch or a
// guest's multicast request writes: the hash configuration (control ring), the multicast filter
// and the `rate` credit. Readers on the data path never take a lock: they keep a local copy and
// refresh it when generation() changes.
#pragma once
#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>

namespace pvback::netback {

struct HashConfig {
  std::uint32_t algorithm = 0;   // netif::kHashAlgorithm*
  std::uint32_t flags = 0;       // netif::kHashType* mask
  std::uint32_t key_len = 0;
  std::array<std::uint8_t, 40> key{};     // netif::kMaxHashKeySize
  std::uint32_t mapping_size = 0;         // 0: no mapping table set (queue from hash % queues)
  std::array<std::uint32_t, 128> mapping{};  // netif::kMaxHashMappingSize; each < num_queues
};

struct RateLimit {
  std::uint64_t bytes = 0;   // credit per period; 0 = unlimited
  std::uint64_t usec = 0;    // period
};

using MacAddress = std::array<std::uint8_t, 6>;

// What the guest itself set (through the control ring and multicast extras) and a successor of
// the process serving the vif must restore: the frontend does not send it again.
struct GuestSetState {
  HashConfig hash;
  std::uint32_t multicast_overflow = 0;  // 0 or 1 (any other value read as 1)
  std::uint32_t multicast_count = 0;
  std::array<MacAddress, 64> multicast{};  // VifShared::kMaxMulticastAddresses
};

// Where VifShared keeps a copy of the guest-set state that outlives the process (netback/
// vif_record.hpp). save() is called under VifShared's lock, before the change is acknowledged
// to the guest.
class GuestStateSink {
 public:
  virtual void save(const GuestSetState& state) noexcept = 0;

 protected:
  ~GuestStateSink() = default;
};

class VifShared {
 public:
  explicit VifShared(unsigned num_queues);

  unsigned num_queues() const { return num_queues_; }
  // Bumped on every change of the hash configuration, the multicast filter or the rate.
  std::uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  HashConfig hash() const;
  void set_hash(const HashConfig& config);

  // Multicast filter (request-multicast-control). While disabled every multicast frame passes.
  // At most kMaxMulticastAddresses entries; adding beyond that turns filtering off, as Linux does.
  static constexpr unsigned kMaxMulticastAddresses = 64;
  // Filtering applies only while enabled and not overflowed; the address list is kept across
  // toggles. Unicast and broadcast destinations are always allowed.
  void set_multicast_control(bool enabled);
  bool multicast_allowed(const MacAddress& destination) const;
  // Adding an address already listed is a no-op. false when the list was full: filtering is then
  // off for good (the address passes anyway); Linux answers such a request NETIF_RSP_ERROR.
  bool multicast_add(const MacAddress& address);
  void multicast_del(const MacAddress& address);  // absent: no-op
  bool multicast_overflowed() const;
  unsigned multicast_count() const;

  RateLimit rate() const;
  void set_rate(RateLimit limit);

  // The guest-set state: restored from a predecessor's record before any queue runs, then every
  // change is saved to `sink` (nullptr: none) before it takes effect.
  GuestSetState guest_state() const;
  void restore(const GuestSetState& state);
  void persist_to(GuestStateSink* sink);

  // RX data offset in guest pages (xdp-headroom), changed when the frontend reconfigures.
  // -1 until set: each queue then keeps its QueueConfig::xdp_headroom.
  int xdp_headroom() const;
  void set_xdp_headroom(std::uint16_t headroom);

 private:
  unsigned num_queues_;
  std::atomic<std::uint64_t> generation_{0};
  // Writers are rare (control ring, XenStore, multicast extras); readers copy under the lock only
  // when generation() moved, so the hot path never contends.
  mutable std::mutex mutex_;
  HashConfig hash_;
  bool multicast_control_ = false;
  bool multicast_overflow_ = false;
  unsigned multicast_count_ = 0;
  std::array<MacAddress, kMaxMulticastAddresses> multicast_{};
  GuestStateSink* sink_ = nullptr;
  GuestSetState snapshot_locked() const;
  void saved_locked();  // after a change of the guest-set state: to the sink, new generation
  RateLimit rate_;
  int xdp_headroom_ = -1;
};

}  // namespace pvback::netback
