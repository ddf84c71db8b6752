#include "plane/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "base/fd_passing.hpp"
#include "base/log.hpp"

namespace pvback::plane {
namespace {

constexpr std::size_t kMaxNotice = 4096;

// Waits up to `timeout` for one notice of type `want`. Other messages go to `unread` (nullptr: none
// are expected, they are logged and dropped).
std::expected<Notice, int> await_notice(int sock, const Protocol& protocol, std::uint32_t want,
                                        std::chrono::milliseconds timeout, const std::string& name,
                                        std::vector<std::vector<std::byte>>* unread = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<std::byte> buf(kMaxNotice);
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::unexpected(ETIMEDOUT);
    pollfd p{sock, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return std::unexpected(errno);
    if (r == 0) return std::unexpected(ETIMEDOUT);
    auto n = recv_message(sock, buf);
    if (!n) return std::unexpected(n.error());
    if (*n == 0) return std::unexpected(ECONNRESET);  // it ended
    const auto message = std::span<const std::byte>(buf).first(*n);
    if (auto type = message_type(protocol, message); unread != nullptr && type && *type != want) {
      unread->emplace_back(message.begin(), message.end());
      continue;
    }
    auto notice = decode_notice(protocol, message);
    if (!notice) {
      PVBACK_LOG(Error, "%s: data plane: %s", name.c_str(), notice.error().c_str());
      return std::unexpected(EPROTO);
    }
    if (notice->type == want) return *notice;
    PVBACK_LOG(Warning, "%s: data plane: unexpected notice %u while waiting", name.c_str(), notice->type);
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
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "ended (wait status " + std::to_string(status) + ")";
}

Process::Process(Process&& o) noexcept
    : protocol_(o.protocol_),
      child_(o.child_),
      adoptable_(o.adoptable_),
      name_(std::move(o.name_)),
      sock_(std::move(o.sock_)),
      pid_(std::exchange(o.pid_, -1)),
      unread_(std::move(o.unread_)) {}

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    if (running()) stop();
    protocol_ = o.protocol_;
    child_ = o.child_;
    adoptable_ = o.adoptable_;
    name_ = std::move(o.name_);
    sock_ = std::move(o.sock_);
    pid_ = std::exchange(o.pid_, -1);
    unread_ = std::move(o.unread_);
  }
  return *this;
}

Process::~Process() {
  if (running()) stop();
}

namespace {

// Pinned executables by path: fds at 10 or above, close-on-exec (a launch puts its at 4).
std::mutex pins_mutex;
std::map<std::string, UniqueFd>& pins() {
  static std::map<std::string, UniqueFd> map;
  return map;
}

UniqueFd open_executable(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd) return fd;
  return UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 10));
}

// A duplicate of the pinned file's fd (the caller's until the launch is done: a repin meanwhile
// closes the map's own, not this one).
UniqueFd pinned_fd(const std::string& path) {
  std::lock_guard lock(pins_mutex);
  const auto it = pins().find(path);
  return it == pins().end() ? UniqueFd() : UniqueFd(::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 10));
}

// `fd` (an O_PATH descriptor of an executable) run with --protocol-version: its one line, within
// a few seconds.
std::expected<std::string, int> protocol_line_of(int fd, const char* argv0) {
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return std::unexpected(errno);
  UniqueFd r(out[0]), w(out[1]);
  const char* argv[] = {argv0, "--protocol-version", nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(errno);
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    // Not close-on-exec: a script's interpreter opens it again (/dev/fd/4).
    if (::dup2(fd, 4) != 4 || ::dup2(w.get(), 1) != 1) ::_exit(71);
    ::close_range(3, 3, 0);
    ::close_range(5, ~0u, 0);
    ::execveat(4, "", const_cast<char* const*>(argv), environ, AT_EMPTY_PATH);
    ::_exit(127);
  }
  w.reset();
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  char buf[128];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{r.get(), POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = ::read(r.get(), buf, sizeof buf);
    if (n <= 0 || line.size() > 256) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  ::kill(pid, SIGKILL);  // answered, or given up
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (const auto nl = line.find('\n'); nl != std::string::npos) line.resize(nl);
  return line;
}

}  // namespace

