// The blkif side of a vbd's XenBus handshake: what pvback-blk advertises, how it reads the
// frontend's ring keys and how it starts and stops one Queue (and thread) per ring.
#pragma once
#include <atomic>
#include <chrono>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "blkback/data_plane.hpp"
#include "blkback/frontend_keys.hpp"
#include "blkback/options.hpp"
#include "blkback/queue.hpp"
#include "blkback/shared_stats.hpp"
#include "blkback/stats.hpp"
#include "grant/platform.hpp"
#include "plane/cgroup_leaf.hpp"
#include "storage/engine.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::storage {
class RbdEngine;
}

namespace pvback::blkback {

// What the frontend asked for at connect time.
struct Negotiated {
  unsigned queues = 0;
  unsigned ring_page_order = 0;
  Abi abi = Abi::Native;
  bool persistent_grants = false;
};

class VbdDriver final : public xenbus::BackendDriver {
 public:
  // `name` is the device's log name ("vbd 1/51712"). A queue hitting a fatal protocol error calls
  // `on_fatal` from its own thread.
  VbdDriver(const grant::Platform& platform, BackendOptions options, std::string name, DomId frontend_domid,
            Queue::FatalHandler on_fatal);
  ~VbdDriver() override;

  int advertise(xenbus::XenStore& xs, const std::string& backend_path) override;
  int prepare(xenbus::XenStore& xs, const std::string& backend_path) override;
  int connect(xenbus::XenStore& xs, const std::string& frontend_path) override;
  void disconnect() override;
  std::string advertise_failure() const override { return storage_failure_; }

  // Re-reads the storage size; when it changed and the frontend is connected, publishes the new
  // "sectors" and rewrites "state" in one transaction, so the frontend's watch fires (as Linux's
  // xen_vbd_resize does). Returns true if the size changed.
  bool check_resize(xenbus::XenStore& xs);

  // The engine serving the disk, once advertise() opened it.
  const storage::Engine* engine() const { return engine_.get(); }
  const BackendOptions& options() const { return options_; }
  unsigned effective_max_queues() const;
  bool connected() const { return !queues_.empty() || !plane_configs_.empty(); }
  const Negotiated& negotiated() const { return negotiated_; }
  // One entry per queue of the current connection (empty when disconnected).
  const std::vector<QueueStats*>& queue_stats() const { return stats_; }
  // Totals of connections that ended, so an operator's counters never go backwards.
  const QueueStats& past_totals() const { return past_; }
  // Each connect() starts a new generation; a fatal error reported by a queue carries the one it
  // belonged to, so the main loop can ignore an error of a connection that is already gone.
  unsigned generation() const { return generation_.load(); }
  unsigned fatal_generation() const { return fatal_generation_.load(); }
  // Deletes this device's crash-recovery records (the device is gone: nothing will resume it).
  void remove_recovery_records();
  // The process is ending while the device lives on: disconnect() keeps the records (those with
  // work pending stay live) for a successor instead of deleting them.
  void keep_recovery_records() { keep_recovery_records_ = true; }
  // The process is ending while the device lives on (after keep_recovery_records()): the data
  // plane is left serving for a successor to adopt, if --on-stop says so (auto: it is in a systemd
  // scope of its own) and it can be adopted; disconnect() then leaves it, its listening socket
  // and its control group alone. True if it was left.
  bool leave_data_plane();
  // "mode" is r, or the storage refuses writes (a read-only NBD export).
  bool read_only() const { return read_only_ || (engine_ && engine_->capabilities().read_only); }
  bool cdrom() const { return cdrom_; }

  // The data-plane process of the current connection, if its rings are served by one: the main
  // loop polls data_plane_fd() (-1: none) and calls on_data_plane_event() when it is readable. A
  // data plane that died is started again at once, resuming its rings from their recovery records
  // (the guest sees a pause); one that keeps dying fails the device.
  int data_plane_fd() const { return plane_.running() ? plane_.fd() : -1; }
  void on_data_plane_event();
  // The operator's requests (xenbus::DeviceService's contract; vbd_operations.cpp): a restart of
  // the data plane, the pause and the resume. None waits: each ends from on_data_plane_event, from
  // check_operations (the loop's timer: deadlines) or from disconnect().
  [[nodiscard]] int begin_restart(xenbus::OperationDone done);
  [[nodiscard]] int begin_pause(std::chrono::milliseconds drain_timeout, xenbus::OperationDone done);
  [[nodiscard]] int begin_resume(xenbus::OperationDone done);
  void check_operations();
  // The device is paused: the pause is the device's, not its data plane's or its connection's. A
  // data plane started while it is (a restart, a crash, a new connection of the frontend) starts
  // paused; a successor of this process finds it beside the recovery records, or in what the
  // data plane it adopts says.
  bool paused() const { return paused_; }

