// The netif side of a vif's XenBus handshake: what pvback-net advertises, how it reads the
// frontend's queue, event channel, control ring and feature keys, and how it starts and stops one
// Queue (and thread) per queue pair plus the control ring, between the guest and an Exit.
#pragma once
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grant/platform.hpp"
#include "netback/ctrl_ring.hpp"
#include "netback/frontend_keys.hpp"
#include "netback/options.hpp"
#include "netback/port.hpp"
#include "netback/queue.hpp"
#include "netback/stats.hpp"
#include "netback/vif_shared.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::netback {

// What the frontend asked for at connect time.
struct VifNegotiated {
  unsigned queues = 0;
  bool split_event_channels = false;
  bool ctrl_ring = false;
  bool multicast_control = false;
  std::uint16_t xdp_headroom = 0;
  GuestOffloads offloads;
};

// The `rate` key: "<bytes>,<usec>" (libxl's format). Absent means unlimited; nullopt if malformed.
std::optional<RateLimit> parse_rate(const std::string& value);

class VifDriver final : public xenbus::BackendDriver {
 public:
  // `name` is the vif's log name ("vif 5/0"). `exit` must outlive the driver. A queue or the control
  // ring hitting a fatal protocol error calls `on_fatal` from its own thread.
  VifDriver(const grant::Platform& platform, VifOptions options, std::string name, DomId frontend_domid, Exit& exit,
            Queue::FatalHandler on_fatal);
  ~VifDriver() override;

  int advertise(xenbus::XenStore& xs, const std::string& backend_path) override;
  int connect(xenbus::XenStore& xs, const std::string& frontend_path) override;
  void disconnect() override;
  int reconfigure(xenbus::XenStore& xs, const std::string& frontend_path) override;

  // Re-reads the backend's `rate` key (the main loop calls it after watch events: the backend
  // watch covers the whole backend node) and applies a change at once.
  void refresh_rate(xenbus::XenStore& xs);
  // Carrier follows the queues: off while any queue is stalled (no RX buffers for too long).
  void refresh_link();

  const VifOptions& options() const { return options_; }
  unsigned effective_max_queues() const;
  bool connected() const { return !queues_.empty(); }
  const VifNegotiated& negotiated() const { return negotiated_; }
  RateLimit rate() const { return rate_; }
  const VifShared* shared() const { return shared_.get(); }
  const Exit& exit() const { return exit_; }
  const std::vector<std::unique_ptr<QueueStats>>& queue_stats() const { return stats_; }
  const QueueStats& past_totals() const { return past_; }
  unsigned generation() const { return generation_.load(); }
  unsigned fatal_generation() const { return fatal_generation_.load(); }

 private:
  QueueConfig queue_config(const VifQueueKeys& keys, unsigned index) const;

  const grant::Platform& platform_;
  VifOptions options_;
  std::string name_;
  DomId frontend_domid_;
  Exit& exit_;
  Queue::FatalHandler on_fatal_;
  std::string backend_path_;
  RateLimit rate_;
  std::uint32_t mtu_ = 1500;
  std::string rate_text_;
  bool link_up_ = false;
  VifNegotiated negotiated_;
  // The process's first connect may take over from a killed predecessor (see bind_patience).
  bool first_connect_ = true;
  std::unique_ptr<VifShared> shared_;
  std::unique_ptr<QueueGroup> group_;  // RX steering between the queues
  std::vector<std::unique_ptr<QueueStats>> stats_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::unique_ptr<ControlRing> ctrl_;
  std::vector<std::thread> threads_;
  QueueStats past_;
  std::atomic<unsigned> generation_{0};
  std::atomic<unsigned> fatal_generation_{0};
};

}  // namespace pvback::netback
