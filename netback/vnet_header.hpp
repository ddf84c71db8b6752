// PacketMeta <-> struct virtio_net_hdr (the header a TAP device with IFF_VNET_HDR puts before
// every frame, and that AF_PACKET's PACKET_VNET_HDR uses too). We use the 12-byte
// virtio_net_hdr_v1 layout (num_buffers always 0) in native byte order (x86: little endian, which
// is also what TUNSETVNETLE would select).
#pragma once
#include <cstdint>
#include <cstring>

#include "netback/packet.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {

// <linux/virtio_net.h> does not compile as C++ (a member named `class`): its definitions, as-is.
inline constexpr std::uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
inline constexpr std::uint8_t VIRTIO_NET_HDR_F_DATA_VALID = 2;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_UDP = 3;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
inline constexpr std::uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

struct virtio_net_hdr_v1 {
  std::uint8_t flags;
  std::uint8_t gso_type;
  std::uint16_t hdr_len;
  std::uint16_t gso_size;
  std::uint16_t csum_start;
  std::uint16_t csum_offset;
  std::uint16_t num_buffers;
};

inline constexpr std::uint32_t kVnetHdrLen = sizeof(virtio_net_hdr_v1);
static_assert(kVnetHdrLen == 12);

// Writes the header for a packet to the host. Returns false for metadata virtio cannot carry
// (an unknown gso_type, or GSO without a partial checksum).
inline bool meta_to_vnet_header(const PacketMeta& meta, std::uint32_t length, virtio_net_hdr_v1& h) {
  std::memset(&h, 0, sizeof h);
  if (meta.csum_partial) {
    h.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h.csum_start = meta.csum_start;
    h.csum_offset = meta.csum_offset;
  } else if (meta.csum_validated) {
    h.flags = VIRTIO_NET_HDR_F_DATA_VALID;
  }
  switch (meta.gso_type) {
    case netif::kGsoTypeNone:
      return true;
    case netif::kGsoTypeTcpv4:
      h.gso_type = VIRTIO_NET_HDR_GSO_TCPV4;
      break;
    case netif::kGsoTypeTcpv6:
      h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
      break;
    default:
      return false;
  }
  if (!meta.csum_partial || meta.gso_size == 0) return false;
  h.gso_size = meta.gso_size;
  // hdr_len is a hint for how much the kernel copies into the linear part; it raises it to
  // csum_start + csum_offset + 2 itself but refuses a value beyond the packet.
  std::uint32_t hdr_len = 0;
  if (meta.l2_len != 0 && meta.l3_len != 0 && meta.l4_len != 0)
    hdr_len = std::uint32_t{meta.l2_len} + meta.l3_len + meta.l4_len;
  else
    hdr_len = std::uint32_t{meta.csum_start} + meta.csum_offset + 2;
  if (hdr_len > length) hdr_len = length;
  h.hdr_len = static_cast<std::uint16_t>(hdr_len);
  return true;
}

// Reads the header of a packet from the host. Returns false for what netif cannot carry
// (UDP GSO, or an unknown type) so the caller can drop it.
inline bool vnet_header_to_meta(const virtio_net_hdr_v1& h, PacketMeta& meta) {
  meta = PacketMeta{};
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    meta.csum_partial = true;
    meta.csum_start = h.csum_start;
    meta.csum_offset = h.csum_offset;
  } else if (h.flags & VIRTIO_NET_HDR_F_DATA_VALID) {
    meta.csum_validated = true;
  }
  switch (h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) {
    case VIRTIO_NET_HDR_GSO_NONE:
      return true;
    case VIRTIO_NET_HDR_GSO_TCPV4:
      meta.gso_type = netif::kGsoTypeTcpv4;
      break;
    case VIRTIO_NET_HDR_GSO_TCPV6:
      meta.gso_type = netif::kGsoTypeTcpv6;
      break;
    default:
      return false;
  }
  if (h.gso_type & VIRTIO_NET_HDR_GSO_ECN) return false;  // netif has no ECN flag
  meta.gso_size = h.gso_size;
  return meta.csum_partial && meta.gso_size != 0;
}

}  // namespace pvback::netback