  // The operator's change of a tunable (pvbackctl set, blkback/tunables.hpp): `key` set to
  // `value` in the options. One the frontend negotiates is advertised again now (its next
  // connection reads it); one that takes effect now is given to the running queues (the data
  // plane's Tune). The error is the operator's message.
  [[nodiscard]] std::expected<TunableChange, std::string> set_tunable(xenbus::XenStore& xs, std::string_view key,
                                                                      std::string_view value);
  pid_t data_plane_pid() const { return plane_.running() ? plane_.pid() : -1; }
  unsigned data_plane_restarts() const { return plane_restarts_; }
  // The data plane's control group directories, if it has one (one per cgroup hierarchy used).
  const std::vector<std::string>& data_plane_cgroup() const { return cgroup_.dirs(); }

 private:
  int open_storage(xenbus::XenStore& xs, const std::string& backend_path);
  std::expected<std::unique_ptr<storage::Engine>, int> open_engine(const std::string& params) const;
  bool use_direct_io() const;
  int publish_disk(xenbus::XenStore& xs, xenbus::Txn txn);
  QueueConfig queue_config(const FrontendRing& ring, unsigned index) const;
  int launch_data_plane(bool resume);
  bool adopt_data_plane();
  std::string lock_owner_path() const;
  void record_lock_owner(const std::string& owner);
  void break_dead_lock(storage::RbdEngine& rbd);
  void fail_connection(int error, const std::string& reason);
  int make_stats();
  void use_stats(SharedQueueStats stats);  // the statistics of the current connection
  std::string adoption_path() const;
  [[nodiscard]] int make_cgroup();
  // The operator's requests (vbd_operations.cpp).
  void on_data_plane_said(const ::pvback::plane::Process::Event& ev);
  void finish_operation(const xenbus::Outcome& outcome);
  void abandon_operations();  // the data plane is gone with the connection
  void tell_resume();  // the data plane, if it runs
  std::string pause_marker_path() const;
  void keep_pause_marker() const;
  // The engine under the testing FaultEngine, if any.
  const storage::Engine* base_engine() const;
  storage::Engine* base_engine();
  bool serves_in_process() const;
  // A data plane of this device can outlive its control part: not one tied to a qemu-storage-daemon
  // of this process's (that daemon dies with it), which a successor can neither adopt nor be left.
  bool data_plane_outlives_control() const;

  const grant::Platform& platform_;
  // What the frontend negotiates from, as the backend's directory holds it: what a connection is
  // checked against, and what its queues take (indirect segments). The operator's change of one
  // while the frontend is connected waits for its next connection (`advertised_stale_`); a
  // successor resuming a connection takes the directory's, not its own options'.
  struct Advertised {
    unsigned max_queues = 0;
    unsigned max_ring_page_order = 0;
    unsigned max_indirect_segments = 0;
    bool persistent_grants = false;
    bool operator==(const Advertised&) const = default;
  };
  Advertised wanted_advertisement() const;
  int write_negotiable(xenbus::XenStore& xs);
  void read_advertised(xenbus::XenStore& xs);
  void refresh_advertisement(xenbus::XenStore& xs) override;
  Advertised advertised_;
  bool advertised_stale_ = false;
  BackendOptions options_;
  std::string name_;
  DomId frontend_domid_;
  Queue::FatalHandler on_fatal_;
  std::string backend_path_;
  std::unique_ptr<storage::Engine> engine_;
  bool read_only_ = false;
  std::string params_;           // what the storage was opened from
  std::string lock_owner_;       // the RBD data plane's exclusive-lock owner (LockOwner)
  std::string storage_failure_;  // "opening <params>" once opening the storage failed
  bool cdrom_ = false;
  bool removable_ = false;
  bool discard_enable_ = true;
  // The first connect() of this process may resume a predecessor's rings from their recovery
  // records (if they are live and belong to them); later ones are new connections.
  bool resume_next_connect_ = false;
  std::string recovery_prefix_;  // "<recovery dir>/vbd-<domid>-<devid>"
  bool keep_recovery_records_ = false;
  bool left_serving_ = false;  // leave_data_plane()
  Negotiated negotiated_;
  SharedQueueStats shared_stats_;
  std::vector<QueueStats*> stats_;  // into shared_stats_
  std::vector<std::unique_ptr<Queue>> queues_;
  // The data-plane process serving the rings, and what it was given, to start it again.
  ::pvback::plane::Process plane_;
  ::pvback::plane::CgroupLeaf cgroup_;  // the data plane's, for the connection's lifetime (restarts included)
  std::vector<QueueConfig> plane_configs_;
  unsigned plane_restarts_ = 0;
  ::pvback::plane::RestartLimit restart_limit_;
  std::vector<std::thread> threads_;
  QueueStats past_;
  std::atomic<unsigned> generation_{0};
  std::atomic<unsigned> fatal_generation_{0};
  // The operator's requests under way: a restart, or a pause draining / a resume to be confirmed.
  ::pvback::plane::PendingRestart restarting_;
  struct Operation {
    enum Kind { None, Pause, Resume } kind = None;
    std::chrono::steady_clock::time_point started{}, deadline{};
    std::chrono::milliseconds timeout{0};
    xenbus::OperationDone done;
    std::int64_t paused_ms = 0;  // Resume: how long the device had been paused
  };
  Operation operation_;
  bool paused_ = false;
  std::chrono::steady_clock::time_point paused_since_{};
};

}  // namespace pvback::blkback
