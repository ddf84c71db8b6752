// libFuzzer target: netback's packet header parser and software offloads (netback/headers.hpp) on
// any frame a guest sends, scattered in chunks as an exit hands them over.
//
// Input: 9 bytes of layout (byte 0: chunks - 1, modulo 8; bytes 1-7: the size of each chunk but the
// last, which takes the rest; byte 8: options), then the frame. Each chunk is its own exact-size
// allocation, so ASan reports any access outside the frame. Besides that, what the parser returns
// must lie inside the frame, and a checksum set up for offload must be completable.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "netback/headers.hpp"
#include "tests/fuzz/check.hpp"
#include "ring/netif.hpp"

namespace {

using namespace pvback;
using namespace pvback::netback;

constexpr std::size_t kLayoutBytes = 9;
constexpr std::uint8_t kKey[40] = {0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67,
                                   0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < kLayoutBytes || size - kLayoutBytes > kMaxPacketBytes) return 0;
  const std::uint8_t* layout = data;
  const std::uint8_t* frame = data + kLayoutBytes;
  const std::size_t length = size - kLayoutBytes;

  std::vector<std::unique_ptr<std::byte[]>> owned;
  PacketBuffer pkt;
  pkt.length = static_cast<std::uint32_t>(length);
  const unsigned chunks = 1 + layout[0] % 8;
  std::size_t at = 0;
  for (unsigned c = 0; c < chunks && (at < length || c == 0); ++c) {
    const std::size_t n = c + 1 == chunks ? length - at : std::min<std::size_t>(layout[1 + c], length - at);
    owned.push_back(std::make_unique<std::byte[]>(n));
    if (n != 0) std::memcpy(owned.back().get(), frame + at, n);
    pkt.chunks[pkt.nr_chunks++] = Chunk{owned.back().get(), static_cast<std::uint32_t>(n)};
    at += n;
  }
  if (at < length) {  // a short last chunk from the layout: the rest goes into one more
    owned.push_back(std::make_unique<std::byte[]>(length - at));
    std::memcpy(owned.back().get(), frame + at, length - at);
    pkt.chunks[pkt.nr_chunks++] = Chunk{owned.back().get(), static_cast<std::uint32_t>(length - at)};
  }

  const auto h = parse_headers(pkt);
  if (h) {
    CHECK(std::size_t{h->l2_len} + h->l3_len + h->l4_len <= length);
    CHECK(h->l4_total + std::size_t{h->l2_len} + h->l3_len <= length);
    CHECK(!(h->ipv4 && h->ipv6));
    if (h->l3_len == 0) CHECK(h->l4_proto == 0 && h->l4_len == 0);
    (void)flow_hash(*h, kKey, netif::kHashTypeAll);
    (void)flow_hash(*h, std::span(kKey, 4), layout[8]);
  }
  const bool pseudo = (layout[8] & 1) != 0;
  if (setup_partial_checksum(pkt, pseudo)) {
    CHECK(h.has_value());
    CHECK(pkt.meta.csum_partial);
    CHECK(std::size_t{pkt.meta.csum_start} + pkt.meta.csum_offset + 2 <= length);
    CHECK(complete_checksum(pkt));
    CHECK(!pkt.meta.csum_partial && pkt.meta.csum_validated);
  }
  // Offsets from a confused caller (an exit's metadata) never reach outside the frame either.
  if ((layout[8] & 2) != 0) {
    pkt.meta = PacketMeta{};
    pkt.meta.csum_partial = true;
    std::memcpy(&pkt.meta.csum_start, layout + 1, 2);
    pkt.meta.csum_offset = layout[3] % 64;
    (void)complete_checksum(pkt);
  }
  return 0;
}
