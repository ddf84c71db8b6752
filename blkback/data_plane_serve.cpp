// The data-plane process's side (`pvback-blk --data-plane 3`): takes its rings, storage and
// statistics from the control part, maps and binds everything, confines itself, serves until told
// to stop. It never touches XenStore.
#include <sys/prctl.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "blkback/data_plane.hpp"
#include "blkback/shared_stats.hpp"
#include "grant/platform.hpp"
#include "plane/serve.hpp"
#include "sandbox/sandbox.hpp"
#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "storage/nbd_engine.hpp"
#ifdef PVBACK_HAVE_RBD
#include "storage/rbd_engine.hpp"
#endif
#include "xenbus/backend_daemon.hpp"

namespace pvback::blkback {
namespace {

// The operator's pause across the queues (Pause, Resume): each queue reports from its own thread,
// and the last report of the latest round tells the control part (Paused with the figures summed,
// Resumed with the requests that waited). A report of a round superseded is dropped.
class PauseRounds {
 public:
  explicit PauseRounds(::pvback::plane::ControlLink& link) : link_(link) {}

  void pause(const std::vector<std::unique_ptr<Queue>>& queues) {
    const std::uint64_t round = begin(queues.size());
    for (auto& q : queues)
      q->pause([this, round](const Queue::PauseReport& r) {
        std::lock_guard lock(mutex_);
        if (round != round_) return;
        figures_.drained += r.drained;
        figures_.drain_us = std::max<std::uint64_t>(figures_.drain_us, static_cast<std::uint64_t>(r.drain.count()));
        figures_.flush_us = std::max<std::uint64_t>(figures_.flush_us, static_cast<std::uint64_t>(r.flush.count()));
        if (figures_.error == 0) figures_.error = r.error;
        if (--left_ == 0) link_.send(plane::encode_paused(figures_));
      });
  }

  void resume(const std::vector<std::unique_ptr<Queue>>& queues) {
    const std::uint64_t round = begin(queues.size());
    for (auto& q : queues)
      q->resume([this, round](std::uint64_t waiting) {
        std::lock_guard lock(mutex_);
        if (round != round_) return;
        waiting_ += waiting;
        if (--left_ == 0) link_.send(plane::encode_resumed(waiting_));
      });
  }

 private:
  std::uint64_t begin(std::size_t queues) {
    std::lock_guard lock(mutex_);
    left_ = queues;
    figures_ = {};
    waiting_ = 0;
    return ++round_;
  }

  ::pvback::plane::ControlLink& link_;
  std::mutex mutex_;
  std::uint64_t round_ = 0;
  std::size_t left_ = 0;
  plane::PauseFigures figures_;
  std::uint64_t waiting_ = 0;
};

struct Serving {
  std::unique_ptr<storage::Engine> engine;
  SharedQueueStats stats;
  std::vector<std::unique_ptr<Queue>> queues;
  std::vector<std::thread> threads;

