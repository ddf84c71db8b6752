// parse_headers and setup_partial_checksum on well-formed and malformed frames, contiguous and
// scattered.
#include <arpa/inet.h>

#include <gtest/gtest.h>

#include "netback/headers.hpp"
#include "tests/netback/offload/frames.hpp"

namespace pvback::test {
namespace {

using netback::parse_headers;
using netback::ParsedHeaders;

std::optional<ParsedHeaders> parse(const Bytes& frame) {
  ScatteredPacket p(frame, {});
  return parse_headers(p.pkt);
}

TEST(ParseHeaders, Ipv4Tcp) {
  FrameSpec s;
  s.payload = 100;
  auto f = build_frame(s);
  auto h = parse(f.bytes);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l2_len, 14);
  EXPECT_EQ(h->ethertype, 0x0800);
  EXPECT_TRUE(h->ipv4);
  EXPECT_FALSE(h->ipv6);
  EXPECT_EQ(h->l3_len, 20);
  EXPECT_EQ(h->l4_proto, 6);
  EXPECT_EQ(h->l4_len, 20);
  EXPECT_EQ(h->l4_total, 120u);
  EXPECT_FALSE(h->fragment);
  EXPECT_EQ(0, std::memcmp(h->src_addr, s.src, 4));
  EXPECT_EQ(0, std::memcmp(h->dst_addr, s.dst, 4));
  EXPECT_EQ(ntohs(h->src_port), 1234);
  EXPECT_EQ(ntohs(h->dst_port), 80);
}

TEST(ParseHeaders, VlanTagsOptionsAndTcpOptions) {
  for (unsigned tags : {1u, 2u}) {
    FrameSpec s;
    s.vlan_tags = tags;
    s.ip_options = 3;
    s.tcp_option_words = 10;  // a 60-byte TCP header
    s.payload = 5;
    auto f = build_frame(s);
    auto h = parse(f.bytes);
    ASSERT_TRUE(h) << tags;
    EXPECT_EQ(h->l2_len, 14 + 4 * tags);
    EXPECT_EQ(h->ethertype, 0x0800);
    EXPECT_EQ(h->l3_len, 32);
    EXPECT_EQ(h->l4_len, 60);
  }
}

TEST(ParseHeaders, ThreeVlanTagsIsNotIp) {
  FrameSpec s;
  s.vlan_tags = 3;
  auto h = parse(build_frame(s).bytes);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l2_len, 22);
  EXPECT_EQ(h->ethertype, 0x8100);
  EXPECT_EQ(h->l3_len, 0);
  EXPECT_FALSE(h->ipv4);
}

TEST(ParseHeaders, NonIpFrame) {
  Bytes arp(60, 0);
  put16(arp, 12, 0x0806);
  auto h = parse(arp);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l2_len, 14);
  EXPECT_EQ(h->ethertype, 0x0806);
  EXPECT_EQ(h->l3_len, 0);
  EXPECT_EQ(h->l4_proto, 0);
}

TEST(ParseHeaders, ShortFrames) {
  EXPECT_FALSE(parse(Bytes{}));
  EXPECT_FALSE(parse(Bytes(13, 0)));
  Bytes tagged(16, 0);
  put16(tagged, 12, 0x8100);  // tag cut short
  EXPECT_FALSE(parse(tagged));
}

TEST(ParseHeaders, Udp) {
  FrameSpec s;
  s.proto = 17;
  s.payload = 33;
  auto h = parse(build_frame(s).bytes);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l4_proto, 17);
  EXPECT_EQ(h->l4_len, 8);
  EXPECT_EQ(ntohs(h->src_port), 1234);
}

TEST(ParseHeaders, OtherIpProtocolHasAddressesOnly) {
  FrameSpec s;
  s.proto = 1;  // ICMP
  s.payload = 8;
  auto h = parse(build_frame(s).bytes);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l4_proto, 1);
  EXPECT_EQ(h->l4_len, 0);
  EXPECT_EQ(h->src_port, 0);
}