std::string protocol_version_line(const Protocol& protocol) {
  char text[32];
  std::snprintf(text, sizeof text, "%08x %u", protocol.magic, protocol.version);
  return text;
}

void pin_binary(const std::string& path) {
  UniqueFd fd = open_executable(path);
  if (!fd) {
    PVBACK_LOG(Warning, "cannot pin the data-plane binary %s (%s): data planes started again will run what is there then",
               path.c_str(), std::strerror(errno));
    return;
  }
  std::lock_guard lock(pins_mutex);
  pins()[path] = std::move(fd);
}

int repin_binary(const std::string& path, const Protocol& protocol, const std::string& name) {
  UniqueFd fd = open_executable(path);
  if (!fd) return errno;
  const std::string argv0 = path.substr(path.rfind('/') + 1);
  auto line = protocol_line_of(fd.get(), argv0.c_str());
  if (!line) return line.error();
  const std::string ours = protocol_version_line(protocol);
  if (line->empty()) {
    PVBACK_LOG(Error, "%s: the data-plane binary %s did not say which protocol it speaks (--protocol-version: an "
               "older pvback, or it cannot run): not restarting onto it", name.c_str(), path.c_str());
    return ENOEXEC;
  }
  if (*line != ours) {
    PVBACK_LOG(Error, "%s: the data-plane binary %s answers protocol '%s', this control part speaks '%s': not "
               "restarting onto it (restart the host daemon to serve with it)", name.c_str(), path.c_str(),
               line->substr(0, 64).c_str(), ours.c_str());
    return EPROTO;
  }
  std::lock_guard lock(pins_mutex);
  pins()[path] = std::move(fd);
  return 0;
}

std::expected<Process, int> Process::launch(const Launch& l) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) return std::unexpected(errno);
  UniqueFd ours(pair[0]), theirs(pair[1]);
  const std::string exe = l.binary.empty() ? "/proc/self/exe" : l.binary;
  const UniqueFd pinned_copy = l.binary.empty() ? UniqueFd() : pinned_fd(l.binary);
  const int pinned = pinned_copy ? pinned_copy.get() : -1;
  // Everything the child does between fork and exec is async-signal-safe (this process has threads).
  const char* argv[] = {l.argv0, "--data-plane", "3", nullptr};
  const pid_t parent = ::getpid();
  const bool adoptable = l.adoptable;
  const pid_t pid = ::fork();
  if (pid < 0) return std::unexpected(errno);
  if (pid == 0) {
    // A control part that dies leaves its data plane serving (it notices the end of its socket)
    // until a successor adopts it; without a place to be adopted, it stops (SIGTERM: it finishes
    // what is in flight, and the records let the successor resume the rings).
    if (!adoptable) ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(70);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);  // the control part blocks its termination signals
    if (::dup2(theirs.get(), 3) != 3) ::_exit(71);
    if (pinned >= 0) {
      // The pinned file, at 4 and closed by the exec itself. A script (a wrapper an operator put
      // there) cannot be run so, its interpreter finding no /dev/fd/4: it is run by its path.
      if (::dup3(pinned, 4, O_CLOEXEC) != 4) ::_exit(71);
      ::close_range(5, ~0u, 0);
      ::execveat(4, "", const_cast<char* const*>(argv), environ, AT_EMPTY_PATH);
      ::close(4);
    }
    // Nothing else crosses: not the XenStore connection, not another device's anything.
    ::close_range(4, ~0u, 0);
    ::execv(exe.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  theirs.reset();
  Process p;
  p.protocol_ = l.protocol;
  p.name_ = l.name;
  p.adoptable_ = l.adoptable;
  p.sock_ = std::move(ours);
  p.pid_ = pid;
  // Before it holds anything of the guest's: what it allocates from then on is charged to its group.
  if (l.place) {
    if (int e = l.place(pid)) {
      PVBACK_LOG(Error, "%s: cannot place the data plane (pid %d) in its control group: %s", l.name.c_str(), pid,
                 std::strerror(e));
      p.stop(std::chrono::milliseconds(0));
      return std::unexpected(e);
    }
  }
  if (int e = send_message(p.sock_.get(), l.start, l.fds)) {
    PVBACK_LOG(Error, "%s: cannot start the data plane (pid %d): %s", l.name.c_str(), pid, std::strerror(e));
    p.stop(std::chrono::milliseconds(0));
    return std::unexpected(e);
  }
  auto ready = await_notice(p.sock_.get(), l.protocol, kReady, l.ready_timeout, l.name);
  if (!ready || ready->error != 0) {
    const int e = ready ? ready->error : ready.error();
    const int status = p.stop(std::chrono::milliseconds(ready ? 1000 : 0));
    PVBACK_LOG(Error, "%s: the data plane (pid %d) did not start: %s%s%s; it %s", l.name.c_str(), pid,
               std::strerror(e), ready && !ready->reason.empty() ? ": " : "", ready ? ready->reason.c_str() : "",
               describe_wait_status(status).c_str());
    return std::unexpected(e);
  }
  return p;
}

