// VbdDriver's data-plane process (vbd_driver.hpp): its launch with everything it serves, its
// adoption from a dead predecessor of this process, its control group, and the RBD image's lock it
// holds, broken once it died.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <thread>

#include "base/log.hpp"
#include "base/text_file.hpp"
#include "blkback/tunables.hpp"
#include "blkback/vbd_driver.hpp"
#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "storage/nbd_engine.hpp"
#ifdef PVBACK_HAVE_RBD
#include "storage/rbd_engine.hpp"
#endif

namespace pvback::blkback {

std::string VbdDriver::adoption_path() const { return recovery_prefix_.empty() ? "" : recovery_prefix_ + ".dp"; }

bool VbdDriver::adopt_data_plane() {
  const std::string path = adoption_path();
  if (path.empty()) return false;
  plane::DataPlaneSpec spec;
  UniqueFd stats_fd;
  auto p = blkback::adopt_data_plane(path, name_, spec, stats_fd);
  if (!p) {
    if (p.error() != ENOENT && p.error() != ECONNREFUSED)
      PVBACK_LOG(Warning, "%s: no data plane adopted from %s: %s", name_.c_str(), path.c_str(), std::strerror(p.error()));
    return false;
  }
  bool same = spec.queues.size() == plane_configs_.size();
  for (std::size_t i = 0; same && i < spec.queues.size(); ++i) {
    const QueueConfig &a = spec.queues[i], &b = plane_configs_[i];
    same = a.ring_refs == b.ring_refs && a.remote_port == b.remote_port && a.abi == b.abi &&
           a.frontend_domid == b.frontend_domid;
  }
  if (!same) {
    PVBACK_LOG(Notice, "%s: the data plane left serving (pid %d) serves rings of an earlier connection: stopping it",
               name_.c_str(), p->pid());
    p->stop();
    return false;
  }
  auto stats = SharedQueueStats::adopt(std::move(stats_fd), negotiated_.queues);
  if (!stats) {
    p->stop();
    return false;
  }
  use_stats(std::move(*stats));
  plane_ = std::move(*p);
  cgroup_.adopt(plane_.pid());
  // What the data plane says holds: it may have been paused or resumed after this process's
  // predecessor last wrote the marker.
  paused_ = spec.paused;
  if (paused_ && !options_.pausable) {
    PVBACK_LOG(Warning, "%s: the data plane adopted was paused by the operator under the host daemon: resuming it "
               "(nothing here could)", name_.c_str());
    tell_resume();
    paused_ = false;
  }
  if (paused_) paused_since_ = std::chrono::steady_clock::now();
  keep_pause_marker();
  // The operator's limits are this process's (the config file and what pvbackctl set, kept in the
  // run directory): a data plane tuned otherwise under a predecessor is told.
  if (const LiveTuning mine = live_tuning(options_);
      !spec.queues.empty() && live_tuning_of(spec.queues.front()) != mine) {
    PVBACK_LOG(Info, "%s: the adopted data plane's live tunables (persistent-grant limits, polling window, "
               "submission batch) differ from the configured ones: telling it",
               name_.c_str());
    if (const int e = plane_.send(plane::encode_tune(mine)))
      PVBACK_LOG(Warning, "%s: the data plane was not told (%s)", name_.c_str(), std::strerror(e));
  }
  return true;
}

int VbdDriver::launch_data_plane(bool resume) {
  plane::DataPlaneSpec spec;
  spec.name = name_;
  UniqueFd storage;
  if (const auto* file = dynamic_cast<const storage::FileEngine*>(base_engine())) {
    auto opened = file->reopen_locked();
    if (!opened) {
      PVBACK_LOG(Error, "%s: cannot open %s for the data plane: %s", name_.c_str(), file->path().c_str(),
                 std::strerror(opened.error()));
      return opened.error();
    }
    storage = std::move(*opened);
    spec.storage_path = file->path();
  } else if (std::string_view(base_engine()->kind()) == "rbd") {
    // The data plane opens the image itself, with its own cluster connection; this process's
    // stays for the image's size.
#ifdef PVBACK_HAVE_RBD
    break_dead_lock(*dynamic_cast<storage::RbdEngine*>(base_engine()));
#endif
    spec.rbd_params = params_;
    spec.storage_path = base_engine()->describe();
  } else {
    // An NBD server (serves_in_process() takes no other engine here): the data plane connects to
    // it. This process's storage daemon comes back first if it died (what ended the last data
    // plane, most likely).
    auto* nbd = dynamic_cast<storage::NbdEngine*>(base_engine());
    if (int e = nbd->revive_storage_daemon()) {
      PVBACK_LOG(Error, "%s: its storage daemon cannot be started again: %s", name_.c_str(), std::strerror(e));
      return e;
    }
    spec.nbd_uri = nbd->uri();
    spec.storage_ours = nbd->server_is_ours();
    spec.storage_path = nbd->describe();
  }
  spec.read_only = read_only_;
  spec.discard = discard_enable_;
  spec.inject_latency_us = static_cast<std::uint64_t>(options_.inject_latency.count());
  spec.sandbox = options_.sandbox;
  spec.uid = spec.gid = options_.sandbox_uid_base + frontend_domid_;
  spec.orphan_timeout_ms = static_cast<std::uint32_t>(options_.orphan_timeout.count());
  spec.paused = paused_;
  keep_pause_marker();
  const UniqueFd listener = ::pvback::plane::listen_for_adoption(adoption_path(), name_);
  spec.queues = plane_configs_;
  for (auto& q : spec.queues) {
    q.resume = q.resume || resume;
    if (resume) q.bind_patience = grant::kSuccessorBindPatience;
  }
  // Binding patiently may take kSuccessorBindPatience per queue.
  const auto timeout = std::chrono::milliseconds(10'000) + grant::kSuccessorBindPatience * spec.queues.size();
  auto p = blkback::launch_data_plane(options_.data_plane_binary, spec, storage ? storage.get() : -1, shared_stats_.fd(),
                                      listener ? listener.get() : -1, timeout, cgroup_.placer());
  if (!p) return p.error();
  plane_ = std::move(*p);
  return 0;
}

// The data plane's control group for this connection: its limits follow the queues negotiated
// (64 MiB + 32 MiB per queue; each queue's thread and its io_uring's bounded workers, at most 4
// per CPU). A data plane adopted from a dead predecessor is in this leaf already (it is reused).
// An RBD image's data plane also runs librbd: its cache (rbd_cache_size, 32 MiB by default), the
// messenger's buffers and threads, and the threads of librados' pools, which grow when it starts
// them: 256 MiB and 96 tasks more.
int VbdDriver::make_cgroup() {
  const auto queues = static_cast<std::uint64_t>(plane_configs_.size());
  const auto cpus = static_cast<std::uint64_t>(std::max(1u, std::thread::hardware_concurrency()));
  const bool rbd = engine_ != nullptr && std::string_view(base_engine()->kind()) == "rbd";
  return cgroup_.make({(std::uint64_t{64} << 20) + queues * (std::uint64_t{32} << 20) + (rbd ? std::uint64_t{256} << 20 : 0),
                       32 + queues * (1 + 4 * cpus) + (rbd ? 96 : 0)});
}

// The data plane's RBD lock owner, kept beside the recovery records so that a successor of this
// process finds it too.
std::string VbdDriver::lock_owner_path() const { return recovery_prefix_.empty() ? "" : recovery_prefix_ + ".rbd-lock"; }

void VbdDriver::record_lock_owner(const std::string& owner) {
  if (owner.empty() || owner.size() > 256) return;
  lock_owner_ = owner;
  if (const std::string path = lock_owner_path(); !path.empty())
    if (const int e = write_file_atomically(path, owner))
      PVBACK_LOG(Warning, "%s: cannot keep the image's lock owner in %s: %s", name_.c_str(), path.c_str(),
                 std::strerror(e));
}

#ifdef PVBACK_HAVE_RBD
// A data plane that died holding the RBD image's exclusive lock would make its successor wait for
// the cluster to drop its watch (30 s) before any write: its lock is broken (and that client
// blocked by the cluster) first.
void VbdDriver::break_dead_lock(storage::RbdEngine& rbd) {
  std::string owner = lock_owner_;
  if (owner.empty())
    if (const std::string path = lock_owner_path(); !path.empty()) std::getline(std::ifstream(path), owner);
  if (owner.empty()) return;
  if (const int e = rbd.break_lock_of(owner); e == 0)
    PVBACK_LOG(Notice, "%s: broke the image's lock held by the dead data plane (%s)", name_.c_str(), owner.c_str());
  else if (e != ENOENT)
    PVBACK_LOG(Warning, "%s: cannot break the image's lock held by the dead data plane (%s): %s", name_.c_str(),
               owner.c_str(), std::strerror(e));
  lock_owner_.clear();
  if (const std::string path = lock_owner_path(); !path.empty()) ::unlink(path.c_str());
}
#endif

}  // namespace pvback::blkback
