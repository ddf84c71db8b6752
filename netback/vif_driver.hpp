// The netif side of a vif's XenBus handshake (pvback-net's control part): what pvback-net
// advertises, how it reads the frontend's queue, event channel, control ring and feature keys,
// the exit's configuration for them (TAP queues, offloads, MTU, carrier), and who serves the
// rings: a data-plane process of the vif's own (data_plane.hpp; the TAP exit, by default), or
// threads of this process (VifRings: --data-plane thread, and always for the DPDK exit).
#pragma once
#include <atomic>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "grant/platform.hpp"
#include "netback/data_plane.hpp"
#include "netback/frontend_keys.hpp"
#include "netback/options.hpp"
#include "netback/port.hpp"
#include "netback/stats.hpp"
#include "netback/vif_rings.hpp"
#include "plane/cgroup_leaf.hpp"
#include "plane/process.hpp"
#include "plane/shared_stats.hpp"
#include "xenbus/backend_daemon.hpp"
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

// "<dir>/vif-<domid>-<handle>": the vif's record; + ".dp": its data plane's listening socket.
std::string vif_recovery_prefix(const std::string& dir, DomId frontend_domid, const std::string& handle);

class VifDriver final : public xenbus::BackendDriver {
 public:
  // `name` is the vif's log name ("vif 5/0"). `exit` must outlive the driver. A queue or the control
  // ring hitting a fatal protocol error calls `on_fatal` (from its own thread when served here).
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
  // The operator's change of a tunable (pvbackctl set, netback/tunables.hpp): `key` set to `value`
  // in the options; the keys the frontend negotiates are advertised again now, for its next
  // connection, whose queues also take the limits. The error is the operator's message.
  [[nodiscard]] std::expected<TunableChange, std::string> set_tunable(xenbus::XenStore& xs, std::string_view key,
                                                                      std::string_view value);
  unsigned effective_max_queues() const;
  bool connected() const { return connected_; }
  const VifNegotiated& negotiated() const { return negotiated_; }
  RateLimit rate() const { return rate_; }
  const Exit& exit() const { return exit_; }
  // One entry per queue of the current connection (empty when disconnected), in shared memory.
  const std::vector<QueueStats*>& queue_stats() const { return stats_; }
  const QueueStats& past_totals() const { return past_; }
  unsigned generation() const { return generation_.load(); }
  unsigned fatal_generation() const { return fatal_generation_.load(); }

  // The data-plane process of the current connection, if one serves it: the main loop polls
  // data_plane_fd() (-1: none) and calls on_data_plane_event() when it is readable. One that died
  // is started again at once and resumes the rings from the vif's record (the guest sees a
  // pause); one that keeps dying fails the vif.
  int data_plane_fd() const { return plane_.running() ? plane_.fd() : -1; }
  void on_data_plane_event();
  // An operator's restart of the running data plane (xenbus::DeviceService::begin_restart's
  // contract, plane::begin_restart): begun now, ended from on_data_plane_event (the old one's
  // end), check_operations (the loop's timer: past 10 s it is killed) or disconnect().
  [[nodiscard]] int begin_restart(xenbus::OperationDone done);
  void check_operations();
  pid_t data_plane_pid() const { return plane_.running() ? plane_.pid() : -1; }
  unsigned data_plane_restarts() const { return plane_restarts_; }
  // The data plane's control group directories, if it has one (one per cgroup hierarchy used).
  const std::vector<std::string>& data_plane_cgroup() const { return cgroup_.dirs(); }

  // A data plane a dead predecessor of this control part left serving, adopted before the exit
  // was made (it holds the vif's TAP queues, which the exit is then made of). The first connect()
  // keeps it if it serves the frontend's current rings and stops it otherwise.
  void offer_adopted(AdoptedDataPlane adopted);
  // After the device's start: with no connection, a data plane adopted for nothing is stopped, the
  // control group a dead predecessor made for its data plane goes, and the carrier (a
  // predecessor's TAP keeps its own until then) goes off.
  void settle_after_start();
  // The process is ending while the device lives on: disconnect() keeps the vif's record for a
  // successor (which resumes the rings from it) instead of deleting it.
  void keep_recovery_records() { keep_records_ = true; }
  // The process is ending while the device lives on (after keep_recovery_records()): the data
  // plane is left serving for a successor to adopt, if --on-stop says so (auto: it is in a systemd
  // scope of its own) and it can be adopted; disconnect() then leaves it, its listening socket
  // and its control group alone. True if it was left.
  bool leave_data_plane();
  // The device is gone: the record and the listening socket go, and a data plane left serving
  // the vif by a dead control part is stopped.
  void remove_recovery_records();

 private:
  QueueConfig queue_config(const VifQueueKeys& keys, unsigned index) const;
  bool serves_in_process() const;
  int open_connection_record();
  int start_rings();
  int launch_data_plane(bool resume);
  [[nodiscard]] int make_cgroup();
  bool claim_adopted();
  void fail_connection(int error, const std::string& reason);
  void use_stats(plane::SharedStats<QueueStats> stats);
  std::string adoption_path() const { return recovery_prefix_.empty() ? "" : recovery_prefix_ + ".dp"; }

  const grant::Platform& platform_;
  // What the frontend negotiates from, as the backend's directory holds it (see VbdDriver's).
  struct Advertised {
    unsigned max_queues = 0;
    bool split_event_channels = false;
    bool xdp_headroom = false;
    bool operator==(const Advertised&) const = default;
  };
  Advertised wanted_advertisement() const;
  int write_features(xenbus::XenStore& xs);
  void refresh_advertisement(xenbus::XenStore& xs) override;
  Advertised advertised_;
  bool advertised_stale_ = false;
  bool directory_stale_ = false;  // the directory promises what this process cannot do
  VifOptions options_;
  std::string name_;
  DomId frontend_domid_;
  Exit& exit_;
  Queue::FatalHandler on_fatal_;
  std::string backend_path_;
  std::string recovery_prefix_;  // "<recovery dir>/vif-<domid>-<handle>", empty: none
  RateLimit rate_;
  std::uint32_t mtu_ = 1500;
  std::string rate_text_;
  bool link_up_ = false;
  bool connected_ = false;
  bool keep_records_ = false;
  bool left_serving_ = false;  // leave_data_plane()
  VifNegotiated negotiated_;
  // The process's first connect may take over from a killed predecessor (bind patience, the
  // record resumed).
  bool first_connect_ = true;
  VifRingsSpec spec_;  // the current connection's rings, to serve them again
  UniqueFd record_;    // the vif's record (vif_record.hpp) for the current connection
  plane::SharedStats<QueueStats> shared_stats_;
  std::vector<QueueStats*> stats_;  // into shared_stats_
  std::unique_ptr<VifRings> rings_;  // served on threads of this process
  plane::Process plane_;             // or by a data-plane process
  std::optional<AdoptedDataPlane> adopted_;
  plane::CgroupLeaf cgroup_;  // the data plane's, for the connection's lifetime (restarts included)
  unsigned plane_restarts_ = 0;
  plane::RestartLimit restart_limit_;
  plane::PendingRestart restarting_;  // an operator's restart under way
  QueueStats past_;
  std::atomic<unsigned> generation_{0};
  std::atomic<unsigned> fatal_generation_{0};
};

}  // namespace pvback::netback
