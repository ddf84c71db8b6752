// The DPDK exit: one ethdev (probed from devargs: "net_ring0", "net_tap0,iface=dtap0",
// "net_memif0,role=server", ...) with one RX/TX queue pair per netif queue, and a per-vif mbuf pool.
//
// EAL is process-global: init_eal() runs rte_eal_init once (default: --no-huge -m 256 --no-shconf
// --no-pci --no-telemetry, lcore 0 on the first allowed CPU; PMDs come from the distribution's
// plugin directory, loaded by EAL, so nothing is linked whole-archive) (the first DpdkExit::create() calls it
// with DpdkConfig::eal_args if nobody did before). rte_eal_init would pin the calling thread to
// lcore 0's CPU; init_eal() restores the thread's affinity afterwards.
//
// Threads: a Port may be called from any thread. The first call from a thread that is not an EAL
// lcore registers it (rte_thread_register, so the mempool's per-lcore cache is used) and the
// thread unregisters when it exits. If registration fails (more than RTE_MAX_LCORE threads) the
// port still works, without the cache.
//
//   auto exit = DpdkExit::create({.devargs = "net_ring0", .max_queues = 2});
//   (*exit)->dpdk_port(0).stats().tx_sent.get();
#pragma once
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "base/counter.hpp"
#include "netback/dpdk_gso.hpp"
#include "netback/port.hpp"

struct rte_mempool;
struct rte_mbuf;

namespace pvback::netback {

// The EAL arguments init_eal() starts from; `extra` is appended (later options win, so a caller
// can override e.g. -l or --log-level). A unique --file-prefix is always added.
std::vector<std::string> default_eal_args();
// Runs rte_eal_init once per process with default_eal_args() + extra. Later calls return the
// first call's result (0 or an errno value) and ignore their arguments.
int init_eal(const std::vector<std::string>& extra = {});

struct DpdkConfig {
  std::string devargs{};               // rte_dev_probe() argument; its name part names the port
  std::vector<std::string> eal_args{}; // extra EAL arguments, if this create() initialises EAL
  unsigned max_queues = 1;
  unsigned mbufs_per_queue = 4096;     // pool size = max_queues * mbufs_per_queue
  unsigned rx_descriptors = 1024;
  unsigned tx_descriptors = 1024;
  std::string name{};                  // Exit::name(); defaults to the device name
  std::uint32_t mtu = 1500;
  // Use the device's TSO when it has it. Off by default: net_tap's software TSO dropped the
  // guest's 64 KiB GSO frames in the iperf3 end-to-end test.
  bool tso = false;
  // Otherwise segment the guest's TCP/IPv4 GSO frames here (dpdk_gso.hpp), so that the guest is
  // offered GSO all the same, on any device that takes multi-segment frames and computes TCP
  // checksums.
  bool soft_gso = true;
};

struct DpdkPortStats {
  Counter tx_sent;       // frames the device took (a guest frame segmented here counts each)
  Counter tx_dropped;    // the device did not take it (after retries), or offloads it cannot do
  Counter tx_segmented;  // guest GSO frames segmented in software
  Counter rx_received;
  Counter rx_dropped;    // more segments than a PacketBuffer holds
};

class DpdkExit;

class DpdkPort final : public Port {
 public:
  int alloc_tx(std::span<PacketBuffer> bufs) override;
  unsigned transmit(std::span<PacketBuffer> bufs) override;
  unsigned receive(std::span<PacketBuffer> bufs) override;
  void release(std::span<PacketBuffer> bufs) override;
  // The queue's RX interrupt fd where the device has one that is readable while packets wait
  // (net_tap's: the TAP queue itself); -1 otherwise, and the queue polls receive().
  int rx_fd() const override { return rx_fd_; }

  const DpdkPortStats& stats() const { return stats_; }

 private:
  friend class DpdkExit;
  DpdkPort(DpdkExit& exit, std::uint16_t queue) : exit_(exit), queue_(queue) {}
  bool set_tx_offloads(PacketBuffer& b, rte_mbuf* m);
  // Hands burst[0..n), the segments of `frames` guest frames (owner[i]: which), to the device;
  // what it did not take is freed and its guest frame counted as not sent. Returns how many guest
  // frames were sent whole.
  unsigned send(rte_mbuf** burst, std::uint16_t* owner, std::uint16_t n, unsigned frames);

  DpdkExit& exit_;
  std::uint16_t queue_;
  int rx_fd_ = -1;
  DpdkPortStats stats_;
  static constexpr unsigned kBurst = 64;
};

class DpdkExit final : public Exit {
 public:
  static std::expected<std::unique_ptr<DpdkExit>, int> create(const DpdkConfig& config);
  ~DpdkExit() override;  // stops and closes the port, removes the device, frees the pool

  const std::string& name() const override { return name_; }
  ExitCapabilities capabilities() const override { return caps_; }
  unsigned max_queues() const override { return static_cast<unsigned>(ports_.size()); }
  Port& port(unsigned queue) override { return *ports_.at(queue); }
  DpdkPort& dpdk_port(unsigned queue) { return *ports_.at(queue); }
  // DPDK queues cannot be detached while the port runs; if the device does RSS, its redirection
  // table is pointed at the first `queues` queues. The MTU is set on the device. The guest's
  // offloads do not matter here: the device never delivers GSO, and netback does in software
  // what the guest cannot take.
  int configure(unsigned queues, const GuestOffloads& offloads, std::uint32_t mtu) override;
  void set_link(bool up) override;

  std::uint16_t port_id() const { return port_id_; }
  std::uint64_t tx_offloads() const { return tx_offloads_; }  // RTE_ETH_TX_OFFLOAD_* enabled
  std::uint64_t rx_offloads() const { return rx_offloads_; }

 private:
  friend class DpdkPort;
  DpdkExit() = default;

  std::string name_;
  std::string device_name_;  // as probed, for rte_dev_remove
  std::uint16_t port_id_ = 0;
  bool probed_ = false;
  bool started_ = false;
  rte_mempool* pool_ = nullptr;
  std::uint16_t data_room_ = 0;  // bytes of data per mbuf
  std::uint64_t tx_offloads_ = 0;
  std::uint64_t rx_offloads_ = 0;
  bool rss_ = false;
  std::uint32_t mtu_ = 1500;
  std::unique_ptr<SoftGso> gso_;  // the device has no TSO (or it is not used): guest GSO frames cut here
  ExitCapabilities caps_;
  std::vector<std::unique_ptr<DpdkPort>> ports_;
};

}  // namespace pvback::netback
