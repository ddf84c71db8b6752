// Queue, RX steering: packets hashed to another queue of the same vif. See queue_impl.hpp.
//
// RX steering: with a Toeplitz hash configured and more than one queue, the thread that received
// a packet computes its hash and target queue (mapping[hash % mapping_size], or hash % queues
// without a mapping table; a packet without a hashable tuple has hash 0) and delivers it into the
// target queue's RX ring itself: it takes the target's RX lock once per batch, copies with its
// own grant handle and notifies the guest on the target's port. A target without room drops the
// packet (counted as the target's rx_no_buffers); packets for the receiving queue itself wait for
// buffers as above. Each queue's RX ring and rx_* counters are touched only under its RX lock;
// the group's shared lock keeps the target alive during the delivery.
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

}  // namespace pvback::netback
