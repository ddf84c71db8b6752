// Test support for the exits: a private network namespace per test process, AF_PACKET sockets,
// and frame builders.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netback/packet.hpp"

namespace pvback::test {

// Moves the process (its only thread, before any other starts) into a fresh network namespace, so
// every device a test creates disappears with the process. IPv6 is off on new devices so the
// kernel sends nothing on its own (no MLD/RS/DAD) that the tests would have to filter.
inline bool enter_private_netns() {
  if (::unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return false;
  }
  for (const char* path : {"/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/all/disable_ipv6"}) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fputs("1", f);
      std::fclose(f);
    }
  }
  return true;
}

inline short if_flags(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name.c_str());
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return -1;
  return ifr.ifr_flags;
}

inline bool set_if_up(const std::string& name, bool up = true) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name.c_str());
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return false;
  if (up) ifr.ifr_flags |= IFF_UP;
  else ifr.ifr_flags &= ~IFF_UP;
  return ::ioctl(s.get(), SIOCSIFFLAGS, &ifr) == 0;
}

inline int if_mtu(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name.c_str());
  if (::ioctl(s.get(), SIOCGIFMTU, &ifr) != 0) return -1;
  return ifr.ifr_mtu;
}

// An AF_PACKET socket bound to one device, seeing every frame on it (both directions except its
// own sends). With vnet_hdr, frames carry a 10-byte struct virtio_net_hdr in front.
class PacketSocket {
 public:
  explicit PacketSocket(const std::string& ifname, bool vnet_hdr = false) {
    fd_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ALL)));
    if (!fd_) return;
    if (vnet_hdr) {
      int one = 1;
      if (::setsockopt(fd_.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) fd_.reset();
    }
    int rcvbuf = 8 << 20;
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &rcvbuf, sizeof rcvbuf);
    ifindex_ = static_cast<int>(if_nametoindex(ifname.c_str()));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex_;
    if (ifindex_ == 0 || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) fd_.reset();
  }
  bool ok() const { return static_cast<bool>(fd_); }
  int fd() const { return fd_.get(); }

  bool send(const std::vector<std::uint8_t>& frame) {
    return ::send(fd_.get(), frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size());
  }
  // The next frame that `accept` takes, waiting up to timeout_ms; nullopt on timeout. Frames the
  // kernel sends on its own (none expected with IPv6 off) are skipped by the filter.
  template <typename Accept>
  std::optional<std::vector<std::uint8_t>> recv(Accept accept, int timeout_ms = 5000) {
    std::vector<std::uint8_t> buf(netback::kMaxPacketBytes + 64);
    for (;;) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
      sockaddr_ll from{};
      socklen_t fl = sizeof from;
      const ssize_t n = ::recvfrom(fd_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &fl);
      if (n < 0) continue;
      if (from.sll_pkttype == PACKET_OUTGOING) continue;
      std::vector<std::uint8_t> frame(buf.begin(), buf.begin() + n);
      if (accept(frame)) return frame;
    }
  }

 private:
  UniqueFd fd_;
  int ifindex_ = 0;
};

inline constexpr std::uint16_t kTestEtherType = 0x88b5;  // IEEE local experimental

inline void put16(std::vector<std::uint8_t>& f, std::size_t at, std::uint16_t v) {
  f[at] = static_cast<std::uint8_t>(v >> 8);
  f[at + 1] = static_cast<std::uint8_t>(v);
}
inline std::uint16_t get16(const std::vector<std::uint8_t>& f, std::size_t at) {
  return static_cast<std::uint16_t>(f[at] << 8 | f[at + 1]);
}
inline std::uint32_t get32(const std::vector<std::uint8_t>& f, std::size_t at) {
  return std::uint32_t{get16(f, at)} << 16 | get16(f, at + 2);
}

// An Ethernet frame of `size` bytes, ethertype kTestEtherType, with `seq` in the first payload
// bytes and a pattern after.
inline std::vector<std::uint8_t> test_frame(std::size_t size, std::uint32_t seq) {
  std::vector<std::uint8_t> f(size);
  const std::uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01}, src[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  put16(f, 12, kTestEtherType);
  for (std::size_t i = 14; i < size; ++i) f[i] = static_cast<std::uint8_t>(i * 7 + seq);
  if (size >= 18) {
    put16(f, 14, static_cast<std::uint16_t>(seq >> 16));
    put16(f, 16, static_cast<std::uint16_t>(seq));
  }
  return f;
}
inline bool is_test_frame(const std::vector<std::uint8_t>& f) { return f.size() >= 18 && get16(f, 12) == kTestEtherType; }
inline std::uint32_t test_seq(const std::vector<std::uint8_t>& f) { return get32(f, 14); }