Process::Event Process::take_event() {
  Event ev;
  if (!running()) return ev;
  std::vector<std::byte> buf;
  std::expected<std::size_t, int> n = 0;
  if (!unread_.empty()) {
    buf = std::move(unread_.front());
    unread_.erase(unread_.begin());
    n = buf.size();
  } else {
    buf.resize(kMaxNotice);
    n = recv_message(sock_.get(), buf, nullptr, MSG_DONTWAIT);
    if (!n && (n.error() == EAGAIN || n.error() == EINTR)) return ev;
  }
  if (n && *n > 0) {
    buf.resize(*n);
    auto type = message_type(protocol_, buf);
    if (!type) {
      PVBACK_LOG(Error, "%s: data plane: %s", name_.c_str(), type.error().c_str());
      return ev;
    }
    if (std::ranges::find(protocol_.notices, *type) != protocol_.notices.end()) {
      auto notice = decode_notice(protocol_, buf);
      if (!notice) {
        PVBACK_LOG(Error, "%s: data plane: %s", name_.c_str(), notice.error().c_str());
        return ev;
      }
      ev.notice = std::move(*notice);
    } else {
      ev.notice.type = *type;  // the backend decodes the rest
    }
    ev.kind = Event::Said;
    ev.message = std::move(buf);
    return ev;
  }
  // The end of the socket: the process is gone (or going).
  sock_.reset();
  ev.kind = Event::Ended;
  const bool child = child_;
  const int status = reap(true);
  // An adopted one is not our child: how it ended is its parent's to know.
  ev.reason = child ? describe_wait_status(status) : "ended";
  return ev;
}

int Process::send(std::span<const std::byte> message) {
  if (!running() || !sock_) return ENOTCONN;
  return send_message(sock_.get(), message);
}

std::expected<Notice, int> Process::request(const Notice& notice, std::uint32_t reply,
                                            std::chrono::milliseconds timeout) {
  if (int e = send(encode_notice(protocol_, notice))) return std::unexpected(e);
  return await_notice(sock_.get(), protocol_, reply, timeout, name_, &unread_);
}

int Process::ask_to_stop() {
  if (!running() || !sock_) return ENOTCONN;
  return send_message(sock_.get(), encode_notice(protocol_, {kStop, 0, {}}));
}

int Process::stop(std::chrono::milliseconds timeout) {
  if (!running()) return 0;
  if (sock_ && send_message(sock_.get(), encode_notice(protocol_, {kStop, 0, {}})) == 0) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (!child_) {
        if (gone(pid_)) {
          pid_ = -1;
          sock_.reset();
          return 0;
        }
      } else if (const pid_t r = ::waitpid(pid_, &status, WNOHANG); r == pid_ || (r < 0 && errno == ECHILD)) {
        pid_ = -1;
        sock_.reset();
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    PVBACK_LOG(Warning, "%s: the data plane (pid %d) did not stop within %lld ms: killing it", name_.c_str(), pid_,
               static_cast<long long>(timeout.count()));
  }
  ::kill(pid_, SIGKILL);
  sock_.reset();
  return reap(true);
}

void Process::release() {
  sock_.reset();
  pid_ = -1;
  unread_.clear();
}

