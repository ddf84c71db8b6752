// The data-plane process's side (`pvback-blk --data-plane 3`): takes its rings, storage and
// statistics from the control part, maps and binds everything, confines itself, serves until told
// to stop. It never touches XenStore.
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "blkback/data_plane.hpp"
#include "blkback/shared_stats.hpp"
#include "grant/platform.hpp"
#include "sandbox/sandbox.hpp"
#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "xenbus/backend_daemon.hpp"

namespace pvback::blkback {
namespace {

void say(int sock, plane::Msg type, int error, const std::string& reason = {}) {
  if (int e = send_message(sock, plane::encode_notice({type, error, reason})))
    PVBACK_LOG(Warning, "data plane: cannot tell the control part (%s)", std::strerror(e));
}

// The current control part, as the queue threads see it: a Fatal goes to it, or waits for the
// successor that adopts this data plane.
class ControlLink {
 public:
  explicit ControlLink(int fd) : fd_(fd) {}
  int fd() const { return fd_; }
  void fatal(int error, const std::string& reason) {
    std::lock_guard lock(mutex_);
    if (fatal_sent_) return;
    if (fd_ >= 0) {
      say(fd_, plane::Msg::Fatal, error, reason);
      fatal_sent_ = true;
    } else if (!pending_) {
      pending_ = true;
      error_ = error;
      reason_ = reason;
    }
  }
  void detach() {
    std::lock_guard lock(mutex_);
    fd_ = -1;
    fatal_sent_ = false;  // the successor has not heard of it
  }
  void attach(int fd) {
    std::lock_guard lock(mutex_);
    fd_ = fd;
    if (pending_) {
      say(fd_, plane::Msg::Fatal, error_, reason_);
      fatal_sent_ = true;
    }
  }

