// The TAP exit: a kernel tap device named like the kernel's vif ("vif<domid>.<handle>"), one
// /dev/net/tun queue (fd) per netif queue, with virtio_net_hdr (IFF_VNET_HDR) so checksum and
// segmentation offloads cross in both directions. The device lives in the network namespace of
// the thread that calls create(); it disappears when the TapExit is destroyed.
//
//   auto exit = TapExit::create({.name = "vif5.0", .max_queues = 4});
//   if (!exit) ... strerror(exit.error())   // EEXIST: the name is taken; EPERM: no CAP_NET_ADMIN
//   (*exit)->configure(2, offloads, 1500);
//   TapPort& p = (*exit)->tap_port(0);  p.stats().tx_sent.get();
#pragma once
#include <array>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/counter.hpp"
#include "base/unique_fd.hpp"
#include "netback/port.hpp"
#include "netback/tap_writer.hpp"

namespace pvback::netback {

struct TapConfig {
  std::string name{};             // the interface name, at most IFNAMSIZ-1 (15) characters
  unsigned max_queues = 1;        // > 1: IFF_MULTI_QUEUE, one fd per queue
  std::uint32_t mtu = 1500;
  std::array<std::uint8_t, 6> host_mac{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff};  // as the kernel vif
  bool bring_up = false;          // normally the hotplug script does it
  std::optional<std::uint32_t> tx_queue_len{};
  unsigned tx_buffers = 256;      // per port: packets between alloc_tx and transmit
  unsigned rx_buffers = 256;      // per port: packets between receive and release
  // Keep the device when this process ends (TUNSETPERSIST): a successor serving the same vif
  // re-attaches to it, so its addresses, bridge port and the host's TCP connections through it
  // outlive a crash or restart of the backend. set_persist(false) before a device removal.
  bool persist = false;
  // Attach to an existing TAP of this name (a killed predecessor's persistent one) instead of
  // failing with EEXIST. Its carrier is left as it is (the caller sets it).
  bool reattach = false;
};

struct TapPortStats {
  Counter tx_sent;       // frames written to the device
  Counter tx_dropped;    // write failed (EAGAIN: the host side is full; EIO: device down) or bad meta
  Counter rx_received;   // frames read from the device and handed out by receive()
  Counter rx_dropped;    // frames read but unusable (meta netif cannot carry, truncated)
};

class TapExit;

class TapPort final : public Port {
 public:
  // A port on a TAP queue fd opened elsewhere (pvback-net's data plane gets the vif's from its
  // control part), with its own buffers. EINVAL for a count of 0, ENOMEM.
  static std::expected<std::unique_ptr<TapPort>, int> on_fd(UniqueFd fd, unsigned tx_buffers = 256,
                                                            unsigned rx_buffers = 256);
  ~TapPort() override;
  TapPort(const TapPort&) = delete;
  TapPort& operator=(const TapPort&) = delete;

  int alloc_tx(std::span<PacketBuffer> bufs) override;
  unsigned transmit(std::span<PacketBuffer> bufs) override;
  unsigned receive(std::span<PacketBuffer> bufs) override;
  void release(std::span<PacketBuffer> bufs) override;
  int rx_fd() const override { return fd_.get(); }

  // Sets up the batched writes of transmit() (tap_writer.hpp). transmit() does it itself the first
  // time if nobody did; a sandboxed process must do it before its seccomp filter forbids
  // io_uring_setup. 0, or the errno value why frames go out one write() each.
  int prepare_batched_tx();
  bool batched_tx() const { return writer_.batched(); }

  const TapPortStats& stats() const { return stats_; }
  bool attached() const { return attached_; }

 private:
  friend class TapExit;
  TapPort() = default;
  // One mmap'd region of `count` fixed-size slots; a slot holds the vnet header then the frame.
  struct Arena {
    std::byte* base = nullptr;
    std::size_t bytes = 0;
    std::vector<std::uint32_t> free;  // stack of free slot indexes (LIFO: hot slots reused)
    int init(unsigned count);
    std::byte* slot(std::uint32_t i) const;
    ~Arena();
  };

  UniqueFd fd_;
  bool attached_ = true;
  Arena tx_;
  Arena rx_;
  TapWriter writer_;
  bool writer_prepared_ = false;
  // transmit()'s batch: the frames to write, their slots, what each write returned. Sized for
  // every TX slot at once.
  std::vector<iovec> tx_frames_;
  std::vector<std::uint32_t> tx_slots_;
  std::vector<int> tx_results_;
  TapPortStats stats_;
};

class TapExit final : public Exit {
 public:
  static std::expected<std::unique_ptr<TapExit>, int> create(const TapConfig& config);
  // The TAP device named `name` through queue fds another process holds attached to it (handed
  // over by the data plane a dead control part left serving): nothing is attached or created, so
  // no queue of the device is added or lost. ENODEV if the fds are no queues of that device.
  static std::expected<std::unique_ptr<TapExit>, int> adopt(const std::string& name, std::vector<UniqueFd> fds);
  // Every queue's fd, in queue order (what the data plane serves the queues on).
  std::vector<int> queue_fds() const;
  // TUNSETPERSIST on the device: whether it outlives this process's queue fds. 0 or errno.
  int set_persist(bool persist);
  bool reattached() const { return reattached_; }
  ~TapExit() override;

  const std::string& name() const override { return name_; }
  ExitCapabilities capabilities() const override;
  unsigned max_queues() const override { return static_cast<unsigned>(ports_.size()); }
  Port& port(unsigned queue) override { return *ports_.at(queue); }
  TapPort& tap_port(unsigned queue) { return *ports_.at(queue); }
  int configure(unsigned queues, const GuestOffloads& offloads, std::uint32_t mtu) override;
  void set_link(bool up) override;

  int ifindex() const { return ifindex_; }
  unsigned attached_queues() const;
  // The TUN_F_* flags the last configure() gave TUNSETOFFLOAD.
  unsigned offload_flags() const { return offload_flags_; }

 private:
  TapExit() = default;
  int open_ctl();  // the socket for SIOC* ioctls, and the device's ifindex
  int set_mtu(std::uint32_t mtu);

  std::string name_;
  int ifindex_ = 0;
  bool reattached_ = false;
  UniqueFd ctl_;  // socket for SIOC* ioctls, in the device's network namespace
  std::vector<std::unique_ptr<TapPort>> ports_;
  unsigned offload_flags_ = 0;
};

}  // namespace pvback::netback
