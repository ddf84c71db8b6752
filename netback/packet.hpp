// A packet as it crosses between the netif rings and an exit (TAP or DPDK): where its bytes are and
// the offload metadata that travels with it. The netif side (netback/queue) fills or reads these;
// an exit (netback/port.hpp) translates them to virtio_net_hdr or mbuf offload flags.
#pragma once
#include <cstdint>

namespace pvback::netback {

// Offload metadata, in the terms the Linux stack uses (virtio_net_hdr / skb), not netif's.
struct PacketMeta {
  // The L4 checksum is not computed yet: the sum of the bytes from csum_start to the end of the
  // packet goes at csum_start + csum_offset (the pseudo-header sum is already there). This is
  // what netif calls "checksum blank" (NETTXF_csum_blank / NETRXF_csum_blank).
  bool csum_partial = false;
  // The checksum is known to be correct (NETTXF_data_validated / NETRXF_data_validated).
  bool csum_validated = false;
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
  // Segmentation offload: netif::kGsoType* (None, Tcpv4, Tcpv6) and the MSS. A GSO packet is
  // always csum_partial as well.
  std::uint8_t gso_type = 0;
  std::uint16_t gso_size = 0;
  // Header lengths when known (0 = not parsed): Ethernet (+VLAN), IP (+extension headers), L4.
  std::uint16_t l2_len = 0;
  std::uint16_t l3_len = 0;
  std::uint16_t l4_len = 0;
};

// One piece of a packet's bytes in memory owned by an exit.
struct Chunk {
  std::byte* data = nullptr;
  std::uint32_t len = 0;
};

// A packet made of up to kMaxChunks chunks. 64 KiB in 2 KiB mbuf segments is 33 chunks.
inline constexpr unsigned kMaxChunks = 40;
// Largest packet either direction carries: netif's 16-bit size field (XEN_NETIF_MAX_TX_SIZE)
// plus room for an Ethernet header on a GSO frame coming from the host stack.
inline constexpr std::uint32_t kMaxPacketBytes = 65535 + 14 + 4;

struct PacketBuffer {
  std::uint32_t length = 0;     // bytes of the frame, Ethernet header first
  PacketMeta meta;
  unsigned nr_chunks = 0;
  Chunk chunks[kMaxChunks];     // sum of chunks[i].len == length
  void* handle = nullptr;       // the exit's own (mbuf, buffer index); untouched by netback
};

}  // namespace pvback::netback