  ~Serving() {
    for (auto& q : queues) q->stop();
    for (auto& t : threads) t.join();
    queues.clear();  // waits for in-flight I/O and unmaps everything
  }
};

// The storage: the file the control part opened and locked (it came as fds[0]), or the NBD
// server or RBD image the spec names, connected to now, while the process may still make
// connections and read the cluster's configuration and key.
std::expected<std::unique_ptr<storage::Engine>, int> open_storage(const plane::DataPlaneSpec& spec, UniqueFd file_fd) {
  if (!spec.rbd_params.empty()) {
#ifdef PVBACK_HAVE_RBD
    auto o = storage::parse_rbd_params(spec.rbd_params);
    if (!o) {
      PVBACK_LOG(Error, "%s: data plane: \"%s\": %s", spec.name.c_str(), spec.rbd_params.c_str(), o.error().c_str());
      return std::unexpected(EINVAL);
    }
    o->read_only = spec.read_only;
    o->discard = spec.discard;
    // No admin socket: it would be a file this process makes, and a way in that is not the ring.
    o->settings.emplace_back("admin_socket", "");
    o->take_lock = true;
    auto rbd = storage::RbdEngine::open(*o);
    if (!rbd) return std::unexpected(rbd.error());
    return std::unique_ptr<storage::Engine>(std::move(*rbd));
#else
    return std::unexpected(EOPNOTSUPP);
#endif
  }
  if (!spec.nbd_uri.empty()) {
    storage::NbdOptions o;
    o.uri = spec.nbd_uri;
    o.read_only = spec.read_only;
    o.discard = spec.discard;
    o.server_is_ours = spec.storage_ours;
    auto nbd = storage::NbdEngine::open(o);
    if (!nbd) return std::unexpected(nbd.error());
    return std::unique_ptr<storage::Engine>(std::move(*nbd));
  }
  storage::FileOptions so;
  so.path = spec.storage_path;
  so.read_only = spec.read_only;
  so.discard = spec.discard;
  so.lock = false;  // the control part locked this open file for us
  auto file = storage::FileEngine::adopt(std::move(file_fd), so);
  if (!file) return std::unexpected(file.error());
  return std::unique_ptr<storage::Engine>(std::move(*file));
}

// Everything before the first guest-controlled byte is read: errno value, or 0. `fds` are what
// came with Start: [the storage file,] the statistics memory[, the adoption listener].
int set_up(::pvback::plane::ControlLink& link, plane::DataPlaneSpec& spec, std::vector<UniqueFd>& fds, Serving& s,
           std::string& why) {
  const std::size_t storage_fds = spec.nbd_uri.empty() && spec.rbd_params.empty() ? 1 : 0;
  if (fds.size() != storage_fds + 1 && fds.size() != storage_fds + 2) {
    why = "Start came with " + std::to_string(fds.size()) + " fds, not " + std::to_string(storage_fds + 1) + " or " +
          std::to_string(storage_fds + 2);
    return EPROTO;
  }
  auto engine = open_storage(spec, storage_fds != 0 ? std::move(fds[0]) : UniqueFd());
  if (!engine) {
    why = "the storage " + spec.storage_path + ": " + std::strerror(engine.error());
    return engine.error();
  }
  fds.erase(fds.begin(), fds.begin() + static_cast<std::ptrdiff_t>(storage_fds));  // [stats, listener]
  s.engine = std::move(*engine);
  if (spec.inject_latency_us > 0) {
    storage::FaultPlan plan;
    plan.max_latency = std::chrono::microseconds(spec.inject_latency_us);
    plan.seed = static_cast<std::uint64_t>(::getpid());
    s.engine = std::make_unique<storage::FaultEngine>(std::move(s.engine), plan);
  }
  auto stats = SharedQueueStats::adopt(UniqueFd(::dup(fds[0].get())), static_cast<unsigned>(spec.queues.size()));
  if (!stats) {
    why = "the statistics memory";
    return stats.error();
  }
  s.stats = std::move(*stats);
  if (spec.storage_ours) {
    // The control part's storage daemon died: the requests it failed are left unanswered in the
    // recovery record, and this process ends as a crash would (75), for the control part to start
    // the daemon and a data plane again, which executes them again.
    for (auto& q : spec.queues)
      q.on_storage_lost = [name = spec.name, storage = spec.storage_path](int error) {
        PVBACK_LOG(Error, "%s: data plane: its storage is gone (%s: %s): exiting, so that a successor executes the "
                   "requests in flight again from the recovery record", name.c_str(), storage.c_str(),
                   std::strerror(error));
        std::_Exit(75);
      };
  }

  const grant::Platform platform(grant::PlatformConfig::from_env());
  auto on_fatal = [&link](int error, const std::string& reason) { link.fatal(error, reason); };
  for (auto& q : spec.queues) q.start_paused = spec.paused;
  for (std::size_t i = 0; i < spec.queues.size(); ++i) {
    auto q = Queue::create(platform, *s.engine, spec.queues[i], s.stats.at(static_cast<unsigned>(i)), on_fatal);
    if (!q) {
      why = "queue " + std::to_string(i) + ": cannot map the ring or bind the event channel";
      return q.error();
    }
    s.queues.push_back(std::move(*q));
  }
  return 0;
}

// The RBD image's exclusive lock this data plane took (RbdOptions::take_lock): its owner's
// address told to the control part, which breaks the lock once this process died.
void report_lock_owner([[maybe_unused]] const plane::DataPlaneSpec& spec, [[maybe_unused]] storage::Engine& engine,
                       [[maybe_unused]] ::pvback::plane::ControlLink& link) {
#ifdef PVBACK_HAVE_RBD
  auto* fault = dynamic_cast<storage::FaultEngine*>(&engine);
  auto* rbd = dynamic_cast<storage::RbdEngine*>(fault != nullptr ? &fault->inner() : &engine);
  if (rbd == nullptr || rbd->lock_owner().empty()) return;
  link.say(static_cast<std::uint32_t>(plane::Msg::LockOwner), 0, rbd->lock_owner());
#endif
}

// An RBD image's data plane runs librbd's threads from the cluster connection on, and reaches the
// cluster's monitors and OSDs over new connections whenever librbd wants one: it keeps the
// host's network and file system (no namespace can be entered by a process with threads), and
// its filter also allows making and using sockets. Everything else applies as to any data plane.
sandbox::Policy policy_for(const plane::DataPlaneSpec& spec) {
  if (spec.rbd_params.empty()) return ::pvback::plane::data_plane_policy(sandbox::Profile::Block);
  sandbox::Policy p = ::pvback::plane::data_plane_policy(sandbox::Profile::BlockNetwork);
  p.mount_namespace = false;
  p.network = true;
  p.ipc_namespace = false;
  p.threads_running = true;
  p.fd_margin = 4096;  // a connection per OSD the image's objects live on
  return p;
}

}  // namespace

int serve_as_data_plane(int sock) {
  log::set_program("pvback-blk-dp");
  ::prctl(PR_SET_NAME, "pvback-blk-dp");
#ifdef PVBACK_BUILD_NOTE
  PVBACK_LOG(Info, "build %s", PVBACK_BUILD_NOTE);
#endif
  UniqueFd signal_fd = xenbus::take_termination_signals();  // before any thread starts
  std::vector<std::byte> buf(plane::kMaxMessage);
  std::vector<UniqueFd> fds;
  auto n = ::pvback::plane::receive_start(sock, buf, fds);
  if (!n) return 1;
  ::pvback::plane::ControlLink link(sock, plane::kProtocol);
  auto spec = plane::decode_start(std::span(buf).first(*n));
  if (!spec) {
    PVBACK_LOG(Error, "data plane: %s", spec.error().c_str());
    link.say(::pvback::plane::kReady, EPROTO, spec.error());
    return 1;
  }
  // Before `s`: the queue threads report to it until ~Serving joins them.
  PauseRounds rounds(link);
  Serving s;
  std::string why;
  int e = set_up(link, *spec, fds, s, why);
  // The last step before serving: a data plane that cannot confine itself does not serve.
  if (e == 0) e = ::pvback::plane::confine(spec->name, spec->sandbox, spec->uid, spec->gid, policy_for(*spec), why);
  if (e != 0) {
    PVBACK_LOG(Error, "%s: data plane: %s: %s", spec->name.c_str(), why.c_str(), std::strerror(e));
    link.say(::pvback::plane::kReady, e, why);
    return 1;
  }
  const UniqueFd stats_fd = std::move(fds[0]);  // handed to an adopting successor
  const UniqueFd listener = fds.size() == 2 ? std::move(fds[1]) : UniqueFd();
  for (auto& q : s.queues) s.threads.emplace_back([queue = q.get()] { queue->run(); });
  link.say(::pvback::plane::kReady, 0);
  report_lock_owner(*spec, *s.engine, link);
  // Started while the device is paused (a restart, a crash, a new connection): Paused once what the
  // records left is drained, as after a Pause (never before Ready, which the control part awaits).
  if (spec->paused) rounds.pause(s.queues);

  ::pvback::plane::ServeHooks hooks;
  hooks.on_message = [&](std::uint32_t type, std::span<const std::byte> message, ::pvback::plane::ControlLink& to) {
    switch (static_cast<plane::Msg>(type)) {
      case plane::Msg::Resize:
        s.engine->refresh_size();
        to.say(static_cast<std::uint32_t>(plane::Msg::Resized), 0);
        break;
      case plane::Msg::Pause:
        spec->paused = true;  // what an adopting successor is told
        rounds.pause(s.queues);
        break;
      case plane::Msg::Resume:
        spec->paused = false;
        rounds.resume(s.queues);
        break;
      case plane::Msg::Tune:
        if (auto t = plane::decode_tune(message); !t) {
          PVBACK_LOG(Error, "%s: data plane: from the control part: %s", spec->name.c_str(), t.error().c_str());
        } else {
          for (auto& q : s.queues) q->tune(*t);
          for (auto& c : spec->queues) apply_live_tuning(c, *t);  // what an adopting successor is told
        }
        break;
      default:
        break;
    }
  };
  hooks.adopted = [&] { return plane::encode_start(*spec, plane::Msg::Adopted); };
  hooks.adopted_fds = {stats_fd.get()};
  ::pvback::plane::serve_control(link, listener, signal_fd, spec->name, plane::kProtocol,
                                 std::chrono::milliseconds(spec->orphan_timeout_ms), hooks);
  return 0;  // ~Serving finishes the requests in flight
}

}  // namespace pvback::blkback
