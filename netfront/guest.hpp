// The simulated guest of pvback-netfront: a TAP device (one fd per queue) in a network namespace,
// forwarding frames between the namespace's kernel and a connected NetFront.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "netfront/netfront.hpp"

namespace pvback::netfront {

struct GuestConfig {
  std::string netns;                // empty: the current namespace
  std::string tap = "eth0";
  std::string address;              // "10.99.0.2/24"; empty: no address
  unsigned mtu = 0;                 // 0: leave the default (1500)
};

// Where a frame's L3/L4 headers are (a small local parser: Ethernet, VLAN, IPv4, IPv6 with
// extension headers, TCP/UDP).
struct FrameHeaders {
  std::uint16_t l2_len = 0, l3_len = 0, l4_len = 0;
  std::uint8_t l4_proto = 0;        // 6 TCP, 17 UDP, 0 other
  bool ipv4 = false, ipv6 = false;
};
std::optional<FrameHeaders> parse_frame_headers(std::span<const std::byte> frame);

// TAP fds created inside `cfg.netns` (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, IFF_MULTI_QUEUE when
// queues > 1), MAC/address/up set there, offloads chosen from what was negotiated. Returns the
// fds or an errno value.
std::expected<std::vector<int>, int> create_guest_tap(const GuestConfig& cfg, const Negotiated& neg,
                                                      unsigned queues);

// Forwards on queue `q` between `tap_fd` and the frontend until `stop` or the queue fails.
struct ForwardStats {
  std::uint64_t to_backend = 0, from_backend = 0, tap_errors = 0, dropped = 0;
};
void forward_queue(Queue& q, int tap_fd, const Negotiated& neg, const std::atomic<bool>& stop, ForwardStats& stats);

}  // namespace pvback::netfront
