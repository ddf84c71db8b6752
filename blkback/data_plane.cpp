#include "blkback/data_plane.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "base/fd_passing.hpp"
#include "base/log.hpp"

namespace pvback::blkback {
namespace {

// Waits up to `timeout` for one notice of type `want` (other notices are not expected here).
std::expected<plane::Notice, int> await_notice(int sock, plane::Msg want, std::chrono::milliseconds timeout,
                                               const std::string& name) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::unexpected(ETIMEDOUT);
    pollfd p{sock, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return std::unexpected(errno);
    if (r == 0) return std::unexpected(ETIMEDOUT);
    std::vector<std::byte> buf(4096);
    auto n = recv_message(sock, buf);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return std::unexpected(ECONNRESET);  // it ended
    auto notice = plane::decode_notice(std::span(buf).first(*n));
    if (!notice) {
      PVBACK_LOG(Error, "%s: data plane: %s", name.c_str(), notice.error().c_str());
      return std::unexpected(EPROTO);
    }
    if (notice->type == want) return *notice;
    PVBACK_LOG(Warning, "%s: data plane: unexpected notice %u while waiting", name.c_str(),
               static_cast<unsigned>(notice->type));
  }
}

// A process that is not our child is gone once it is a zombie or reaped.
bool gone(pid_t pid) {
  if (::kill(pid, 0) != 0 && errno == ESRCH) return true;
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "re");
  if (f == nullptr) return true;
  char state = '?';
  const int got = std::fscanf(f, "%*d (%*[^)]) %c", &state);
  std::fclose(f);
  return got == 1 && (state == 'Z' || state == 'X');
}

}  // namespace

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "ended (wait status " + std::to_string(status) + ")";
}

DataPlaneProcess::DataPlaneProcess(DataPlaneProcess&& o) noexcept
    : child_(o.child_), name_(std::move(o.name_)), sock_(std::move(o.sock_)), pid_(std::exchange(o.pid_, -1)) {}

DataPlaneProcess& DataPlaneProcess::operator=(DataPlaneProcess&& o) noexcept {
  if (this != &o) {
    if (running()) stop();
    child_ = o.child_;
    name_ = std::move(o.name_);
    sock_ = std::move(o.sock_);
    pid_ = std::exchange(o.pid_, -1);
  }
  return *this;
}

DataPlaneProcess::~DataPlaneProcess() {
  if (running()) stop();
}

