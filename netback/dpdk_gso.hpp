// Software segmentation for the DPDK exit (DPDK's GSO library): a guest's TCP/IPv4 GSO frame (up
// to 64 KiB, one MSS) cut into frames of one MSS each before it reaches a device that does not do
// TSO, so that pvback-net can offer the guest GSO anyway (feature-gso-tcpv4): the guest then hands
// over one large frame where it would otherwise segment, checksum and ring every 1.5 KB itself.
//
// Each output frame is a copy of the headers (from a small pool of this exit's) and one or two
// indirect mbufs pointing into the guest's frame (two where a segment straddles its 2 KiB mbufs),
// so the payload is never copied. The device must take multi-segment frames and compute IPv4 and
// TCP checksums (the GSO library updates the IPv4 length and id and the TCP sequence and flags, not
// checksums); each output frame asks for both, with its own pseudo-header sum in the TCP checksum
// field as DPDK's checksum offload expects, but for one whose payload has an odd-length piece
// before its last, whose TCP checksum is computed here (see segment()).
#pragma once
#include <cstdint>
#include <expected>
#include <memory>
#include <string>

struct rte_mempool;
struct rte_mbuf;

namespace pvback::netback {

class SoftGso {
 public:
  // The most frames one guest frame may become: 64 KiB at the smallest MSS Linux sends (48,
  // tcp_min_snd_mss). A smaller MSS is refused (EINVAL).
  static constexpr std::uint16_t kMaxSegments = 1366;

  // Pools sized for `queues` queues each with a full burst of 64 KiB frames in flight. errno on
  // failure (logged, naming the exit): the exit then offers no GSO.
  static std::expected<std::unique_ptr<SoftGso>, int> create(const std::string& name, unsigned queues, int socket);
  ~SoftGso();
  SoftGso(const SoftGso&) = delete;
  SoftGso& operator=(const SoftGso&) = delete;

  // Segments `m` (a TCP/IPv4 frame with l2_len, l3_len, l4_len set and its headers in its first
  // mbuf) into frames of at most `mss` payload bytes, written to out[0..n): n > 0, after which `m`
  // is the caller's to free (the output holds what it needs of it); 0 if `m` needs no segmenting
  // (send it as it is); or a negative errno (ENOMEM: the pools are empty; EINVAL: an MSS or a frame
  // the library refuses, or more than `room` frames). Every output frame has `flags`
  // (RTE_MBUF_F_TX_* checksum requests) and the header lengths of `m`.
  int segment(rte_mbuf* m, std::uint16_t mss, rte_mbuf** out, std::uint16_t room, std::uint64_t flags) const;

 private:
  SoftGso() = default;
  rte_mempool* headers_ = nullptr;   // direct mbufs holding each output frame's copied headers
  rte_mempool* payloads_ = nullptr;  // indirect mbufs, no data of their own
};

}  // namespace pvback::netback