bool leave_for_successor(Process& process, OnStop on_stop, bool own_unit, std::chrono::milliseconds orphan_timeout) {
  const bool leave = on_stop == OnStop::Leave || (on_stop == OnStop::Auto && own_unit);
  // One with no listening socket stops when this process ends (PR_SET_PDEATHSIG): nothing to leave.
  if (!leave || !process.running() || !process.adoptable()) return false;
  PVBACK_LOG(Notice, "%s: leaving the data plane (pid %d) serving for the next control part to adopt (it stops by "
             "itself if none does within %lld ms)", process.name().c_str(), static_cast<int>(process.pid()),
             static_cast<long long>(orphan_timeout.count()));
  process.release();
  return true;
}

void Process::kill() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  sock_.reset();
  reap(true);
}

std::expected<Process::Adoption, int> Process::adopt(const std::string& path, const std::string& name,
                                                      const Protocol& protocol) {
  auto connected = connect_seqpacket(path);
  if (!connected) return std::unexpected(connected.error());
  UniqueFd sock = std::move(*connected);
  // Who answers is what the kernel says of the sender (SCM_CREDENTIALS), not what it claims: the
  // pid is the one a stop that times out SIGKILLs. (SO_PEERCRED would name whoever listen()ed: the
  // dead predecessor.)
  const int on = 1;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return std::unexpected(errno);
  if (int e = send_message(sock.get(), encode_notice(protocol, {kAdopt, 0, {}}))) return std::unexpected(e);
  pollfd p{sock.get(), POLLIN, 0};
  if (::poll(&p, 1, 2000) != 1) return std::unexpected(ETIMEDOUT);
  Adoption a;
  a.answer.resize(256 * 1024);
  ucred peer{};
  auto n = recv_message(sock.get(), a.answer, &a.fds, 0, &peer);
  if (!n) return std::unexpected(n.error());
  if (*n == 0) return std::unexpected(ECONNRESET);
  if (peer.pid <= 0) return std::unexpected(EPROTO);
  a.answer.resize(*n);
  a.process.protocol_ = protocol;
  a.process.child_ = false;
  a.process.adoptable_ = true;  // it was: a successor can adopt it in turn
  a.process.name_ = name;
  a.process.sock_ = std::move(sock);
  a.process.pid_ = peer.pid;
  auto type = message_type(protocol, a.answer);
  if (!type || *type != kAdopted) {
    // Another build's data plane, speaking another version: it cannot be taken over; it is ended
    // (the rings are resumed from their records by a new one).
    PVBACK_LOG(Warning, "%s: the data plane left serving (pid %d) cannot be adopted (%s): killing it", name.c_str(),
               peer.pid, type ? "it did not answer Adopted" : type.error().c_str());
    a.process.kill();
    return std::unexpected(EPROTO);
  }
  return a;
}

