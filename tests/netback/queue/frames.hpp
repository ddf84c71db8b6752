// Test frames (Ethernet + IPv4/IPv6 + TCP, or raw) with a reference Internet checksum and a
// reference Toeplitz hash, independent of netback/headers.cpp.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <vector>

namespace pvback::test {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint8_t kGuestMac[6] = {0x00, 0x16, 0x3e, 0x00, 0x00, 0x01};
inline constexpr std::uint8_t kPeerMac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};

struct Flow {
  bool v6 = false;
  std::uint8_t src[16] = {10, 0, 0, 1};
  std::uint8_t dst[16] = {10, 0, 0, 2};
  std::uint16_t sport = 12345, dport = 80;
  std::uint8_t dst_mac[6] = {0x00, 0x16, 0x3e, 0x00, 0x00, 0x01};
};

inline void put16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += (std::uint32_t{p[i]} << 8) | p[i + 1];
  if (n & 1) sum += std::uint32_t{p[n - 1]} << 8;
  return sum;
}
inline std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

inline std::size_t l3_offset() { return 14; }
inline std::size_t l4_offset(const Flow& f) { return 14 + (f.v6 ? 40 : 20); }

inline std::uint32_t pseudo_sum(const Flow& f, std::uint32_t l4_len) {
  std::uint32_t s = sum16(f.src, f.v6 ? 16 : 4);
  s = sum16(f.dst, f.v6 ? 16 : 4, s);
  s += 6;  // TCP
  s += l4_len & 0xffff;
  s += l4_len >> 16;
  return s;
}

// A TCP frame with `payload` bytes of random data and a correct TCP checksum.
inline Bytes make_tcp(const Flow& f, std::size_t payload, std::uint32_t seed) {
  const std::size_t l4 = l4_offset(f);
  Bytes b(l4 + 20 + payload);
  std::memcpy(&b[0], f.dst_mac, 6);
  std::memcpy(&b[6], kPeerMac, 6);
  put16(&b[12], f.v6 ? 0x86dd : 0x0800);
  const std::uint32_t l4_len = static_cast<std::uint32_t>(20 + payload);
  if (!f.v6) {
    std::uint8_t* ip = &b[14];
    ip[0] = 0x45;
    put16(ip + 2, static_cast<std::uint16_t>(20 + l4_len));
    ip[8] = 64;
    ip[9] = 6;
    std::memcpy(ip + 12, f.src, 4);
    std::memcpy(ip + 16, f.dst, 4);
    put16(ip + 10, static_cast<std::uint16_t>(~fold(sum16(ip, 20))));
  } else {
    std::uint8_t* ip = &b[14];
    ip[0] = 0x60;
    put16(ip + 4, static_cast<std::uint16_t>(l4_len));
    ip[6] = 6;
    ip[7] = 64;
    std::memcpy(ip + 8, f.src, 16);
    std::memcpy(ip + 24, f.dst, 16);
  }
  std::uint8_t* tcp = &b[l4];
  put16(tcp, f.sport);
  put16(tcp + 2, f.dport);
  tcp[12] = 5 << 4;
  tcp[13] = 0x18;
  put16(tcp + 14, 65535);
  std::mt19937 rng(seed);
  for (std::size_t i = 0; i < payload; ++i) tcp[20 + i] = static_cast<std::uint8_t>(rng());
  const std::uint32_t s = sum16(tcp, l4_len, pseudo_sum(f, l4_len));
  put16(tcp + 16, static_cast<std::uint16_t>(~fold(s)));
  return b;
}

// The same frame as a "checksum blank" sender has it: the TCP checksum field holds the
// pseudo-header sum only.
inline Bytes make_partial(const Flow& f, Bytes frame) {
  const std::size_t l4 = l4_offset(f);
  put16(&frame[l4 + 16], fold(pseudo_sum(f, static_cast<std::uint32_t>(frame.size() - l4))));
  return frame;
}

inline bool tcp_checksum_ok(const Flow& f, const Bytes& frame) {
  const std::size_t l4 = l4_offset(f);
  const std::uint32_t len = static_cast<std::uint32_t>(frame.size() - l4);
  return fold(sum16(&frame[l4], len, pseudo_sum(f, len))) == 0xffff;
}

// A non-IP frame (ethertype 0x88b5, local experimental) of `size` bytes.
inline Bytes make_raw(std::size_t size, std::uint32_t seed, const std::uint8_t* dst_mac = kGuestMac) {
  Bytes b(size);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng());
  std::memcpy(&b[0], dst_mac, 6);
  std::memcpy(&b[6], kPeerMac, 6);
  put16(&b[12], 0x88b5);
  return b;
}

// Reference Toeplitz hash (Microsoft RSS): for every set input bit, XOR in the 32 key bits that
// start at that bit position.
inline std::uint32_t reference_toeplitz(std::span<const std::uint8_t> key, std::span<const std::uint8_t> input) {
  auto key_bit = [&](std::size_t bit) -> std::uint32_t {
    const std::size_t byte = bit / 8;
    if (byte >= key.size()) return 0;
    return (key[byte] >> (7 - bit % 8)) & 1u;
  };
  std::uint32_t result = 0;
  for (std::size_t i = 0; i < input.size() * 8; ++i) {
    if (((input[i / 8] >> (7 - i % 8)) & 1u) == 0) continue;
    std::uint32_t window = 0;
    for (std::size_t k = 0; k < 32; ++k) window = (window << 1) | key_bit(i + k);
    result ^= window;
  }
  return result;
}

inline std::uint32_t reference_tcp4_hash(std::span<const std::uint8_t> key, const Flow& f) {
  std::uint8_t in[12];
  std::memcpy(in, f.src, 4);
  std::memcpy(in + 4, f.dst, 4);
  put16(in + 8, f.sport);
  put16(in + 10, f.dport);
  return reference_toeplitz(key, in);
}

}  // namespace pvback::test
