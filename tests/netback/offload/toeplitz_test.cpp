// toeplitz_hash against Microsoft's RSS verification suite ("Verifying the RSS Hash Calculation"),
// and flow_hash's choice of tuple.
#include <arpa/inet.h>

#include <array>
#include <string>

#include <gtest/gtest.h>

#include "netback/headers.hpp"
#include "ring/netif.hpp"
#include "tests/netback/offload/frames.hpp"

namespace pvback::test {
namespace {

// The verification suite's key (40 bytes).
constexpr std::array<std::uint8_t, 40> kRssKey = {
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb,
    0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa};

struct Vector {
  const char* src;
  std::uint16_t sport;
  const char* dst;
  std::uint16_t dport;
  std::uint32_t ip_only;
  std::uint32_t with_tcp;
};

constexpr Vector kIpv4[] = {
    {"66.9.149.187", 2794, "161.142.100.80", 1766, 0x323e8fc2, 0x51ccc178},
    {"199.92.111.2", 14230, "65.69.140.83", 4739, 0xd718262a, 0xc626b0ea},
    {"24.19.198.95", 12898, "12.22.207.184", 38024, 0xd2d0a5de, 0x5c2b394a},
    {"38.27.205.30", 48228, "209.142.163.6", 2217, 0x82989176, 0xafc7327f},
    {"153.39.163.191", 44251, "202.188.127.2", 1303, 0x5d1809c5, 0x10e828a2},
};

constexpr Vector kIpv6[] = {
    {"3ffe:2501:200:1fff::7", 2794, "3ffe:2501:200:3::1", 1766, 0x2cc18cd5, 0x40207d3d},
    {"3ffe:501:8::260:97ff:fe40:efab", 14230, "ff02::1", 4739, 0x0f0c461c, 0xdde51bbf},
    {"3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, "fe80::200:f8ff:fe21:67cf", 38024, 0x4b61e985, 0x02d1feef},
};

// The hash input of netif.h: source address, destination address[, source port, destination port].
Bytes tuple(int family, const Vector& v, bool ports) {
  const std::size_t n = family == AF_INET ? 4 : 16;
  Bytes in(2 * n + (ports ? 4 : 0));
  EXPECT_EQ(inet_pton(family, v.src, in.data()), 1);
  EXPECT_EQ(inet_pton(family, v.dst, in.data() + n), 1);
  if (ports) {
    put16(in, 2 * n, v.sport);
    put16(in, 2 * n + 2, v.dport);
  }
  return in;
}

TEST(Toeplitz, MicrosoftIpv4Vectors) {
  for (const auto& v : kIpv4) {
    EXPECT_EQ(netback::toeplitz_hash(kRssKey, tuple(AF_INET, v, false)), v.ip_only) << v.src;
    EXPECT_EQ(netback::toeplitz_hash(kRssKey, tuple(AF_INET, v, true)), v.with_tcp) << v.src;
  }
}

TEST(Toeplitz, MicrosoftIpv6Vectors) {
  for (const auto& v : kIpv6) {
    EXPECT_EQ(netback::toeplitz_hash(kRssKey, tuple(AF_INET6, v, false)), v.ip_only) << v.src;
    EXPECT_EQ(netback::toeplitz_hash(kRssKey, tuple(AF_INET6, v, true)), v.with_tcp) << v.src;
  }
}

// The definition, one input bit at a time, with the key as a long bit string (zero past its end).
std::uint32_t reference_toeplitz(std::span<const std::uint8_t> key, std::span<const std::uint8_t> in) {
  auto key_bit = [&](std::size_t i) -> std::uint32_t {
    return i / 8 < key.size() ? (key[i / 8] >> (7 - i % 8)) & 1u : 0u;
  };
  std::uint32_t hash = 0;
  for (std::size_t i = 0; i < in.size() * 8; ++i) {
    if (((in[i / 8] >> (7 - i % 8)) & 1u) == 0) continue;
    std::uint32_t window = 0;
    for (std::size_t j = 0; j < 32; ++j) window = (window << 1) | key_bit(i + j);
    hash ^= window;
  }
  return hash;
}

TEST(Toeplitz, MatchesTheBitwiseDefinitionForShortAndLongKeys) {
  std::mt19937 rng(7);
  for (int round = 0; round < 500; ++round) {
    Bytes key(rng() % 41), in(rng() % 40);
    for (auto& b : key) b = static_cast<std::uint8_t>(rng());
    for (auto& b : in) b = static_cast<std::uint8_t>(rng());
    EXPECT_EQ(netback::toeplitz_hash(key, in), reference_toeplitz(key, in));
  }
  EXPECT_EQ(netback::toeplitz_hash({}, Bytes{1, 2, 3}), 0u);  // an empty key hashes everything to 0
}

netback::ParsedHeaders headers_for(int family, const Vector& v, std::uint8_t proto, bool fragment = false) {
  FrameSpec s;
  s.ipv6 = family == AF_INET6;
  s.proto = proto;
  s.sport = v.sport;
  s.dport = v.dport;
  s.v4_more_fragments = fragment;
  s.payload = 4;
  EXPECT_EQ(inet_pton(family, v.src, s.src), 1);
  EXPECT_EQ(inet_pton(family, v.dst, s.dst), 1);
  ScatteredPacket p(build_frame(s).bytes, {});
  auto h = netback::parse_headers(p.pkt);
  EXPECT_TRUE(h);
  return h.value_or(netback::ParsedHeaders{});
}

TEST(FlowHash, PicksTheMostSpecificEnabledTuple) {
  using namespace netif;
  const auto& v4 = kIpv4[0];
  auto tcp4 = headers_for(AF_INET, v4, 6);
  auto r = netback::flow_hash(tcp4, kRssKey, kHashTypeAll);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, v4.with_tcp);
  EXPECT_EQ(r->type, kHashTypeBitIpv4Tcp);
  r = netback::flow_hash(tcp4, kRssKey, kHashTypeIpv4);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, v4.ip_only);
  EXPECT_EQ(r->type, kHashTypeBitIpv4);
  EXPECT_FALSE(netback::flow_hash(tcp4, kRssKey, kHashTypeIpv6 | kHashTypeIpv6Tcp));
  // Only TCP enabled, but the packet is UDP: no type fits.
  auto udp4 = headers_for(AF_INET, v4, 17);
  EXPECT_FALSE(netback::flow_hash(udp4, kRssKey, kHashTypeIpv4Tcp));
  r = netback::flow_hash(udp4, kRssKey, kHashTypeIpv4 | kHashTypeIpv4Tcp);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, v4.ip_only);
  EXPECT_EQ(r->type, kHashTypeBitIpv4);
  // A fragment has no ports: addresses only.
  auto frag = headers_for(AF_INET, v4, 6, true);
  r = netback::flow_hash(frag, kRssKey, kHashTypeAll);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->type, kHashTypeBitIpv4);
  EXPECT_EQ(r->value, v4.ip_only);

  const auto& v6 = kIpv6[1];
  auto tcp6 = headers_for(AF_INET6, v6, 6);
  r = netback::flow_hash(tcp6, kRssKey, kHashTypeAll);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, v6.with_tcp);
  EXPECT_EQ(r->type, kHashTypeBitIpv6Tcp);
  r = netback::flow_hash(tcp6, kRssKey, kHashTypeIpv6 | kHashTypeIpv4Tcp);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->value, v6.ip_only);
  EXPECT_EQ(r->type, kHashTypeBitIpv6);
  EXPECT_FALSE(netback::flow_hash(tcp6, kRssKey, kHashTypeIpv4 | kHashTypeIpv4Tcp));

  netback::ParsedHeaders arp;
  arp.l2_len = 14;
  arp.ethertype = 0x0806;
  EXPECT_FALSE(netback::flow_hash(arp, kRssKey, kHashTypeAll));
}

}  // namespace
}  // namespace pvback::test