int Process::reap(bool block) {
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

UniqueFd listen_for_adoption(const std::string& path, const std::string& name) {
  if (path.empty()) return {};
  auto fd = listen_seqpacket(path, 0600, 2);
  if (!fd) {
    PVBACK_LOG(Warning, "%s: cannot listen on %s (%s): its data plane stops if this process dies", name.c_str(),
               path.c_str(), std::strerror(fd.error()));
    return {};
  }
  return std::move(*fd);
}

int stop_orphan(const std::string& path, const Protocol& protocol, std::chrono::milliseconds timeout) {
  if (path.empty()) return EINVAL;
  auto connected = connect_seqpacket(path);
  if (!connected) return connected.error() == ENOENT || connected.error() == ECONNREFUSED ? 0 : connected.error();
  const UniqueFd sock = std::move(*connected);
  if (int e = send_message(sock.get(), encode_notice(protocol, {kStop, 0, {}}))) return e;
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

namespace {

// Starts another data plane through `relaunch` until one starts or `limit` says the device fails
// (through `fail`). true: one started.
bool relaunch_within(RestartLimit& limit, unsigned& restarts, const std::string& name,
                     const std::function<void(int, const std::string&)>& fail, const std::function<int()>& relaunch) {
  for (;;) {
    if (!limit.allow()) {
      PVBACK_LOG(Error, "%s: the data plane died or failed to start %u times within %lld s: failing the device",
                 name.c_str(), limit.burst() + 1,
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(limit.window()).count()));
      fail(EIO, "the data plane keeps dying");
      return false;
    }
    ++restarts;
    if (relaunch() == 0) return true;
  }
}

// The old data plane of an operator's restart is gone: its successor starts (not counted against
// `limit` unless starting fails) and the restart's `done` is told.
void complete_restart(Process& process, PendingRestart& pending, RestartLimit& limit, unsigned& restarts,
                      const std::string& name, const std::function<void(int, const std::string&)>& fail,
                      const std::function<int()>& relaunch) {
  ++restarts;
  if (relaunch() != 0 && !relaunch_within(limit, restarts, name, fail, relaunch)) {
    pending.finish(std::unexpected(EIO));
    return;
  }
  PVBACK_LOG(Notice, "%s: the data plane (pid %d) took over from pid %d", name.c_str(), process.pid(),
             pending.old_pid);
  pending.finish(process.pid());
}

}  // namespace

void PendingRestart::finish(std::expected<pid_t, int> result) {
  auto tell = std::exchange(done, nullptr);
  old_pid = -1;
  if (tell) tell(result);
}

int begin_restart(Process& process, PendingRestart& pending, const std::string& name,
                  std::function<void(std::expected<pid_t, int>)> done, std::chrono::milliseconds stop_timeout) {
  if (pending.active()) return EBUSY;
  if (!process.running()) return ENOTCONN;
  pending.old_pid = process.pid();
  pending.deadline = std::chrono::steady_clock::now() + stop_timeout;
  pending.done = std::move(done);
  PVBACK_LOG(Notice, "%s: restarting the data plane (pid %d) on request", name.c_str(), pending.old_pid);
  // One that cannot be told is dying already: its end comes all the same, or the deadline's kill.
  if (const int e = process.ask_to_stop())
    PVBACK_LOG(Warning, "%s: cannot tell the data plane (pid %d) to stop: %s", name.c_str(), pending.old_pid,
               std::strerror(e));
  return 0;
}

void handle_data_plane_event(Process& process, RestartLimit& limit, unsigned& restarts, const std::string& name,
                             const std::function<void(int, const std::string&)>& fail,
                             const std::function<int()>& relaunch,
                             const std::function<void(const Process::Event&)>& said, PendingRestart* restarting) {
  auto ev = process.take_event();
  if (ev.kind == Process::Event::Said && ev.notice.type == kFatal) {
    fail(ev.notice.error, ev.notice.reason);
    return;
  }
  if (ev.kind == Process::Event::Said && said) {
    said(ev);
    return;
  }
  if (ev.kind != Process::Event::Ended) return;
  if (restarting != nullptr && restarting->active()) {
    if (ev.reason != "exited with status 0" && ev.reason != "ended")
      PVBACK_LOG(Warning, "%s: the data plane told to stop %s", name.c_str(), ev.reason.c_str());
    complete_restart(process, *restarting, limit, restarts, name, fail, relaunch);
    return;
  }
  PVBACK_LOG(Warning, "%s: the data plane %s: starting another, which resumes the rings", name.c_str(),
             ev.reason.c_str());
  [[maybe_unused]] const bool started = relaunch_within(limit, restarts, name, fail, relaunch);
}

void check_restart(Process& process, PendingRestart& pending, RestartLimit& limit, unsigned& restarts,
                   const std::string& name, const std::function<void(int, const std::string&)>& fail,
                   const std::function<int()>& relaunch) {
  if (!pending.active() || std::chrono::steady_clock::now() < pending.deadline) return;
  if (process.running()) {
    PVBACK_LOG(Warning, "%s: the data plane (pid %d) did not stop by the restart's deadline (its storage stalled?): "
               "killing it", name.c_str(), process.pid());
    process.kill();
  }
  complete_restart(process, pending, limit, restarts, name, fail, relaunch);
}

bool RestartLimit::allow(std::chrono::steady_clock::time_point now) {
  std::erase_if(recent_, [&](auto t) { return now - t > window_; });
  if (recent_.size() >= burst_) return false;
  recent_.push_back(now);
  return true;
}

}  // namespace pvback::plane
