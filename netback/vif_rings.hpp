// The rings of one connected vif and the threads that serve them, between the guest and the exit's
// ports: a Queue per queue pair, the control ring, the state they share (VifShared), the RX
// steering group, and the vif's record (vif_record.hpp: the rings' journals and what the guest
// set), resumed or started afresh. What pvback-net's data-plane process serves
// (data_plane_serve.cpp), and what the control part serves on threads of its own with
// --data-plane thread and for the DPDK exit (vif_driver.cpp).
#pragma once
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "grant/platform.hpp"
#include "netback/ctrl_ring.hpp"
#include "netback/queue.hpp"
#include "netback/vif_record.hpp"
#include "netback/vif_shared.hpp"

namespace pvback::netback {

struct VifRingsSpec {
  std::string name;  // "vif 1/0"
  DomId frontend_domid = 0;
  std::vector<QueueConfig> queues;  // create() sets each one's group and journals
  std::optional<ControlRingConfig> ctrl;
  bool multicast_control = false;
  RateLimit rate;
  // A live record of this very connection is resumed (its journals finished, the guest's hash
  // configuration and multicast filter restored); otherwise the record starts afresh.
  bool resume = false;
};

// The key of the vif's record for `spec`'s rings.
VifRecordKey record_key(const VifRingsSpec& spec);

class VifRings {
 public:
  // Maps the record in `record_fd` (sized for the spec's queues, vif_record.hpp), then every ring,
  // and binds every event channel; `ports` and `stats` have one entry per queue and must outlive
  // the object. Nothing of the rings is read yet, no thread runs. An errno value on failure
  // (logged, naming the device).
  static std::expected<std::unique_ptr<VifRings>, int> create(const grant::Platform& platform, VifRingsSpec spec,
                                                              std::span<Port* const> ports,
                                                              std::span<QueueStats* const> stats, int record_fd,
                                                              Queue::FatalHandler on_fatal);
  ~VifRings();  // stops the threads, unmaps, unbinds
  VifRings(const VifRings&) = delete;
  VifRings& operator=(const VifRings&) = delete;

  // Attaches every ring (Queue::attach, ControlRing::attach: the first access to the guest's ring
  // memory; a data plane calls this confined), then starts one thread per queue and one for the
  // control ring. 0, or an errno value with no thread started.
  [[nodiscard]] int start();
  VifShared& shared() { return *shared_; }
  const VifRingsSpec& spec() const { return spec_; }
  bool resumed() const { return resumed_; }

 private:
  VifRings() = default;
  VifRingsSpec spec_;
  bool resumed_ = false;
  std::unique_ptr<VifRecord> record_;
  std::unique_ptr<VifShared> shared_;
  std::unique_ptr<QueueGroup> group_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::unique_ptr<ControlRing> ctrl_;
  std::vector<std::thread> threads_;
};

}  // namespace pvback::netback
