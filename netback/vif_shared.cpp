// Shared vif state. See vif_shared.hpp for the contract.
//
// Every writer changes the state and bumps the generation under the mutex, so a reader that sees
// a new generation and then copies under the mutex gets a state at least that new, never a torn one.
#include "netback/vif_shared.hpp"

#include <algorithm>
#include <type_traits>

namespace pvback::netback {

static_assert(std::tuple_size_v<decltype(GuestSetState::multicast)> == VifShared::kMaxMulticastAddresses);
static_assert(std::is_trivially_copyable_v<GuestSetState>);

namespace {

bool is_multicast(const MacAddress& a) { return (a[0] & 0x01) != 0; }
bool is_broadcast(const MacAddress& a) {
  return std::all_of(a.begin(), a.end(), [](std::uint8_t b) { return b == 0xff; });
}

}  // namespace

VifShared::VifShared(unsigned num_queues) : num_queues_(num_queues) {}

HashConfig VifShared::hash() const {
  std::lock_guard lock(mutex_);
  return hash_;
}

void VifShared::set_hash(const HashConfig& config) {
  std::lock_guard lock(mutex_);
  hash_ = config;
  // The control ring validates what it stores; clamping here keeps a bad caller from handing the
  // data path sizes past the arrays.
  hash_.key_len = std::min<std::uint32_t>(hash_.key_len, hash_.key.size());
  hash_.mapping_size = std::min<std::uint32_t>(hash_.mapping_size, hash_.mapping.size());
  saved_locked();
}

GuestSetState VifShared::snapshot_locked() const {
  GuestSetState s;
  s.hash = hash_;
  s.multicast_overflow = multicast_overflow_ ? 1 : 0;
  s.multicast_count = multicast_count_;
  std::copy(multicast_.begin(), multicast_.end(), s.multicast.begin());
  return s;
}

GuestSetState VifShared::guest_state() const {
  std::lock_guard lock(mutex_);
  return snapshot_locked();
}

void VifShared::restore(const GuestSetState& state) {
  std::lock_guard lock(mutex_);
  hash_ = state.hash;
  // As set_hash(): sizes past the arrays never reach the data path, whoever wrote the record.
  hash_.key_len = std::min<std::uint32_t>(hash_.key_len, hash_.key.size());
  hash_.mapping_size = std::min<std::uint32_t>(hash_.mapping_size, hash_.mapping.size());
  for (std::uint32_t& q : hash_.mapping)
    if (q >= num_queues_) q = 0;
  multicast_overflow_ = state.multicast_overflow != 0;
  multicast_count_ = std::min<std::uint32_t>(state.multicast_count, kMaxMulticastAddresses);
  std::copy_n(state.multicast.begin(), kMaxMulticastAddresses, multicast_.begin());
  generation_.fetch_add(1, std::memory_order_release);
}

void VifShared::persist_to(GuestStateSink* sink) {
  std::lock_guard lock(mutex_);
  sink_ = sink;
}

void VifShared::saved_locked() {
  if (sink_ != nullptr) sink_->save(snapshot_locked());
  generation_.fetch_add(1, std::memory_order_release);
}

void VifShared::set_multicast_control(bool enabled) {
  std::lock_guard lock(mutex_);
  // The list survives a toggle, as in Linux (the XenStore watch only flips the flag).
  multicast_control_ = enabled;
  generation_.fetch_add(1, std::memory_order_release);
}

bool VifShared::multicast_allowed(const MacAddress& destination) const {
  // Unicast is not ours to filter; broadcast always passes (ARP, DHCP).
  if (!is_multicast(destination) || is_broadcast(destination)) return true;
  std::lock_guard lock(mutex_);
  if (!multicast_control_ || multicast_overflow_) return true;
  return std::find(multicast_.begin(), multicast_.begin() + multicast_count_, destination) !=
         multicast_.begin() + multicast_count_;
}

bool VifShared::multicast_add(const MacAddress& address) {
  std::lock_guard lock(mutex_);
  const auto end = multicast_.begin() + multicast_count_;
  if (std::find(multicast_.begin(), end, address) != end) return true;  // already there
  if (multicast_count_ == kMaxMulticastAddresses) {
    // A frontend that wants more groups than we track must still receive them: stop filtering
    // (until the vif goes away) rather than drop traffic it asked for.
    if (!multicast_overflow_) {
      multicast_overflow_ = true;
      saved_locked();
    }
    return false;
  }
  multicast_[multicast_count_++] = address;
  saved_locked();
  return true;
}

void VifShared::multicast_del(const MacAddress& address) {
  std::lock_guard lock(mutex_);
  const auto end = multicast_.begin() + multicast_count_;
  const auto it = std::find(multicast_.begin(), end, address);
  if (it == end) return;  // absent: nothing to do, as Linux
  *it = multicast_[multicast_count_ - 1];
  --multicast_count_;
  saved_locked();
}

bool VifShared::multicast_overflowed() const {
  std::lock_guard lock(mutex_);
  return multicast_overflow_;
}

unsigned VifShared::multicast_count() const {
  std::lock_guard lock(mutex_);
  return multicast_count_;
}

RateLimit VifShared::rate() const {
  std::lock_guard lock(mutex_);
  return rate_;
}

void VifShared::set_rate(RateLimit limit) {
  std::lock_guard lock(mutex_);
  rate_ = limit;
  generation_.fetch_add(1, std::memory_order_release);
}

int VifShared::xdp_headroom() const {
  std::lock_guard lock(mutex_);
  return xdp_headroom_;
}

void VifShared::set_xdp_headroom(std::uint16_t headroom) {
  std::lock_guard lock(mutex_);
  xdp_headroom_ = headroom;
  generation_.fetch_add(1, std::memory_order_release);
}

}  // namespace pvback::netback
