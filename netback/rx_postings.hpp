// The RX buffers a guest posts (netif_rx_request: id, gref) and the head packet that is to go into
// them, decided by pure functions: how many ring slots the packet needs, and the plan that puts it
// there (which request each slot answers, how many bytes go into its buffer, the grant copies).
// The ring is read through `Ring::copy_request<netif::RxRequest>(idx)` only, once per data slot
// (XSA-155), never at or past what the guest published. The queue (queue.cpp) acts on the plan:
// extra-info slots, grant copy, responses, counters; tests/fuzz/rx_postings_fuzz.cpp drives it on
// any ring.
//
// Ids are echoed, not checked: they name the frontend's own buffers and only the frontend is hurt
// by posting one twice (Linux netback does not check them either).
#pragma once
#include <cstddef>
#include <cstdint>
#include <expected>
#include <span>

#include "grant/types.hpp"
#include "netback/packet.hpp"
#include "ring/netif.hpp"
#include "ring/ring.hpp"

namespace pvback::netback::rx {

// Most slots one packet may need: data slots of at least 2048 bytes (the queue allows an XDP
// headroom below 2048) for kMaxPacketBytes, plus the GSO and hash extras.
inline constexpr unsigned kMaxSlotsPerPacket = (kMaxPacketBytes + 2047) / 2048 + 2;
// Most grant copies one packet needs: a copy ends at every buffer's end and every chunk's end.
inline constexpr unsigned kMaxSegmentsPerPacket = kMaxSlotsPerPacket + kMaxChunks;

// What the packet at the head asks of the guest's buffers.
struct Needs {
  std::uint32_t length = 0;    // frame bytes
  std::uint16_t headroom = 0;  // XDP headroom: data starts this far into each buffer
  unsigned extras = 0;         // extra-info slots after the first data slot (GSO, hash): 0..2
  bool sg = false;             // the guest takes a packet in more than one buffer (feature-sg)
};

// Why a packet can never be delivered to this guest (it is dropped, not held).
enum class Refusal : std::uint8_t { BadLength, BadHeadroom, TooManyExtras, NeedsSg, TooManySlots };

// Ring slots the packet needs: its data slots of kXenPageSize - headroom bytes plus its extras,
// at most min(kMaxSlotsPerPacket, ring_size).
[[nodiscard]] inline std::expected<unsigned, Refusal> slots_needed(const Needs& n, unsigned ring_size) {
  if (n.length == 0 || n.length > kMaxPacketBytes) return std::unexpected(Refusal::BadLength);
  if (n.headroom >= kXenPageSize) return std::unexpected(Refusal::BadHeadroom);
  if (n.extras > 2) return std::unexpected(Refusal::TooManyExtras);
  const std::uint32_t per_slot = kXenPageSize - n.headroom;
  const std::uint32_t data_slots = (n.length + per_slot - 1) / per_slot;
  if (data_slots > 1 && !n.sg) return std::unexpected(Refusal::NeedsSg);
  const std::uint32_t needed = data_slots + n.extras;
  if (needed > kMaxSlotsPerPacket || needed > ring_size) return std::unexpected(Refusal::TooManySlots);
  return needed;
}

// One ring slot of the packet, in ring order: data slot 0, the extras, then data slots 1..
// (Linux's order).
struct Slot {
  bool extra = false;          // an extra-info slot: the caller writes it, no buffer is used
  std::uint16_t id = 0;        // data slot: the request's id, echoed in the response
  GrantRef gref = 0;           // the buffer
  std::uint16_t offset = 0;    // where the data starts in it (the headroom)
  std::uint16_t bytes = 0;     // data bytes put in it (> 0)
  bool more = false;           // another data slot follows (kRxfMoreData)
};

// One grant copy: bytes of a chunk of the packet into the buffer of a data slot.
struct Segment {
  std::uint16_t slot = 0;      // index in the plan's slots
  std::uint16_t chunk = 0;     // index in the packet's chunks
  std::uint32_t chunk_offset = 0;
  std::uint16_t offset = 0;    // in the buffer
  std::uint16_t len = 0;
};

enum class Verdict : std::uint8_t {
  Ok,
  Wait,         // fewer buffers posted than the packet needs: nothing was read
  ShortChunks,  // the packet's chunks hold less than its length (an exit's bug): slots planned,
                // copies short; the packet must be answered with an error
};

struct Plan {
  Verdict verdict = Verdict::Ok;
  unsigned slots = 0;          // ring slots taken (== needed), written to slots[0..slots)
  unsigned data_slots = 0;
  std::size_t segments = 0;    // written to segs[0..segments)
};

// Plans the packet of `needs` (slots_needed(needs) == needed) into the `avail` requests published
// from ring index `at` on. `slots` has room for `needed` entries, `segs` for
// kMaxSegmentsPerPacket (fewer: ShortChunks when they run out).
template <class Ring>
[[nodiscard]] Plan plan_packet(const Ring& ring, ring::RingIdx at, ring::RingIdx avail, unsigned needed,
                               const Needs& needs, std::span<const Chunk> chunks, std::span<Slot> slots,
                               std::span<Segment> segs) {
  Plan p;
  if (needed > avail) {
    p.verdict = Verdict::Wait;
    return p;
  }
  const std::uint32_t per_slot = kXenPageSize - needs.headroom;
  const unsigned ndata = needed - needs.extras;
  std::size_t c = 0;
  std::uint32_t cpos = 0;
  std::uint32_t left = needs.length;
  bool short_chunks = false;
  for (unsigned pos = 0; pos < needed; ++pos) {
    Slot& s = slots[pos];
    s = Slot{};
    if (pos >= 1 && pos <= needs.extras) {
      s.extra = true;
      continue;
    }
    const unsigned data_index = pos == 0 ? 0 : pos - needs.extras;
    const netif::RxRequest req = ring.template copy_request<netif::RxRequest>(at + pos);
    const std::uint32_t slot_bytes = std::min(left, per_slot);
    s.id = req.id;
    s.gref = req.gref;
    s.offset = needs.headroom;
    s.bytes = static_cast<std::uint16_t>(slot_bytes);
    s.more = data_index + 1 < ndata;
    for (std::uint32_t dpos = 0; dpos < slot_bytes && !short_chunks;) {
      while (c < chunks.size() && cpos >= chunks[c].len) {
        ++c;
        cpos = 0;
      }
      if (c >= chunks.size() || p.segments >= segs.size()) {
        short_chunks = true;
        break;
      }
      const std::uint32_t take = std::min(slot_bytes - dpos, chunks[c].len - cpos);
      segs[p.segments++] = Segment{static_cast<std::uint16_t>(pos), static_cast<std::uint16_t>(c), cpos,
                                   static_cast<std::uint16_t>(needs.headroom + dpos), static_cast<std::uint16_t>(take)};
      cpos += take;
      dpos += take;
    }
    left -= slot_bytes;
  }
  p.slots = needed;
  p.data_slots = ndata;
  if (short_chunks) p.verdict = Verdict::ShortChunks;
  return p;
}

}  // namespace pvback::netback::rx