TEST(ParseHeaders, Ipv4Fragments) {
  for (auto [mf, off] : {std::pair{true, 0}, std::pair{true, 100}, std::pair{false, 100}}) {
    FrameSpec s;
    s.v4_more_fragments = mf;
    s.v4_frag_offset = static_cast<std::uint16_t>(off);
    s.payload = 16;
    auto h = parse(build_frame(s).bytes);
    ASSERT_TRUE(h);
    EXPECT_TRUE(h->fragment);
    EXPECT_EQ(h->l4_proto, 0);
    EXPECT_EQ(h->l4_len, 0);
    EXPECT_EQ(h->src_port, 0);
    EXPECT_TRUE(h->ipv4);
  }
}

TEST(ParseHeaders, Ipv4BadHeaders) {
  FrameSpec s;
  s.payload = 10;
  auto good = build_frame(s).bytes;
  {
    auto b = good;
    b[14] = 0x44;  // IHL 4
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b[14] = 0x4f;  // IHL 15: 60 bytes, beyond tot_len
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b[14] = 0x65;  // version 6 under an IPv4 ethertype
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    put16(b, 16, static_cast<std::uint16_t>(get16(b, 16) + 1));  // claims one byte more than the frame
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    put16(b, 16, 19);  // shorter than its own header
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b[14 + 20 + 12] = 0x40;  // TCP data offset 4
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b[14 + 20 + 12] = 0xf0;  // TCP data offset 15: 60 bytes, beyond the datagram
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b.push_back(0);  // Ethernet padding after the datagram is fine
    b.push_back(0);
    EXPECT_TRUE(parse(b));
  }
}

TEST(ParseHeaders, Ipv6TcpWithExtensionHeaders) {
  FrameSpec s;
  s.ipv6 = true;
  std::uint8_t src[16] = {0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 7};
  std::memcpy(s.src, src, 16);
  s.ext_headers = {0, 43, 51, 60};
  s.payload = 20;
  auto f = build_frame(s);
  auto h = parse(f.bytes);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->ipv6);
  EXPECT_EQ(h->ethertype, 0x86dd);
  EXPECT_EQ(h->l3_len, 40 + 16 + 16 + 24 + 16);
  EXPECT_EQ(h->l4_proto, 6);
  EXPECT_EQ(h->l4_len, 20);
  EXPECT_EQ(h->l4_total, 40u);
  EXPECT_EQ(0, std::memcmp(h->src_addr, src, 16));
  EXPECT_FALSE(h->fragment);
}

TEST(ParseHeaders, Ipv6Fragments) {
  FrameSpec s;
  s.ipv6 = true;
  s.ext_headers = {44};
  s.payload = 8;
  auto f = build_frame(s);
  auto h = parse(f.bytes);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->fragment);
  EXPECT_EQ(h->l4_proto, 0);
  EXPECT_EQ(h->l3_len, 48);
  // An atomic fragment (offset 0, M clear) is a whole datagram.
  auto atomic = f.bytes;
  put16(atomic, 14 + 40 + 2, 0);
  h = parse(atomic);
  ASSERT_TRUE(h);
  EXPECT_FALSE(h->fragment);
  EXPECT_EQ(h->l4_proto, 6);
  EXPECT_EQ(h->l4_len, 20);
  // A later fragment.
  auto later = f.bytes;
  put16(later, 14 + 40 + 2, 0x0100);
  h = parse(later);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->fragment);
}

TEST(ParseHeaders, Ipv6BadHeaders) {
  FrameSpec s;
  s.ipv6 = true;
  s.ext_headers = {0};
  s.payload = 4;
  auto good = build_frame(s).bytes;
  ASSERT_TRUE(parse(good));
  {
    auto b = good;
    b[14 + 40 + 1] = 200;  // extension header far past the datagram
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    put16(b, 14 + 4, static_cast<std::uint16_t>(get16(b, 18) + 1));  // payload beyond the frame
    EXPECT_FALSE(parse(b));
  }
  {
    auto b = good;
    b.resize(14 + 39);  // header cut short
    EXPECT_FALSE(parse(b));
  }
  {
    // A chain of 17 hop-by-hop-like headers (each 8 bytes) never ends in TCP: refused, not looped.
    Bytes b(14 + 40 + 17 * 8 + 20, 0);
    put16(b, 12, 0x86dd);
    b[14] = 0x60;
    put16(b, 18, static_cast<std::uint16_t>(17 * 8 + 20));
    b[14 + 6] = 60;
    for (int i = 0; i < 17; ++i) b[14 + 40 + 8 * i] = 60;
    EXPECT_FALSE(parse(b));
  }
}

