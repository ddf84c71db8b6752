// Malformed frames never make the parser or the offloads read or write outside the packet: random
// bytes, random truncations and byte flips of valid frames, every chunking, and inconsistent
// PacketBuffers. Each chunk is its own exact-size allocation, so the ASan build catches any stray
// access; the plain build checks the results stay within the frame.
#include <gtest/gtest.h>

#include "netback/headers.hpp"
#include "ring/netif.hpp"
#include "tests/netback/offload/frames.hpp"

namespace pvback::test {
namespace {

constexpr std::uint8_t kKey[40] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};

void exercise(const Bytes& frame, std::mt19937& rng) {
  ScatteredPacket p(frame, random_split(rng, frame.size()));
  auto h = netback::parse_headers(p.pkt);
  if (h) {
    const std::size_t end = std::size_t{h->l2_len} + h->l3_len + h->l4_len;
    EXPECT_LE(end, frame.size());
    EXPECT_LE(h->l4_total + std::size_t{h->l2_len} + h->l3_len, frame.size() + 0u);
    (void)netback::flow_hash(*h, kKey, netif::kHashTypeAll);
  }
  if (netback::setup_partial_checksum(p.pkt, (rng() & 1) != 0)) {
    EXPECT_TRUE(h);
    EXPECT_LE(std::size_t{p.pkt.meta.csum_start} + p.pkt.meta.csum_offset + 2, frame.size());
    EXPECT_TRUE(netback::complete_checksum(p.pkt));
  }
  // Arbitrary offsets from a confused caller.
  p.pkt.meta.csum_partial = true;
  p.pkt.meta.csum_start = static_cast<std::uint16_t>(rng());
  p.pkt.meta.csum_offset = static_cast<std::uint16_t>(rng() % 64);
  (void)netback::complete_checksum(p.pkt);
  EXPECT_EQ(p.bytes().size(), frame.size());
}

TEST(OffloadFuzz, RandomBytes) {
  std::mt19937 rng(1);
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng() % 400);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    // Often make it look like IP so the deeper parsers are reached.
    if (b.size() >= 15 && (i % 3) != 0) {
      const bool v6 = (i % 2) != 0;
      put16(b, 12, v6 ? 0x86dd : 0x0800);
      b[14] = static_cast<std::uint8_t>((v6 ? 0x60 : 0x40) | (b[14] & 0x0f));
    }
    exercise(b, rng);
  }
}

TEST(OffloadFuzz, TruncatedAndFlippedValidFrames) {
  std::mt19937 rng(2);
  for (int i = 0; i < 4000; ++i) {
    FrameSpec s;
    s.ipv6 = (rng() & 1) != 0;
    s.proto = (rng() & 1) != 0 ? 6 : 17;
    s.vlan_tags = rng() % 3;
    s.tcp_option_words = rng() % 11;
    s.ip_options = rng() % 11;
    if (s.ipv6) {
      static constexpr std::uint8_t kExt[] = {0, 43, 44, 51, 60};
      for (unsigned n = rng() % 4; n > 0; --n) s.ext_headers.push_back(kExt[rng() % 5]);
    }
    s.v4_more_fragments = rng() % 8 == 0;
    s.payload = rng() % 300;
    s.seed = static_cast<std::uint32_t>(i);
    Bytes b = build_frame(s).bytes;
    exercise(b, rng);
    Bytes cut(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(rng() % (b.size() + 1)));
    exercise(cut, rng);
    for (int flips = 1 + rng() % 4; flips > 0; --flips) b[rng() % std::min<std::size_t>(b.size(), 140)] ^= 1u << (rng() % 8);
    exercise(b, rng);
  }
}

TEST(OffloadFuzz, InconsistentPacketBuffers) {
  std::mt19937 rng(3);
  FrameSpec s;
  s.payload = 200;
  const Bytes frame = build_frame(s).bytes;
  for (int i = 0; i < 2000; ++i) {
    ScatteredPacket p(frame, random_split(rng, frame.size()));
    switch (i % 4) {
      case 0: p.pkt.length = static_cast<std::uint32_t>(rng()); break;          // more than the chunks hold
      case 1: p.pkt.nr_chunks = static_cast<unsigned>(rng() % 1000); break;     // beyond kMaxChunks
      case 2: p.pkt.chunks[rng() % p.pkt.nr_chunks].data = nullptr; break;      // a hole
      default: p.pkt.length = static_cast<std::uint32_t>(rng() % frame.size()); break;  // less
    }
    if (p.pkt.nr_chunks > netback::kMaxChunks) {
      // Reading chunks past kMaxChunks is impossible by construction; only the count is wrong.
      (void)netback::parse_headers(p.pkt);
      continue;
    }
    (void)netback::parse_headers(p.pkt);
    (void)netback::setup_partial_checksum(p.pkt, true);
    p.pkt.meta.csum_partial = true;
    p.pkt.meta.csum_start = static_cast<std::uint16_t>(rng() % 300);
    p.pkt.meta.csum_offset = static_cast<std::uint16_t>(rng() % 300);
    (void)netback::complete_checksum(p.pkt);
  }
}

}  // namespace
}  // namespace pvback::test
