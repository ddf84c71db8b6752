// complete_checksum (after setup_partial_checksum with the pseudo-header written, as a sender
// leaves a partial packet) against a straightforward byte-at-a-time reference, contiguous and
// scattered in odd-sized chunks.
#include <gtest/gtest.h>

#include "netback/headers.hpp"
#include "tests/netback/offload/frames.hpp"

namespace pvback::test {
namespace {

// RFC 1071 the slow way: 16-bit big-endian words, odd trailing byte padded, end-around carry.
std::uint32_t ref_sum(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i < n; i += 2) {
    std::uint32_t word = std::uint32_t{p[i]} << 8;
    if (i + 1 < n) word |= p[i + 1];
    sum += word;
    sum = (sum & 0xffff) + (sum >> 16);
  }
  return sum;
}

// The L4 checksum a frame must carry: ~(pseudo-header + segment with a zero checksum field).
std::uint16_t reference_checksum(const BuiltFrame& f, bool v6, std::uint8_t proto) {
  const Bytes& b = f.bytes;
  const std::size_t ip = f.l2, l4 = f.l2 + f.l3;
  const std::size_t seg_len = b.size() - l4;
  Bytes pseudo;
  if (!v6) {
    pseudo.assign(b.begin() + static_cast<std::ptrdiff_t>(ip + 12), b.begin() + static_cast<std::ptrdiff_t>(ip + 20));
    pseudo.insert(pseudo.end(), {0, proto, static_cast<std::uint8_t>(seg_len >> 8), static_cast<std::uint8_t>(seg_len)});
  } else {
    pseudo.assign(b.begin() + static_cast<std::ptrdiff_t>(ip + 8), b.begin() + static_cast<std::ptrdiff_t>(ip + 40));
    pseudo.insert(pseudo.end(), {static_cast<std::uint8_t>(seg_len >> 24), static_cast<std::uint8_t>(seg_len >> 16),
                                 static_cast<std::uint8_t>(seg_len >> 8), static_cast<std::uint8_t>(seg_len), 0, 0, 0,
                                 proto});
  }
  Bytes seg(b.begin() + static_cast<std::ptrdiff_t>(l4), b.end());
  const std::size_t field = proto == 6 ? 16 : 6;
  seg[field] = seg[field + 1] = 0;
  std::uint32_t sum = ref_sum(pseudo.data(), pseudo.size());
  sum = ref_sum(seg.data(), seg.size(), sum);
  auto c = static_cast<std::uint16_t>(~sum & 0xffff);
  return c == 0 ? 0xffff : c;
}

// Does the finished frame verify (the sum over pseudo-header and segment is all ones)?
bool verifies(const Bytes& b, const BuiltFrame& f, bool v6, std::uint8_t proto) {
  BuiltFrame g = f;
  g.bytes = b;
  const std::size_t field = f.l2 + f.l3 + (proto == 6 ? 16 : 6);
  const std::uint16_t stored = get16(b, field);
  // The reference with the field zeroed, then folded with the stored value.
  const std::uint16_t expect = reference_checksum(g, v6, proto);
  return stored == expect;
}

TEST(CompleteChecksum, MatchesTheReferenceEveryWay) {
  std::mt19937 rng(42);
  int checked = 0;
  for (bool v6 : {false, true}) {
    for (std::uint8_t proto : {std::uint8_t{6}, std::uint8_t{17}}) {
      for (std::size_t payload : {0ul, 1ul, 2ul, 3ul, 57ul, 1400ul, 9001ul, 65000ul}) {
        FrameSpec s;
        s.ipv6 = v6;
        s.proto = proto;
        s.payload = payload;
        s.vlan_tags = payload % 3;
        s.seed = static_cast<std::uint32_t>(payload + proto);
        if (v6) s.ext_headers = {0};
        const BuiltFrame f = build_frame(s);
        const std::uint16_t expect = reference_checksum(f, v6, proto);
        for (int split = 0; split < 6; ++split) {
          std::vector<std::size_t> sizes;
          if (split == 1) sizes = {1, 1, 1, 1, 1, 3, 5, 7, 9, 11};
          if (split >= 2) sizes = random_split(rng, f.bytes.size());
          ScatteredPacket p(f.bytes, sizes);
          ASSERT_TRUE(netback::setup_partial_checksum(p.pkt, true));
          ASSERT_TRUE(netback::complete_checksum(p.pkt));
          EXPECT_FALSE(p.pkt.meta.csum_partial);
          EXPECT_TRUE(p.pkt.meta.csum_validated);
          const Bytes out = p.bytes();
          const std::size_t field = f.l2 + f.l3 + (proto == 6 ? 16 : 6);
          EXPECT_EQ(get16(out, field), expect) << "v6=" << v6 << " proto=" << int(proto) << " payload=" << payload
                                               << " split=" << split;
          EXPECT_TRUE(verifies(out, f, v6, proto));
          // Nothing else changed.
          Bytes masked = out;
          masked[field] = f.bytes[field];
          masked[field + 1] = f.bytes[field + 1];
          EXPECT_EQ(masked, f.bytes);
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 150);
}

TEST(CompleteChecksum, ZeroBecomesAllOnes) {
  // Search for a UDP payload whose checksum comes out as 0: it must be sent as 0xffff.
  FrameSpec s;
  s.proto = 17;
  s.payload = 2;
  bool found = false;
  for (std::uint32_t v = 0; v <= 0xffff && !found; ++v) {
    BuiltFrame f = build_frame(s);
    put16(f.bytes, f.bytes.size() - 2, static_cast<std::uint16_t>(v));
    Bytes zeroed = f.bytes;
    const std::size_t field = f.l2 + f.l3 + 6;
    zeroed[field] = zeroed[field + 1] = 0;
    // The raw ones-complement result before the 0 -> 0xffff rule.
    BuiltFrame g = f;
    g.bytes = zeroed;
    if (reference_checksum(g, false, 17) != 0xffff) continue;
    ScatteredPacket p(f.bytes, {3, 30, 1});
    ASSERT_TRUE(netback::setup_partial_checksum(p.pkt, true));
    ASSERT_TRUE(netback::complete_checksum(p.pkt));
    const Bytes out = p.bytes();
    EXPECT_EQ(get16(out, field), 0xffff);
    found = true;
  }
  EXPECT_TRUE(found);
}

TEST(CompleteChecksum, RefusesOutOfRangeOffsets) {
  FrameSpec s;
  s.payload = 10;
  const BuiltFrame f = build_frame(s);
  ScatteredPacket p(f.bytes, {5});
  EXPECT_FALSE(netback::complete_checksum(p.pkt));  // not partial
  p.pkt.meta.csum_partial = true;
  p.pkt.meta.csum_start = static_cast<std::uint16_t>(f.bytes.size());
  p.pkt.meta.csum_offset = 0;
  EXPECT_FALSE(netback::complete_checksum(p.pkt));
  p.pkt.meta.csum_start = static_cast<std::uint16_t>(f.bytes.size() - 2);
  p.pkt.meta.csum_offset = 1;  // the field would straddle the end
  EXPECT_FALSE(netback::complete_checksum(p.pkt));
  p.pkt.meta.csum_start = 0xffff;
  p.pkt.meta.csum_offset = 0xffff;
  EXPECT_FALSE(netback::complete_checksum(p.pkt));
  EXPECT_TRUE(p.pkt.meta.csum_partial);
  EXPECT_EQ(p.bytes(), f.bytes);
  // A 2-byte field exactly at the end is fine.
  p.pkt.meta.csum_start = static_cast<std::uint16_t>(f.bytes.size() - 3);
  p.pkt.meta.csum_offset = 1;
  EXPECT_TRUE(netback::complete_checksum(p.pkt));
}

}  // namespace
}  // namespace pvback::test
