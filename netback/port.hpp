// The way out of Dom0 for one vif: an Exit (a TAP device or a DPDK ethdev) with one Port per queue.
//
// Threading: each Port is used by exactly one thread (its queue's), so a Port needs no locks. The
// Exit's own methods are called from the main thread while no queue runs (at connect/disconnect),
// except set_link(), which may be called at any time.
//
// Guest -> outside (TX), per batch:
//   1. the queue sets `length` on n PacketBuffers and calls alloc_tx(bufs): the port gives each
//      one chunks totalling `length` bytes (writable, possibly scattered);
//   2. the queue grant-copies the guest's data into those chunks (one batched copy) and fills meta;
//   3. transmit(bufs) hands every buffer back: the port sends what it can and frees the rest.
// Outside -> guest (RX), per batch:
//   1. receive(bufs) fills up to bufs.size() packets (never blocks);
//   2. the queue grant-copies them into the guest's posted buffers;
//   3. release(bufs) returns the buffers to the port.
#pragma once
#include <cstdint>
#include <expected>
#include <span>
#include <string>

#include "netback/packet.hpp"

namespace pvback::netback {

// What an exit accepts from the guest without netback doing the work in software.
struct ExitCapabilities {
  bool tx_csum = false;   // partial checksums (IPv4 and IPv6, TCP and UDP) can be sent as they are
  bool tx_tso4 = false;   // GSO TCPv4 packets can be sent unsegmented
  bool tx_tso6 = false;
  bool rx_gso = false;    // the exit may deliver GSO packets to the guest (if the guest allows)
  bool poll_mode = false; // no fd to wait on for RX: the queue polls receive() (DPDK)
};

// What the connected frontend takes on RX, from its XenStore keys. An exit must not deliver what
// the guest cannot take (TAP: TUNSETOFFLOAD; DPDK: netback segments/checksums in software).
struct GuestOffloads {
  bool csum = true;      // !feature-no-csum-offload: partial IPv4 checksums are fine
  bool ipv6_csum = false;  // feature-ipv6-csum-offload
  bool sg = false;       // feature-sg: packets larger than one page
  bool gso_tcpv4 = false;
  bool gso_tcpv6 = false;
};

class Port {
 public:
  virtual ~Port() = default;

  // TX. alloc_tx gives chunks to every buffer or returns ENOBUFS having given none.
  virtual int alloc_tx(std::span<PacketBuffer> bufs) = 0;
  // Sends every buffer (returns how many were sent; the others are dropped and counted by the
  // port). The buffers are the port's again afterwards, whatever happened. A buffer whose length
  // is 0 is one netback gave up on after alloc_tx (a failed grant copy): free it, do not send it.
  virtual unsigned transmit(std::span<PacketBuffer> bufs) = 0;

  // RX. Fills up to bufs.size() buffers, returns how many. Never blocks.
  virtual unsigned receive(std::span<PacketBuffer> bufs) = 0;
  virtual void release(std::span<PacketBuffer> bufs) = 0;
  // Readable when receive() may return packets; -1 for a poll-mode port.
  virtual int rx_fd() const = 0;
};

class Exit {
 public:
  virtual ~Exit() = default;
  virtual const std::string& name() const = 0;    // "vif5.0", or the DPDK port's name
  virtual ExitCapabilities capabilities() const = 0;
  virtual unsigned max_queues() const = 0;         // ports that exist
  virtual Port& port(unsigned queue) = 0;
  // At connect: the number of queues the frontend asked for (the rest are detached so nothing is
  // steered to them) and what it takes on RX. errno value on failure.
  virtual int configure(unsigned queues, const GuestOffloads& offloads, std::uint32_t mtu) = 0;
  // Carrier: up while a frontend is connected and its RX is not stalled.
  virtual void set_link(bool up) = 0;
};

}  // namespace pvback::netback