 private:
  std::mutex mutex_;
  int fd_;
  bool fatal_sent_ = false;
  bool pending_ = false;
  int error_ = 0;
  std::string reason_;
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

// Everything before the first guest-controlled byte is read: errno value, or 0.
int set_up(ControlLink& link, const plane::DataPlaneSpec& spec, std::vector<UniqueFd>& fds, Serving& s,
           std::string& why) {
  if (fds.size() != 2 && fds.size() != 3) {
    why = "Start came with " + std::to_string(fds.size()) + " fds, not 2 or 3";
    return EPROTO;
  }
  storage::FileOptions so;
  so.path = spec.storage_path;
  so.read_only = spec.read_only;
  so.discard = spec.discard;
  so.lock = false;  // the control part locked this open file for us
  auto file = storage::FileEngine::adopt(std::move(fds[0]), so);
  if (!file) {
    why = "the storage " + spec.storage_path + ": " + std::strerror(file.error());
    return file.error();
  }
  s.engine = std::move(*file);
  if (spec.inject_latency_us > 0) {
    storage::FaultPlan plan;
    plan.max_latency = std::chrono::microseconds(spec.inject_latency_us);
    plan.seed = static_cast<std::uint64_t>(::getpid());
    s.engine = std::make_unique<storage::FaultEngine>(std::move(s.engine), plan);
  }
  auto stats = SharedQueueStats::adopt(UniqueFd(::dup(fds[1].get())), static_cast<unsigned>(spec.queues.size()));
  if (!stats) {
    why = "the statistics memory";
    return stats.error();
  }
  s.stats = std::move(*stats);

  const grant::Platform platform(grant::PlatformConfig::from_env());
  auto on_fatal = [&link](int error, const std::string& reason) { link.fatal(error, reason); };
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

// The last step before serving: from here on the process holds what it needs and can reach
// nothing else (sandbox/sandbox.hpp). A data plane that cannot confine itself does not serve
// (the control part then fails the device, naming the step); --no-sandbox opts out.
int confine(const plane::DataPlaneSpec& spec, std::string& why) {
  if (!spec.sandbox) {
    PVBACK_LOG(Warning, "%s: data plane: not confined (--no-sandbox)", spec.name.c_str());
    return 0;
  }
  sandbox::Policy policy;
  if (spec.uid != 0) policy.uid = spec.uid;
  if (spec.gid != 0) policy.gid = spec.gid;
  policy.existence_probes = grant::PlatformConfig::from_env().kind == grant::PlatformConfig::Kind::Sim;
  auto report = sandbox::apply(policy);
  if (!report) {
    why = "cannot confine itself: " + report.error();
    return EPERM;
  }
  for (const auto& notice : report->notices)
    PVBACK_LOG(Notice, "%s: data plane sandbox: %s", spec.name.c_str(), notice.c_str());
  return 0;
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
  auto n = recv_message(sock, buf, &fds);
  if (!n || *n == 0) {
    PVBACK_LOG(Error, "data plane: no Start from the control part: %s", n ? "it closed the socket"
                                                                          : std::strerror(n.error()));
    return 1;
  }
  auto spec = plane::decode_start(std::span(buf).first(*n));
  if (!spec) {
    PVBACK_LOG(Error, "data plane: %s", spec.error().c_str());
    say(sock, plane::Msg::Ready, EPROTO, spec.error());
    return 1;
  }
  const char* name = spec->name.c_str();
  ControlLink link(sock);
  Serving s;
  std::string why;
  int e = set_up(link, *spec, fds, s, why);
  if (e == 0) e = confine(*spec, why);
  if (e != 0) {
    PVBACK_LOG(Error, "%s: data plane: %s: %s", name, why.c_str(), std::strerror(e));
    say(sock, plane::Msg::Ready, e, why);
    return 1;
  }
  const UniqueFd stats_fd = std::move(fds[1]);          // handed to an adopting successor
  const UniqueFd listener = fds.size() == 3 ? std::move(fds[2]) : UniqueFd();
  for (auto& q : s.queues) s.threads.emplace_back([queue = q.get()] { queue->run(); });
  say(sock, plane::Msg::Ready, 0);

  UniqueFd adopted;  // the control socket of the successor that adopted us, once one did
  std::chrono::steady_clock::time_point orphaned_at;
  for (;;) {
    const bool orphan = link.fd() < 0;
    int timeout = -1;
    if (orphan) {
      const auto left = std::chrono::milliseconds(spec->orphan_timeout_ms) - (std::chrono::steady_clock::now() - orphaned_at);
      if (left.count() <= 0 || !listener) {
        PVBACK_LOG(Warning, "%s: data plane: no control part adopted it within %u ms: stopping", name,
                   spec->orphan_timeout_ms);
        break;
      }
      timeout = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    pollfd p[] = {{orphan ? listener.get() : link.fd(), POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
    if (::poll(p, 2, timeout) < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "%s: data plane: poll: %s", name, std::strerror(errno));
      break;
    }
    if (p[1].revents & POLLIN) {
      signalfd_siginfo info{};
      [[maybe_unused]] auto r = ::read(signal_fd.get(), &info, sizeof info);
      PVBACK_LOG(Notice, "%s: data plane: signal %u, finishing the requests in flight", name, info.ssi_signo);
      break;
    }
    if (orphan) {
      if ((p[0].revents & POLLIN) == 0) continue;
      UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      pollfd c{conn.get(), POLLIN, 0};
      if (::poll(&c, 1, 1000) != 1) continue;
      auto m = recv_message(conn.get(), buf);
      auto notice = m && *m > 0 ? plane::decode_notice(std::span(buf).first(*m)) : std::unexpected(std::string("nothing"));
      if (notice && notice->type == plane::Msg::Stop) {
        // Its device is gone, or its frontend connected anew (the supervisor or a new control
        // part says so).
        PVBACK_LOG(Notice, "%s: data plane: told to stop while waiting for a successor", name);
        // Left open until this process ends, which is what the sender waits for.
        [[maybe_unused]] const int until_exit = conn.release();
        break;
      }
      if (!notice || notice->type != plane::Msg::Adopt) continue;
      const int stats_fds[] = {stats_fd.get()};
      if (send_message(conn.get(), plane::encode_start(*spec, plane::Msg::Adopted), stats_fds) != 0) continue;
      adopted = std::move(conn);
      link.attach(adopted.get());
      PVBACK_LOG(Notice, "%s: data plane: adopted by a new control part", name);
      continue;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto m = recv_message(link.fd(), buf, nullptr, MSG_DONTWAIT);
      if (m && *m == 0) {
        // The control part died (an orderly one says Stop). Keep serving; its successor adopts us.
        link.detach();
        adopted.reset();
        orphaned_at = std::chrono::steady_clock::now();
        PVBACK_LOG(Warning, "%s: data plane: its control part is gone; serving on, waiting up to %u ms for a successor",
                   name, listener ? spec->orphan_timeout_ms : 0u);
        continue;
      }
      if (!m) {
        if (m.error() == EAGAIN || m.error() == EINTR) continue;
        break;
      }
      auto notice = plane::decode_notice(std::span(buf).first(*m));
      if (!notice) {
        PVBACK_LOG(Error, "%s: data plane: from the control part: %s", name, notice.error().c_str());
        continue;
      }
      if (notice->type == plane::Msg::Stop) break;
      if (notice->type == plane::Msg::Resize) {
        s.engine->refresh_size();
        say(link.fd(), plane::Msg::Resized, 0);
      }
    }
  }
  return 0;  // ~Serving finishes the requests in flight
}

}  // namespace pvback::blkback