inline std::uint32_t sum16(const std::uint8_t* p, std::size_t n, std::uint32_t sum = 0) {
  for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += static_cast<std::uint32_t>(p[n - 1] << 8);
  return sum;
}
inline std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(sum);
}

// Ethernet + IPv4 (20 B) + TCP (20 B) or UDP (8 B) + payload. The IPv4 header checksum is right.
// With partial, the L4 checksum field holds the pseudo-header sum (Linux's CHECKSUM_PARTIAL
// convention); otherwise the full, correct checksum.
inline std::vector<std::uint8_t> ipv4_frame(bool tcp, std::size_t payload, std::uint16_t sport, std::uint16_t dport,
                                            bool partial, std::uint8_t fill = 0) {
  const std::size_t l4 = tcp ? 20 : 8;
  std::vector<std::uint8_t> f(14 + 20 + l4 + payload);
  const std::uint8_t dst[6] = {0x02, 0, 0, 0, 0, 0x01}, src[6] = {0x02, 0, 0, 0, 0, 0x02};
  std::memcpy(f.data(), dst, 6);
  std::memcpy(f.data() + 6, src, 6);
  put16(f, 12, 0x0800);
  std::uint8_t* ip = f.data() + 14;
  ip[0] = 0x45;
  const std::size_t ip_len = 20 + l4 + payload;
  put16(f, 16, static_cast<std::uint16_t>(ip_len > 0xffff ? 0 : ip_len));
  put16(f, 18, 0x1234);
  put16(f, 20, 0x4000);  // DF
  ip[8] = 64;
  ip[9] = tcp ? 6 : 17;
  const std::uint8_t saddr[4] = {10, 0, 0, 2}, daddr[4] = {10, 0, 0, 1};
  std::memcpy(ip + 12, saddr, 4);
  std::memcpy(ip + 16, daddr, 4);
  put16(f, 24, static_cast<std::uint16_t>(~fold(sum16(ip, 20))));
  const std::size_t l4_at = 34;
  put16(f, l4_at, sport);
  put16(f, l4_at + 2, dport);
  if (tcp) {
    put16(f, l4_at + 4, 0x0001);
    f[l4_at + 12] = 0x50;  // data offset 5
    f[l4_at + 13] = 0x18;  // PSH|ACK
    put16(f, l4_at + 14, 0xffff);
  } else {
    put16(f, l4_at + 4, static_cast<std::uint16_t>(8 + payload));
  }
  for (std::size_t i = 0; i < payload; ++i) f[l4_at + l4 + i] = static_cast<std::uint8_t>(fill + i * 13);
  const std::size_t csum_at = l4_at + (tcp ? 16 : 6);
  std::uint32_t pseudo = sum16(ip + 12, 8) + ip[9] + static_cast<std::uint32_t>(l4 + payload);
  if (partial) {
    put16(f, csum_at, fold(pseudo));
  } else {
    std::uint16_t c = static_cast<std::uint16_t>(~fold(sum16(f.data() + l4_at, l4 + payload, pseudo)));
    if (!tcp && c == 0) c = 0xffff;
    put16(f, csum_at, c);
  }
  return f;
}

// True if the frame's IPv4 TCP/UDP checksum verifies.
inline bool ipv4_l4_checksum_ok(const std::vector<std::uint8_t>& f) {
  const std::uint8_t* ip = f.data() + 14;
  const std::size_t ihl = (ip[0] & 0xf) * 4;
  const std::size_t ip_len = get16(f, 16);
  const std::size_t l4_len = ip_len - ihl;
  const std::uint32_t pseudo = sum16(ip + 12, 8) + ip[9] + static_cast<std::uint32_t>(l4_len);
  return fold(sum16(f.data() + 14 + ihl, l4_len, pseudo)) == 0xffff;
}

// The bytes of a PacketBuffer, gathered from its chunks.
inline std::vector<std::uint8_t> gather(const netback::PacketBuffer& b) {
  std::vector<std::uint8_t> out;
  out.reserve(b.length);
  for (unsigned i = 0; i < b.nr_chunks; ++i) {
    const auto* p = reinterpret_cast<const std::uint8_t*>(b.chunks[i].data);
    out.insert(out.end(), p, p + b.chunks[i].len);
  }
  return out;
}

// Copies `frame` into a buffer that alloc_tx gave chunks to.
inline void scatter(netback::PacketBuffer& b, const std::vector<std::uint8_t>& frame) {
  std::size_t off = 0;
  for (unsigned i = 0; i < b.nr_chunks; ++i) {
    std::memcpy(b.chunks[i].data, frame.data() + off, b.chunks[i].len);
    off += b.chunks[i].len;
  }
}

}  // namespace pvback::test