std::expected<DataPlaneProcess, int> DataPlaneProcess::launch(const std::string& binary,
                                                              const plane::DataPlaneSpec& spec, int storage_fd,
                                                              int stats_fd, int listen_fd,
                                                              std::chrono::milliseconds ready_timeout,
                                                              const std::function<int(pid_t)>& place) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return std::unexpected(errno);
  UniqueFd ours(pair[0]), theirs(pair[1]);
  const std::string exe = binary.empty() ? "/proc/self/exe" : binary;
  // Everything the child does between fork and exec is async-signal-safe (this process has threads).
  const char* argv[] = {"pvback-blk", "--data-plane", "3", nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(errno);
  if (pid == 0) {
    // A control part that dies leaves its data plane serving (it notices the end of its socket)
    // until a successor adopts it; without a place to be adopted, it stops (SIGTERM: it finishes
    // the requests in flight, and the recovery records let the successor resume the rings).
    if (listen_fd < 0) ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(70);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the control part blocks its termination signals
    if (::dup2(theirs.get(), 3) != 3) ::_exit(71);
    // Nothing else crosses: not the XenStore connection, not another device's anything.
    ::close_range(4, ~0u, 0);
    ::execv(exe.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  theirs.reset();
  DataPlaneProcess p;
  p.name_ = spec.name;
  p.sock_ = std::move(ours);
  p.pid_ = pid;
  // Before it holds anything of the guest's: what it allocates from then on is charged to its group.
  if (place) {
    if (int e = place(pid)) {
      PVBACK_LOG(Error, "%s: cannot place the data plane (pid %d) in its control group: %s", spec.name.c_str(), pid,
                 std::strerror(e));
      p.stop(std::chrono::milliseconds(0));
      return std::unexpected(e);
    }
  }
  const auto start = plane::encode_start(spec);
  const int fds[] = {storage_fd, stats_fd, listen_fd};
  if (int e = send_message(p.sock_.get(), start, std::span(fds, listen_fd >= 0 ? 3 : 2))) {
    PVBACK_LOG(Error, "%s: cannot start the data plane (pid %d): %s", spec.name.c_str(), pid, std::strerror(e));
    p.stop(std::chrono::milliseconds(0));
    return std::unexpected(e);
  }
  auto ready = await_notice(p.sock_.get(), plane::Msg::Ready, ready_timeout, spec.name);
  if (!ready || ready->error != 0) {
    const int e = ready ? ready->error : ready.error();
    const int status = p.stop(std::chrono::milliseconds(ready ? 1000 : 0));
    PVBACK_LOG(Error, "%s: the data plane (pid %d) did not start: %s%s%s; it %s", spec.name.c_str(), pid,
               std::strerror(e), ready && !ready->reason.empty() ? ": " : "", ready ? ready->reason.c_str() : "",
               describe_wait_status(status).c_str());
    return std::unexpected(e);
  }
  PVBACK_LOG(Info, "%s: data plane running (pid %d, %zu queue(s))", spec.name.c_str(), pid, spec.queues.size());
  return p;
}

DataPlaneProcess::Event DataPlaneProcess::take_event() {
  Event ev;
  if (!running()) return ev;
  std::vector<std::byte> buf(4096);
  auto n = recv_message(sock_.get(), buf, nullptr, MSG_DONTWAIT);
  if (!n && (n.error() == EAGAIN || n.error() == EINTR)) return ev;
  if (n && *n > 0) {
    auto notice = plane::decode_notice(std::span(buf).first(*n));
    if (notice && notice->type == plane::Msg::Fatal) {
      ev.kind = Event::Fatal;
      ev.error = notice->error;
      ev.reason = notice->reason;
      return ev;
    }
    if (!notice) PVBACK_LOG(Error, "%s: data plane: %s", name_.c_str(), notice.error().c_str());
    return ev;
  }
  // The end of the socket: the process is gone (or going).
  sock_.reset();
  ev.kind = Event::Ended;
  ev.reason = describe_wait_status(reap(true));
  return ev;
}

int DataPlaneProcess::resize() {
  if (!running() || !sock_) return ENOTCONN;
  if (int e = send_message(sock_.get(), plane::encode_notice({plane::Msg::Resize, 0, {}}))) return e;
  auto done = await_notice(sock_.get(), plane::Msg::Resized, std::chrono::milliseconds(1000), name_);
  return done ? done->error : done.error();
}

int DataPlaneProcess::stop(std::chrono::milliseconds timeout) {
  if (!running()) return 0;
  if (sock_) {
    if (send_message(sock_.get(), plane::encode_notice({plane::Msg::Stop, 0, {}})) == 0) {
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      while (std::chrono::steady_clock::now() < deadline) {
        int status = 0;
        if (!child_) {
          if (gone(pid_)) {
            pid_ = -1;
            sock_.reset();
            return 0;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          continue;
        }
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_ || (r < 0 && errno == ECHILD)) {
          pid_ = -1;
          sock_.reset();
          return status;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      PVBACK_LOG(Warning, "%s: the data plane (pid %d) did not stop within %lld ms: killing it", name_.c_str(), pid_,
                 static_cast<long long>(timeout.count()));
    }
  }
  ::kill(pid_, SIGKILL);
  sock_.reset();
  return reap(true);
}

std::expected<DataPlaneProcess, int> DataPlaneProcess::adopt(const std::string& path, const std::string& name,
                                                             plane::DataPlaneSpec& spec, UniqueFd& stats) {
  auto connected = connect_seqpacket(path);
  if (!connected) return std::unexpected(connected.error());
  UniqueFd sock = std::move(*connected);
  // Who answers is what the kernel says of the sender (SCM_CREDENTIALS), not what it claims: the
  // pid is the one a stop that times out SIGKILLs. (SO_PEERCRED would name whoever listen()ed: the
  // dead predecessor.)
  const int on = 1;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return std::unexpected(errno);
  if (int e = send_message(sock.get(), plane::encode_notice({plane::Msg::Adopt, 0, {}}))) return std::unexpected(e);
  pollfd p{sock.get(), POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return std::unexpected(ETIMEDOUT);
  std::vector<std::byte> buf(plane::kMaxMessage);
  std::vector<UniqueFd> fds;
  ucred peer{};
  auto n = recv_message(sock.get(), buf, &fds, 0, &peer);
  if (!n) return std::unexpected(n.error());
  if (*n == 0) return std::unexpected(ECONNRESET);
  if (peer.pid <= 0) return std::unexpected(EPROTO);
  auto adopted = plane::decode_start(std::span(buf).first(*n), plane::Msg::Adopted);
  if (!adopted || fds.size() != 1) {
    // Another build's data plane, speaking another version: it cannot be taken over; it is ended
    // (the rings are resumed from their records by a new one).
    PVBACK_LOG(Warning, "%s: the data plane left serving (pid %d) cannot be adopted (%s): killing it", name.c_str(),
               peer.pid, adopted ? "no statistics memory" : adopted.error().c_str());
    ::kill(peer.pid, SIGKILL);
    return std::unexpected(EPROTO);
  }
  spec = std::move(*adopted);
  stats = std::move(fds[0]);
  DataPlaneProcess d;
  d.child_ = false;
  d.name_ = name;
  d.sock_ = std::move(sock);
  d.pid_ = peer.pid;
  PVBACK_LOG(Notice, "%s: adopted the data plane (pid %d) its predecessor left serving", name.c_str(), peer.pid);
  return d;
}


int DataPlaneProcess::reap(bool block) {
  int status = 0;
  if (!child_) {
    while (block && pid_ > 0 && !gone(pid_)) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pid_ = -1;
    return 0;
  }
  while (pid_ > 0) {
    const pid_t r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) break;
    if (r == 0) return 0;
  }
  pid_ = -1;
  return status;
}

int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout) {
  if (path.empty()) return EINVAL;
  auto connected = connect_seqpacket(path);
  if (!connected) return connected.error() == ENOENT || connected.error() == ECONNREFUSED ? 0 : connected.error();
  const UniqueFd sock = std::move(*connected);
  if (int e = send_message(sock.get(), plane::encode_notice({plane::Msg::Stop, 0, {}}))) return e;
  // It closes the connection when it exits.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::byte b[64];
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return ETIMEDOUT;
    pollfd p{sock.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto n = recv_message(sock.get(), b);
    if (!n || *n == 0) return 0;
  }
}

}  // namespace pvback::blkback
