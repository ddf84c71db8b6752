// libFuzzer target: netback's reading of one TX packet from the ring (netback/tx_request.hpp): the
// first slot, extra-info segments, data slots chained by kTxfMoreData, on any ring contents.
//
// Input: 2 bytes of limits (max_slots, fatal_slots, which GSO types were negotiated), then 12-byte
// ring entries (the published requests, the first one at index 0). Besides crashes, a packet the
// reader accepts must be one the queue can copy safely: every slot inside its page, the sizes
// adding up to the packet's, within the slot limits; and it never reads past what was published.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "netback/tx_request.hpp"
#include "tests/fuzz/check.hpp"

namespace {

using namespace pvback;
using namespace pvback::netback;

// The published part of a TX ring, as the queue's ring reads it (one copy per entry).
struct FuzzRing {
  const std::uint8_t* entries = nullptr;
  ring::RingIdx count = 0;
  template <class T>
  T copy_request(ring::RingIdx idx) const {
    static_assert(sizeof(T) <= sizeof(netif::TxRequest));
    CHECK(idx < count);  // never past req_prod
    T out;
    std::memcpy(&out, entries + std::size_t{idx} * sizeof(netif::TxRequest), sizeof(T));
    return out;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kEntry = sizeof(netif::TxRequest);
  if (size < 2 + kEntry) return 0;
  tx::Limits limits;
  limits.max_slots = 1 + data[0] % 32;
  limits.fatal_slots = limits.max_slots + data[1] % 8;
  limits.gso_tcpv4 = (data[0] & 0x40) != 0;
  limits.gso_tcpv6 = (data[0] & 0x80) != 0;
  const ring::RingIdx count = static_cast<ring::RingIdx>(std::min<std::size_t>((size - 2) / kEntry, netif::kTxRingSize));
  FuzzRing ring{data + 2, count};
  const netif::TxRequest first = ring.copy_request<netif::TxRequest>(0);
  std::vector<netif::TxRequest> slots(limits.fatal_slots);
  const tx::Packet p = tx::read_packet(ring, 0, count, first, limits, slots.data());
  if (p.fatal != tx::Fatal::None) return 0;

  CHECK(p.consumed >= 1 && p.consumed <= count);
  CHECK(p.nslots >= 1 && p.nslots <= limits.fatal_slots);
  CHECK(p.consumed == std::uint32_t{p.nslots} + p.nextras);
  CHECK(p.total == first.size);
  switch (p.verdict) {
    case tx::Verdict::Control:
      CHECK(p.mcast_type == netif::kExtraTypeMcastAdd || p.mcast_type == netif::kExtraTypeMcastDel);
      break;
    case tx::Verdict::Ok: {
      CHECK(p.mcast_type == 0);
      CHECK(p.nslots <= limits.max_slots);
      CHECK(p.first_len >= tx::kEthHlen && p.total <= netif::kMaxTxSize);
      CHECK(std::uint32_t{first.offset} + p.first_len <= kXenPageSize);
      std::uint64_t sum = p.first_len;
      for (unsigned i = 1; i < p.nslots; ++i) {
        CHECK(std::uint32_t{slots[i].offset} + slots[i].size <= kXenPageSize);
        sum += slots[i].size;
      }
      CHECK(sum == p.total);
      if (p.has_gso) {
        CHECK(p.gso.size != 0);
        CHECK((p.gso.type == netif::kGsoTypeTcpv4 && limits.gso_tcpv4) ||
              (p.gso.type == netif::kGsoTypeTcpv6 && limits.gso_tcpv6));
      }
      break;
    }
    default:
      break;  // dropped and answered: nothing of it is copied
  }
  return 0;
}
