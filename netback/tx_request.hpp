// One TX packet as a guest lays it out in the ring, read by a pure function: the first slot (its
// size is the packet's), its extra-info segments, then the data slots chained by kTxfMoreData.
// The ring is read through `Ring::copy_request<T>(idx)` only (each slot copied out once, XSA-155);
// nothing else is touched, nothing is logged. The queue (queue.cpp) acts on the result: counters,
// logs, multicast updates, disconnection; tests/fuzz/tx_slots_fuzz.cpp drives it on any ring.
#pragma once
#include <cstdint>

#include "grant/types.hpp"
#include "ring/netif.hpp"
#include "ring/ring.hpp"

namespace pvback::netback::tx {

inline constexpr std::uint32_t kEthHlen = 14;

struct Limits {
  unsigned max_slots = 18;    // more data slots: the packet is dropped (Linux's max_slots)
  unsigned fatal_slots = 20;  // reaching it: the frontend is broken or hostile, disconnect
  bool gso_tcpv4 = false;     // what the guest may send as GSO (negotiated)
  bool gso_tcpv6 = false;
};

// What becomes of the packet. Drop reasons in the order they are reported.
enum class Verdict : std::uint8_t { Ok, Control, TooManySlots, BadExtra, BadSize, BadOffset };
// Why the ring cannot be read on: the vif must be disconnected.
enum class Fatal : std::uint8_t { None, ExtraPastEnd, DataPastEnd, TooManySlots };

struct Packet {
  Fatal fatal = Fatal::None;
  Verdict verdict = Verdict::Ok;
  ring::RingIdx consumed = 0;   // ring slots the packet takes (first, extras, data)
  std::uint16_t nslots = 0;     // data slots, the first included (written to `slots`)
  std::uint16_t nextras = 0;
  std::uint32_t total = 0;      // the first slot's size field
  std::uint32_t first_len = 0;  // bytes in the first slot: total minus the other data slots
  bool has_gso = false;
  netif::ExtraGso gso{};
  std::uint8_t mcast_type = 0;  // kExtraTypeMcastAdd/Del when the packet is a multicast request
  netif::ExtraMcast mcast{};
};

// Reads the packet whose first slot, already copied, is `first` at ring index `at`; `avail`
// slots from `at` on are published. The data slots' requests go to slots[0..nslots) (room for
// limits.fatal_slots).
template <class Ring>
Packet read_packet(const Ring& ring, ring::RingIdx at, ring::RingIdx avail, const netif::TxRequest& first,
                   const Limits& limits, netif::TxRequest* slots) {
  Packet p;
  p.total = first.size;
  slots[0] = first;
  ring::RingIdx i = 1;
  bool bad_extra = false;
  if (first.flags & netif::kTxfExtraInfo) {
    unsigned seen = 0;
    netif::ExtraInfo e{};
    do {
      if (i >= avail) {
        p.fatal = Fatal::ExtraPastEnd;
        return p;
      }
      e = ring.template copy_request<netif::ExtraInfo>(at + i);
      ++i;
      ++p.nextras;
      if (e.type == netif::kExtraTypeNone || e.type >= netif::kExtraTypeMax || (seen & (1u << e.type)) != 0) {
        bad_extra = true;
        continue;
      }
      seen |= 1u << e.type;
      switch (e.type) {
        case netif::kExtraTypeGso: {
          const bool v4 = e.u.gso.type == netif::kGsoTypeTcpv4 && limits.gso_tcpv4;
          const bool v6 = e.u.gso.type == netif::kGsoTypeTcpv6 && limits.gso_tcpv6;
          if ((!v4 && !v6) || e.u.gso.size == 0) bad_extra = true;
          p.has_gso = true;
          p.gso = e.u.gso;
          break;
        }
        case netif::kExtraTypeMcastAdd:
        case netif::kExtraTypeMcastDel:
          p.mcast_type = e.type;
          p.mcast = e.u.mcast;
          break;
        default:
          break;  // hash and XDP extras carry nothing used on TX
      }
    } while (e.flags & netif::kExtraFlagMore);
  }

  // Data slots chained by kTxfMoreData.
  std::uint32_t remaining = first.size;
  bool too_many = false, bad_size = false, bad_offset = false;
  std::uint16_t flags = first.flags;
  unsigned nslots = 1;
  while (flags & netif::kTxfMoreData) {
    if (i >= avail) {
      p.fatal = Fatal::DataPastEnd;
      return p;
    }
    if (nslots >= limits.fatal_slots) {
      p.fatal = Fatal::TooManySlots;
      return p;
    }
    const netif::TxRequest r = ring.template copy_request<netif::TxRequest>(at + i);
    ++i;
    slots[nslots++] = r;
    if (nslots > limits.max_slots) too_many = true;
    if (r.size > remaining) bad_size = true;
    else remaining -= r.size;
    if (std::uint32_t{r.offset} + r.size > kXenPageSize) bad_offset = true;
    flags = r.flags;
  }
  p.nslots = static_cast<std::uint16_t>(nslots);
  p.first_len = remaining;
  p.consumed = i;

  if (p.mcast_type != 0 && !bad_extra) p.verdict = Verdict::Control;
  else if (too_many) p.verdict = Verdict::TooManySlots;
  else if (bad_extra) p.verdict = Verdict::BadExtra;
  else if (bad_size || p.first_len < kEthHlen || p.total > netif::kMaxTxSize) p.verdict = Verdict::BadSize;
  else if (bad_offset || std::uint32_t{first.offset} + p.first_len > kXenPageSize) p.verdict = Verdict::BadOffset;
  return p;
}

}  // namespace pvback::netback::tx
