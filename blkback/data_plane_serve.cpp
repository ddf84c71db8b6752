// The data-plane process's side (`pvback-blk --data-plane 3`): takes its rings, storage and
// statistics from the control part, maps and binds everything, confines itself, serves until told
// to stop. It never touches XenStore.
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <atomic>
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
int set_up(int sock, const plane::DataPlaneSpec& spec, std::vector<UniqueFd>& fds, Serving& s,
           std::string& why) {
  if (fds.size() != 2) {
    why = "Start came with " + std::to_string(fds.size()) + " fds, not 2";
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
  auto stats = SharedQueueStats::adopt(std::move(fds[1]), static_cast<unsigned>(spec.queues.size()));
  if (!stats) {
    why = "the statistics memory";
    return stats.error();
  }
  s.stats = std::move(*stats);

  const grant::Platform platform(grant::PlatformConfig::from_env());
  auto on_fatal = [sock, sent = std::make_shared<std::atomic<bool>>(false)](int error, const std::string& reason) {
    if (!sent->exchange(true)) say(sock, plane::Msg::Fatal, error, reason);
  };
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
  Serving s;
  std::string why;
  int e = set_up(sock, *spec, fds, s, why);
  if (e == 0) e = confine(*spec, why);
  if (e != 0) {
    PVBACK_LOG(Error, "%s: data plane: %s: %s", name, why.c_str(), std::strerror(e));
    say(sock, plane::Msg::Ready, e, why);
    return 1;
  }
  for (auto& q : s.queues) s.threads.emplace_back([queue = q.get()] { queue->run(); });
  say(sock, plane::Msg::Ready, 0);

  for (;;) {
    pollfd p[] = {{sock, POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
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
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      auto m = recv_message(sock, buf, nullptr, MSG_DONTWAIT);
      if (m && *m == 0) break;  // the control part is gone: stop (its successor resumes the rings)
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
        say(sock, plane::Msg::Resized, 0);
      }
    }
  }
  return 0;  // ~Serving finishes the requests in flight
}

}  // namespace pvback::blkback
