// What an operator can tune per vbd (pvback-blk's command line), with Linux blkback's defaults
// where it has one.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "blkback/queue.hpp"
#include "plane/cgroup_leaf.hpp"
#include "plane/options.hpp"

namespace pvback::blkback {

struct BackendOptions {
  unsigned max_queues = 0;                 // multi-queue-max-queues; 0 = CPUs, at most 8 (base/queue_count.hpp)
  unsigned max_ring_page_order = 4;        // max-ring-page-order (Linux: xen_blkif_max_ring_order = 4)
  unsigned max_indirect_segments = 256;    // feature-max-indirect-segments; 0 = no indirect requests
  bool persistent_grants = true;           // feature-persistent
  unsigned max_persistent_grants = 1056;   // per queue (Linux: xen_blkif_max_pgrants)
  std::chrono::milliseconds persistent_idle_expiry{60'000};  // Linux: pgrant_timeout = 60 s
  std::chrono::microseconds poll_max = kDefaultPollMax;  // QueueConfig::poll_max
  unsigned submit_batch = kDefaultSubmitBatch;           // QueueConfig::submit_batch
  DataPath data_path = DataPath::Copy;     // for grants that are not persistent
  // O_DIRECT when the storage accepts it. Auto: unless guest pages would be pinned for it where
  // that is unsafe (grant::Platform::direct_io_into_mappings), i.e. on a PV dom0 with persistent
  // grants or the map data path; there the storage is served buffered.
  enum class Direct { Auto, On, Off };
  Direct direct = Direct::Auto;
  bool flush = true;                       // feature-flush-cache
  bool barrier = true;                     // feature-barrier
  // Where each queue keeps its crash-recovery record (blkback/recovery.hpp); empty: none.
  std::string recovery_dir;
  // An image served through pvback-blk's own qemu-storage-daemon: each write answered only once
  // QEMU's caches (a qcow2's cluster tables) reached the file, so that a daemon that dies loses no
  // answered write (writethrough); or answered at once, QEMU caching what it likes until the
  // guest's flush (writeback: faster, but a daemon crash loses answered writes since the last
  // flush, as QEMU's qdisk crashing would).
  bool image_writeback = false;
  // Testing: every storage operation first waits a random 0..N microseconds (storage::FaultEngine),
  // so that completions come back out of order. 0: off.
  std::chrono::microseconds inject_latency{0};
  // Serve a raw file's or block device's rings in a data-plane process of their own (see
  // data_plane.hpp) rather than on threads of this one. Images and RBD disks are served on threads
  // for now (their engines hold a storage daemon or a cluster connection of this process).
  bool data_plane_process = true;
  std::string data_plane_binary;           // empty: this executable
  // A data plane that dies is started again at once, this many times within 10 s (systemd's
  // StartLimitBurst default); one more death fails the device (a guest that can crash it would
  // otherwise keep a core busy restarting it).
  unsigned data_plane_restart_burst = 5;
  // A data plane whose control part died serves on this long for a successor to adopt it, then
  // stops (the successor then resumes its rings from the records).
  std::chrono::milliseconds orphan_timeout{60'000};
  ::pvback::plane::OnStop on_stop = ::pvback::plane::OnStop::Auto;  // --on-stop
  // The data plane's sandbox (sandbox/sandbox.hpp) and its uid: base + the frontend's domid.
  bool sandbox = true;
  std::uint32_t sandbox_uid_base = 0x70000000;
  // The data plane's control group (plane/cgroup_leaf.hpp): a leaf "vbd-<domid>-<devid>" holding
  // it to memory, task and CPU limits. Defaults (VbdDriver::make_cgroup): memory 64 MiB + 32 MiB
  // per queue, tasks enough for every queue's thread and its io_uring's workers, no CPU limit.
  ::pvback::plane::CgroupOptions cgroup;
  // The operator can pause and resume the vbd (the host daemon's control socket, pvbackctl): a
  // pause its predecessor left (the marker beside the recovery records, or an adopted data plane
  // that says so) holds. pvback-blk alone has no control socket: a pause it finds would never
  // end, and is dropped (logged).
  bool pausable = false;
};

}  // namespace pvback::blkback