TEST(ParseHeaders, Ipv6JumboPayloadLengthZero) {
  FrameSpec s;
  s.ipv6 = true;
  s.payload = 100;
  auto b = build_frame(s).bytes;
  put16(b, 18, 0);
  auto h = parse(b);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l4_len, 20);
  EXPECT_EQ(h->l4_total, 120u);
}

TEST(ParseHeaders, SameResultAtEverySplit) {
  FrameSpec s;
  s.vlan_tags = 2;
  s.ipv6 = true;
  s.ext_headers = {0, 60};
  s.tcp_option_words = 3;
  s.payload = 10;
  auto f = build_frame(s);
  auto whole = parse(f.bytes);
  ASSERT_TRUE(whole);
  for (std::size_t a = 1; a < f.bytes.size(); ++a) {
    for (std::size_t b : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{17}}) {
      ScatteredPacket p(f.bytes, {a, b, 1, 5});
      auto h = parse_headers(p.pkt);
      ASSERT_TRUE(h) << a << "/" << b;
      EXPECT_EQ(h->l2_len, whole->l2_len);
      EXPECT_EQ(h->l3_len, whole->l3_len);
      EXPECT_EQ(h->l4_len, whole->l4_len);
      EXPECT_EQ(h->src_port, whole->src_port);
      EXPECT_EQ(0, std::memcmp(h->src_addr, whole->src_addr, 16));
      EXPECT_EQ(0, std::memcmp(h->dst_addr, whole->dst_addr, 16));
    }
  }
}

TEST(ParseHeaders, LengthBeyondChunksIsBoundedByChunks) {
  FrameSpec s;
  s.payload = 50;
  auto f = build_frame(s);
  ScatteredPacket p(f.bytes, {30});
  p.pkt.length += 1000;  // a broken caller: the chunks hold less than `length`
  auto h = parse_headers(p.pkt);
  ASSERT_TRUE(h);  // the datagram itself is whole
  p.pkt.nr_chunks = 1;  // now only 30 bytes: the IPv4 header is cut
  EXPECT_FALSE(parse_headers(p.pkt));
}

TEST(SetupPartialChecksum, TcpAndUdpOverV4AndV6) {
  for (bool v6 : {false, true}) {
    for (std::uint8_t proto : {std::uint8_t{6}, std::uint8_t{17}}) {
      FrameSpec s;
      s.ipv6 = v6;
      s.proto = proto;
      s.vlan_tags = 1;
      s.payload = 64;
      if (v6) s.ext_headers = {0};
      auto f = build_frame(s);
      ScatteredPacket p(f.bytes, {7, 9});
      ASSERT_TRUE(netback::setup_partial_checksum(p.pkt));
      EXPECT_TRUE(p.pkt.meta.csum_partial);
      EXPECT_EQ(p.pkt.meta.csum_start, f.l2 + f.l3);
      EXPECT_EQ(p.pkt.meta.csum_offset, proto == 6 ? 16 : 6);
      EXPECT_EQ(p.pkt.meta.l2_len, f.l2);
      EXPECT_EQ(p.pkt.meta.l3_len, f.l3);
      EXPECT_EQ(p.pkt.meta.l4_len, f.l4);
      EXPECT_EQ(p.bytes(), f.bytes);  // without write_pseudo_header nothing is written
    }
  }
}

TEST(SetupPartialChecksum, RefusesWhatItCannotChecksum) {
  FrameSpec frag;
  frag.v4_more_fragments = true;
  frag.payload = 8;
  FrameSpec icmp;
  icmp.proto = 1;
  icmp.payload = 8;
  Bytes arp(60, 0);
  put16(arp, 12, 0x0806);
  for (const Bytes& b : {build_frame(frag).bytes, build_frame(icmp).bytes, arp, Bytes(10, 0)}) {
    ScatteredPacket p(b, {});
    EXPECT_FALSE(netback::setup_partial_checksum(p.pkt));
    EXPECT_FALSE(p.pkt.meta.csum_partial);
    EXPECT_EQ(p.pkt.meta.csum_start, 0);
  }
}

}  // namespace
}  // namespace pvback::test
