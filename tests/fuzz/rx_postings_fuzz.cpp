// libFuzzer target: netback's planning of one RX packet into the buffers a guest posted
// (netback/rx_postings.hpp): slots_needed, then plan_packet on any ring contents.
//
// Input: 2 bytes of XDP headroom (little-endian, any value), 1 byte of flags (bit 0 feature-sg,
// bits 1-2 extras, bit 3: the last chunk takes what the others leave of the length, bits 4-7 the
// ring's size as a power of two), 3 bytes of packet length, 4 bytes of the ring index of the first
// posted request, 1 byte of chunk count, 2 bytes per chunk length, then 8-byte netif_rx_request
// entries (the published requests, at most a ring of them).
// Besides crashes: a refusal is the right one; a plan never reads a request more than once, at or
// past what was published, or for an extra slot; it takes exactly the slots it said it needs; each
// data slot answers the request at its position with the id and gref the ring held, and its bytes
// fit its buffer after the headroom; the copies put the packet's bytes in order, each inside its
// chunk and its buffer, and all of them unless the chunks are short.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "netback/rx_postings.hpp"
#include "tests/fuzz/check.hpp"

namespace {

using namespace pvback;
using namespace pvback::netback;

// The published requests of an RX ring: `count` entries from index `at` on.
struct FuzzRing {
  const std::uint8_t* entries = nullptr;
  ring::RingIdx at = 0;
  ring::RingIdx count = 0;
  mutable std::vector<std::uint8_t> reads;
  template <class T>
  T copy_request(ring::RingIdx idx) const {
    static_assert(sizeof(T) == sizeof(netif::RxRequest));
    const ring::RingIdx off = idx - at;
    CHECK(off < count);     // never past req_prod, never before req_cons
    CHECK(reads[off]++ == 0);  // each slot copied once
    T out;
    std::memcpy(&out, entries + std::size_t{off} * sizeof(T), sizeof(T));
    return out;
  }
  netif::RxRequest entry(ring::RingIdx off) const {
    netif::RxRequest r;
    std::memcpy(&r, entries + std::size_t{off} * sizeof(r), sizeof(r));
    return r;
  }
};

std::uint32_t le(const std::uint8_t* p, unsigned n) {
  std::uint32_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= std::uint32_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  constexpr std::size_t kHead = 11;
  if (size < kHead) return 0;
  rx::Needs needs;
  needs.headroom = static_cast<std::uint16_t>(le(data, 2));
  const std::uint8_t flags = data[2];
  needs.sg = (flags & 1) != 0;
  needs.extras = (flags >> 1) & 3;
  const bool fill_last = (flags & 8) != 0;
  const unsigned ring_size = 1u << ((flags >> 4) % 9);
  needs.length = le(data + 3, 3);
  const ring::RingIdx at = le(data + 6, 4);
  const unsigned nchunks = data[10] % (kMaxChunks + 1);
  std::size_t pos = kHead;
  if (size < pos + 2 * nchunks) return 0;
  std::vector<Chunk> chunks(nchunks);
  std::uint64_t chunk_bytes = 0;
  for (unsigned c = 0; c < nchunks; ++c, pos += 2) {
    chunks[c].len = le(data + pos, 2);
    if (fill_last && c + 1 == nchunks) chunks[c].len = needs.length > chunk_bytes ? needs.length - chunk_bytes : 0;
    chunk_bytes += chunks[c].len;
  }
  const ring::RingIdx avail =
      static_cast<ring::RingIdx>(std::min<std::size_t>((size - pos) / sizeof(netif::RxRequest), ring_size));
  FuzzRing ring{data + pos, at, avail, std::vector<std::uint8_t>(avail)};

  // How many slots: an independent statement of the rule.
  auto needed = rx::slots_needed(needs, ring_size);
  const std::uint32_t per_slot = needs.headroom < kXenPageSize ? kXenPageSize - needs.headroom : 0;
  if (!needed) {
    switch (needed.error()) {
      case rx::Refusal::BadLength: CHECK(needs.length == 0 || needs.length > kMaxPacketBytes); break;
      case rx::Refusal::BadHeadroom: CHECK(per_slot == 0); break;
      case rx::Refusal::TooManyExtras: CHECK(needs.extras > 2); break;
      case rx::Refusal::NeedsSg: CHECK(!needs.sg && needs.length > per_slot); break;
      case rx::Refusal::TooManySlots: break;  // checked below from the other side
    }
    if (needed.error() == rx::Refusal::TooManySlots) {
      const std::uint64_t slots = (std::uint64_t{needs.length} + per_slot - 1) / per_slot + needs.extras;
      CHECK(slots > rx::kMaxSlotsPerPacket || slots > ring_size);
    }
    return 0;
  }
  CHECK(needs.length >= 1 && needs.length <= kMaxPacketBytes && per_slot != 0 && needs.extras <= 2);
  const unsigned ndata = (needs.length + per_slot - 1) / per_slot;
  CHECK(*needed == ndata + needs.extras);
  CHECK(*needed <= rx::kMaxSlotsPerPacket && *needed <= ring_size);
  CHECK(needs.sg || ndata == 1);

  std::vector<rx::Slot> slots(*needed);
  std::vector<rx::Segment> segs(rx::kMaxSegmentsPerPacket);
  const rx::Plan plan = rx::plan_packet(ring, at, avail, *needed, needs, chunks, slots, segs);
  if (*needed > avail) {
    CHECK(plan.verdict == rx::Verdict::Wait);
    for (auto r : ring.reads) CHECK(r == 0);
    return 0;
  }
  CHECK(plan.verdict != rx::Verdict::Wait);
  CHECK(plan.slots == *needed && plan.slots <= avail);
  CHECK(plan.data_slots == ndata);
  CHECK(plan.segments <= segs.size());

  // The slots: data slot 0, the extras, data slots 1..; each data slot the request at its position.
  std::uint64_t bytes = 0;
  std::vector<unsigned> data_index(plan.slots, 0);
  unsigned seen_data = 0;
  for (unsigned s = 0; s < plan.slots; ++s) {
    const rx::Slot& slot = slots[s];
    const bool extra = s >= 1 && s <= needs.extras;
    CHECK(slot.extra == extra);
    CHECK(ring.reads[s] == (extra ? 0 : 1));
    if (extra) continue;
    const netif::RxRequest req = ring.entry(s);
    CHECK(slot.id == req.id && slot.gref == req.gref);
    CHECK(slot.offset == needs.headroom);
    CHECK(slot.bytes >= 1 && slot.bytes <= per_slot);
    CHECK(std::uint32_t{slot.offset} + slot.bytes <= kXenPageSize);
    data_index[s] = seen_data++;
    CHECK(slot.more == (seen_data < ndata));
    if (slot.more) CHECK(slot.bytes == per_slot);  // only the last buffer is partly filled
    bytes += slot.bytes;
  }
  for (unsigned r = plan.slots; r < avail; ++r) CHECK(ring.reads[r] == 0);
  CHECK(seen_data == ndata);
  CHECK(bytes == needs.length);

  // The copies: the packet's bytes in order, from its chunks in order, into the buffers in order.
  std::uint64_t copied = 0;
  unsigned chunk = 0;
  std::uint32_t chunk_off = 0;
  for (std::size_t k = 0; k < plan.segments; ++k) {
    const rx::Segment& seg = segs[k];
    CHECK(seg.len >= 1);
    CHECK(seg.slot < plan.slots && !slots[seg.slot].extra);
    const rx::Slot& slot = slots[seg.slot];
    // Where the packet's byte `copied` belongs: buffer data_index = copied / per_slot.
    CHECK(data_index[seg.slot] == copied / per_slot);
    CHECK(seg.offset == slot.offset + copied % per_slot);
    CHECK(std::uint32_t{seg.offset} + seg.len <= std::uint32_t{slot.offset} + slot.bytes);
    while (chunk < nchunks && chunk_off >= chunks[chunk].len) {
      ++chunk;
      chunk_off = 0;
    }
    CHECK(seg.chunk == chunk && seg.chunk_offset == chunk_off);
    CHECK(std::uint64_t{seg.chunk_offset} + seg.len <= chunks[seg.chunk].len);
    chunk_off += seg.len;
    copied += seg.len;
  }
  CHECK(copied <= needs.length);
  if (chunk_bytes >= needs.length) {
    CHECK(plan.verdict == rx::Verdict::Ok);
    CHECK(copied == needs.length);
  } else {
    CHECK(plan.verdict == rx::Verdict::ShortChunks);
    CHECK(copied == chunk_bytes);
  }
  return 0;
}
