// Building Ethernet frames for the offload tests, and holding them scattered in chunks the way an
// exit does (each chunk its own exact-size allocation, so ASan sees any read past a chunk).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <random>
#include <vector>

#include "netback/packet.hpp"

namespace pvback::test {

using Bytes = std::vector<std::uint8_t>;

inline void put16(Bytes& b, std::size_t at, std::uint16_t v) {
  b[at] = static_cast<std::uint8_t>(v >> 8);
  b[at + 1] = static_cast<std::uint8_t>(v);
}
inline std::uint16_t get16(const Bytes& b, std::size_t at) { return static_cast<std::uint16_t>(b[at] << 8 | b[at + 1]); }

struct FrameSpec {
  unsigned vlan_tags = 0;       // 0..3 (outer 0x88a8 when 2+)
  bool ipv6 = false;
  std::uint8_t proto = 6;       // 6 TCP, 17 UDP, other
  unsigned ip_options = 0;      // IPv4: 32-bit words of options
  std::vector<std::uint8_t> ext_headers;  // IPv6: next-header values of extension headers, in order
  bool v4_more_fragments = false;
  std::uint16_t v4_frag_offset = 0;       // in 8-byte units
  unsigned tcp_option_words = 0;
  std::size_t payload = 0;
  std::uint8_t src[16] = {192, 0, 2, 1};
  std::uint8_t dst[16] = {198, 51, 100, 7};
  std::uint16_t sport = 1234, dport = 80;
  std::uint32_t seed = 1;       // payload bytes
};

struct BuiltFrame {
  Bytes bytes;
  std::size_t l2 = 0, l3 = 0, l4 = 0;  // header lengths
};

inline BuiltFrame build_frame(const FrameSpec& s) {
  BuiltFrame f;
  Bytes& b = f.bytes;
  b.assign(12, 0);
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(0x02 + i), b[6 + i] = static_cast<std::uint8_t>(0x12 + i);
  for (unsigned t = 0; t < s.vlan_tags; ++t) {
    const std::uint16_t tpid = (t == 0 && s.vlan_tags >= 2) ? 0x88a8 : 0x8100;
    b.push_back(static_cast<std::uint8_t>(tpid >> 8));
    b.push_back(static_cast<std::uint8_t>(tpid));
    b.push_back(0x00);
    b.push_back(static_cast<std::uint8_t>(10 + t));
  }
  b.push_back(s.ipv6 ? 0x86 : 0x08);
  b.push_back(s.ipv6 ? 0xdd : 0x00);
  f.l2 = b.size();

  const std::size_t l4_hdr = s.proto == 6 ? 20 + 4 * s.tcp_option_words : s.proto == 17 ? 8 : 0;
  const std::size_t ip_start = b.size();
  std::uint8_t last_proto = s.proto;
  if (!s.ipv6) {
    const std::size_t ihl = 20 + 4 * s.ip_options;
    b.resize(ip_start + ihl, 0);
    b[ip_start] = static_cast<std::uint8_t>(0x40 | (ihl / 4));
    put16(b, ip_start + 2, static_cast<std::uint16_t>(ihl + l4_hdr + s.payload));
    put16(b, ip_start + 6,
          static_cast<std::uint16_t>((s.v4_more_fragments ? 0x2000 : 0) | (s.v4_frag_offset & 0x1fff)));
    b[ip_start + 8] = 64;
    b[ip_start + 9] = s.proto;
    std::memcpy(&b[ip_start + 12], s.src, 4);
    std::memcpy(&b[ip_start + 16], s.dst, 4);
    for (std::size_t i = 20; i < ihl; ++i) b[ip_start + i] = 1;  // NOP options
  } else {
    b.resize(ip_start + 40, 0);
    b[ip_start] = 0x60;
    b[ip_start + 7] = 64;
    std::memcpy(&b[ip_start + 8], s.src, 16);
    std::memcpy(&b[ip_start + 24], s.dst, 16);
    std::size_t nh_at = ip_start + 6;
    for (std::uint8_t ext : s.ext_headers) {
      b[nh_at] = ext;
      const std::size_t at = b.size();
      if (ext == 44) {  // fragment header: first fragment of a fragmented datagram (M set)
        b.resize(at + 8, 0);
        put16(b, at + 2, 0x0001);
      } else if (ext == 51) {  // AH: payload length 4 -> (4 + 2) * 4 = 24 bytes
        b.resize(at + 24, 0);
        b[at + 1] = 4;
      } else {  // hop-by-hop, routing, destination options: 16 bytes
        b.resize(at + 16, 0);
        b[at + 1] = 1;
      }
      nh_at = at;
    }
    b[nh_at] = last_proto;
    put16(b, ip_start + 4, static_cast<std::uint16_t>(b.size() - ip_start - 40 + l4_hdr + s.payload));
  }
  f.l3 = b.size() - ip_start;
  const std::size_t l4_start = b.size();
  b.resize(l4_start + l4_hdr, 0);
  if (s.proto == 6) {
    put16(b, l4_start, s.sport);
    put16(b, l4_start + 2, s.dport);
    b[l4_start + 12] = static_cast<std::uint8_t>((5 + s.tcp_option_words) << 4);
    b[l4_start + 13] = 0x18;
    for (std::size_t i = 20; i < l4_hdr; ++i) b[l4_start + i] = 1;
  } else if (s.proto == 17) {
    put16(b, l4_start, s.sport);
    put16(b, l4_start + 2, s.dport);
    put16(b, l4_start + 4, static_cast<std::uint16_t>(8 + s.payload));
  }
  f.l4 = l4_hdr;
  std::mt19937 rng(s.seed);
  for (std::size_t i = 0; i < s.payload; ++i) b.push_back(static_cast<std::uint8_t>(rng()));
  return f;
}

// A frame held in chunks of the given sizes (the last chunk takes the rest).
class ScatteredPacket {
 public:
  ScatteredPacket(const Bytes& frame, const std::vector<std::size_t>& sizes) {
    std::size_t at = 0;
    for (std::size_t i = 0; at < frame.size() || (i == 0 && frame.empty()); ++i) {
      std::size_t n = i < sizes.size() ? std::min(sizes[i], frame.size() - at) : frame.size() - at;
      if (i + 1 == netback::kMaxChunks) n = frame.size() - at;
      storage_.emplace_back(frame.begin() + static_cast<std::ptrdiff_t>(at),
                            frame.begin() + static_cast<std::ptrdiff_t>(at + n));
      at += n;
      if (frame.empty()) break;
    }
    pkt.length = static_cast<std::uint32_t>(frame.size());
    pkt.nr_chunks = static_cast<unsigned>(storage_.size());
    for (std::size_t i = 0; i < storage_.size(); ++i) {
      // An empty vector may have no storage: give the chunk no pointer then.
      pkt.chunks[i].data = storage_[i].empty() ? nullptr : reinterpret_cast<std::byte*>(storage_[i].data());
      pkt.chunks[i].len = static_cast<std::uint32_t>(storage_[i].size());
    }
  }
  ScatteredPacket(const ScatteredPacket&) = delete;
  ScatteredPacket& operator=(const ScatteredPacket&) = delete;

  Bytes bytes() const {
    Bytes out;
    for (const auto& c : storage_) out.insert(out.end(), c.begin(), c.end());
    return out;
  }

  netback::PacketBuffer pkt;

 private:
  std::vector<Bytes> storage_;
};

// Random chunk sizes (often tiny and odd) covering `total` bytes.
inline std::vector<std::size_t> random_split(std::mt19937& rng, std::size_t total) {
  std::vector<std::size_t> sizes;
  std::size_t left = total;
  while (left > 0 && sizes.size() + 1 < netback::kMaxChunks) {
    std::size_t n;
    switch (rng() % 4) {
      case 0: n = 1; break;
      case 1: n = 1 + rng() % 7; break;
      case 2: n = 1 + rng() % 64; break;
      default: n = 1 + rng() % 700; break;
    }
    n = std::min(n, left);
    sizes.push_back(n);
    left -= n;
  }
  return sizes;
}

}  // namespace pvback::test
