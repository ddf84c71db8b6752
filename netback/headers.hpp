// Packet header parsing and software offloads, over a packet scattered in chunks: where the L3 and
// L4 headers are, the flow tuple (for the Toeplitz hash), completing a partial checksum, and
// setting up csum_start/csum_offset for a guest's "checksum blank" packet (netif does not carry
// them; Linux netback finds them by parsing, as this does).
#pragma once
#include <cstdint>
#include <optional>
#include <span>

#include "netback/packet.hpp"

namespace pvback::netback {

struct ParsedHeaders {
  std::uint16_t l2_len = 0;          // Ethernet + VLAN tags
  std::uint16_t ethertype = 0;       // after VLAN tags
  std::uint16_t l3_len = 0;          // IPv4 header with options / IPv6 + extension headers
  std::uint8_t l4_proto = 0;         // IPPROTO_TCP, IPPROTO_UDP, ... (0: not IP or fragment)
  std::uint16_t l4_len = 0;          // TCP header with options, UDP 8; 0 if not TCP/UDP
  bool ipv4 = false, ipv6 = false;
  bool fragment = false;             // not the first fragment / fragmented: no ports
  std::uint32_t l4_total = 0;        // L4 header + payload as the IP header claims (pseudo-header length)
  // Flow tuple in network byte order, as the Toeplitz hash consumes it.
  std::uint8_t src_addr[16]{}, dst_addr[16]{};
  std::uint16_t src_port = 0, dst_port = 0;  // network byte order
};

// Parses the headers of `pkt` (which may be scattered). nullopt if the frame is shorter than what
// its headers claim or not parseable; a non-IP frame parses with l3_len == 0.
std::optional<ParsedHeaders> parse_headers(const PacketBuffer& pkt);

// For a partial-checksum packet from the guest: fills meta.csum_start/csum_offset (and l2/l3/l4
// lengths) from the headers and sets meta.csum_partial. false (meta untouched) if the packet is
// not a whole (unfragmented) TCP or UDP datagram over IPv4/IPv6.
bool setup_partial_checksum(PacketBuffer& pkt);
// The same, and when `write_pseudo_header` also stores the pseudo-header sum in the checksum field,
// for a GSO packet whose sender did not mark it "checksum blank" (Linux: rx_gso_checksum_fixup).
bool setup_partial_checksum(PacketBuffer& pkt, bool write_pseudo_header);

// Computes the checksum a partial packet lacks and stores it; clears csum_partial and sets
// csum_validated. For exits or guests that cannot take partial checksums. false (packet
// untouched) if the packet is not csum_partial or csum_start/csum_offset lie outside it.
bool complete_checksum(PacketBuffer& pkt);

// The Toeplitz hash of `input` under `key` (Xen's netif.h and Microsoft's RSS definition). A key
// shorter than the input needs is zero-padded, as netif.h's reference implementation does.
std::uint32_t toeplitz_hash(std::span<const std::uint8_t> key, std::span<const std::uint8_t> input);

struct FlowHash {
  std::uint32_t value = 0;
  std::uint8_t type = 0;  // netif::kHashTypeBit* of what was hashed
};
// The hash of the packet as the control ring configured it (`flags` selects which tuples may be
// used, most specific first: TCP 4-tuple, then addresses only). nullopt if no enabled type fits.
std::optional<FlowHash> flow_hash(const ParsedHeaders& headers, std::span<const std::uint8_t> key,
                                  std::uint32_t flags);

}  // namespace pvback::netback
