#include "plane/serve.hpp"

#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "grant/platform.hpp"

namespace pvback::plane {

int ControlLink::fd() const {
  std::lock_guard lock(mutex_);
  return fd_;
}

void ControlLink::send_locked(std::span<const std::byte> message) {
  if (int e = send_message(fd_, message))
    PVBACK_LOG(Warning, "data plane: cannot tell the control part (%s)", std::strerror(e));
}

void ControlLink::say(std::uint32_t type, int error, const std::string& reason) {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  if (type != kReady && !ready_) {
    held_.push_back(encode_notice(protocol_, {type, error, reason}));
    return;
  }
  send_locked(encode_notice(protocol_, {type, error, reason}));
  if (type != kReady || ready_) return;
  ready_ = true;
  for (const auto& message : held_) send_locked(message);
  held_.clear();
  if (pending_) send_locked(encode_notice(protocol_, {kFatal, error_, reason_}));  // raised before Ready
}

void ControlLink::send(std::span<const std::byte> message) {
  std::lock_guard lock(mutex_);
  if (fd_ < 0) return;
  if (!ready_) {
    held_.emplace_back(message.begin(), message.end());
    return;
  }
  send_locked(message);
}

// The first Fatal is latched: it goes to the control part attached now, if any, and again to every
// successor that adopts this data plane, since a control part may die before it acted on it (the
// device would then never be disconnected: its queue stopped serving, its guest waiting).
void ControlLink::fatal(int error, const std::string& reason) {
  std::lock_guard lock(mutex_);
  if (pending_) return;
  pending_ = true;
  error_ = error;
  reason_ = reason;
  if (fd_ < 0) return;
  if (!ready_) return;  // sent after the Ready
  send_locked(encode_notice(protocol_, {kFatal, error, reason}));
}

void ControlLink::detach() {
  std::lock_guard lock(mutex_);
  fd_ = -1;
}

// A successor adopts only a data plane that was serving, so Ready was said long ago; what was held
// for a dead control part is not its business (it learns the state from Adopted), but the Fatal is.
void ControlLink::attach(int fd) {
  std::lock_guard lock(mutex_);
  fd_ = fd;
  ready_ = true;
  held_.clear();
  if (pending_) send_locked(encode_notice(protocol_, {kFatal, error_, reason_}));
}

std::optional<std::size_t> receive_start(int sock, std::span<std::byte> buffer, std::vector<UniqueFd>& fds) {
  auto n = recv_message(sock, buffer, &fds);
  if (!n || *n == 0) {
    PVBACK_LOG(Error, "data plane: no Start from the control part: %s", n ? "it closed the socket"
                                                                          : std::strerror(n.error()));
    return std::nullopt;
  }
  return *n;
}

sandbox::Policy data_plane_policy(sandbox::Profile profile) {
  sandbox::Policy p;
  p.profile = profile;
  p.probe_processes = grant::PlatformConfig::from_env().kind == grant::PlatformConfig::Kind::Sim;
  return p;
}

int confine(const std::string& name, bool on, std::uint32_t uid, std::uint32_t gid, sandbox::Policy policy,
            std::string& why) {
  if (!on) {
    PVBACK_LOG(Warning, "%s: data plane: not confined (--no-sandbox)", name.c_str());
    return 0;
  }
  if (uid != 0) policy.uid = uid;
  if (gid != 0) policy.gid = gid;
  auto report = sandbox::apply(policy);
  if (!report) {
    why = "cannot confine itself: " + report.error();
    return EPERM;
  }
  for (const auto& notice : report->notices)
    PVBACK_LOG(Notice, "%s: data plane sandbox: %s", name.c_str(), notice.c_str());
  return 0;
}

void serve_control(ControlLink& link, const UniqueFd& listener, const UniqueFd& signal_fd, const std::string& name,
                   const Protocol& protocol, std::chrono::milliseconds orphan_timeout, const ServeHooks& hooks) {
  const char* n = name.c_str();
  std::vector<std::byte> buf(4096);
  UniqueFd adopted;  // the control socket of the successor that adopted us, once one did
  std::chrono::steady_clock::time_point orphaned_at;
  for (;;) {
    const int link_fd = link.fd();
    const bool orphan = link_fd < 0;
    int timeout = -1;
    if (orphan) {
      const auto left = orphan_timeout - (std::chrono::steady_clock::now() - orphaned_at);
      if (left.count() <= 0 || !listener) {
        PVBACK_LOG(Warning, "%s: data plane: no control part adopted it within %lld ms: stopping", n,
                   static_cast<long long>(orphan_timeout.count()));
        return;
      }
      timeout = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    pollfd p[] = {{orphan ? listener.get() : link_fd, POLLIN, 0}, {signal_fd.get(), POLLIN, 0}};
    if (::poll(p, 2, timeout) < 0) {
      if (errno == EINTR) continue;
      PVBACK_LOG(Error, "%s: data plane: poll: %s", n, std::strerror(errno));
      return;
    }
    if (p[1].revents & POLLIN) {
      signalfd_siginfo info{};
      [[maybe_unused]] auto r = ::read(signal_fd.get(), &info, sizeof info);
      PVBACK_LOG(Notice, "%s: data plane: signal %u, finishing what is in flight", n, info.ssi_signo);
      return;
    }
    if (orphan) {
      if ((p[0].revents & POLLIN) == 0) continue;
      UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      pollfd c{conn.get(), POLLIN, 0};
      if (::poll(&c, 1, 1000) != 1) continue;
      auto m = recv_message(conn.get(), buf);
      auto notice = m && *m > 0 ? decode_notice(protocol, std::span(buf).first(*m))
                                : std::unexpected(std::string("nothing"));
      if (notice && notice->type == kStop) {
        // Its device is gone, or its frontend connected anew (the supervisor or a new control
        // part says so).
        PVBACK_LOG(Notice, "%s: data plane: told to stop while waiting for a successor", n);
        // Left open until this process ends, which is what the sender waits for.
        [[maybe_unused]] const int until_exit = conn.release();
        return;
      }
      if (!notice || notice->type != kAdopt) continue;
      if (send_message(conn.get(), hooks.adopted(), hooks.adopted_fds) != 0) continue;
      adopted = std::move(conn);
      link.attach(adopted.get());
      PVBACK_LOG(Notice, "%s: data plane: adopted by a new control part", n);
      continue;
    }
    if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    auto m = recv_message(link_fd, buf, nullptr, MSG_DONTWAIT);
    // The control part died (an orderly one says Stop). Keep serving; its successor adopts us. One
    // that died with a message of ours unread (a successor killed before it read our Adopted, or
    // a Fatal) resets the connection rather than closing it: that is its death too.
    if ((m && *m == 0) || (!m && m.error() == ECONNRESET)) {
      link.detach();
      adopted.reset();
      orphaned_at = std::chrono::steady_clock::now();
      PVBACK_LOG(Warning, "%s: data plane: its control part is gone; serving on, waiting up to %lld ms for a successor",
                 n, listener ? static_cast<long long>(orphan_timeout.count()) : 0ll);
      continue;
    }
    if (!m) {
      if (m.error() == EAGAIN || m.error() == EINTR) continue;
      PVBACK_LOG(Error, "%s: data plane: reading from the control part: %s: stopping", n, std::strerror(m.error()));
      return;
    }
    const auto message = std::span<const std::byte>(buf).first(*m);
    auto type = message_type(protocol, message);
    if (!type) {
      PVBACK_LOG(Error, "%s: data plane: from the control part: %s", n, type.error().c_str());
      continue;
    }
    if (*type == kStop) return;
    if (hooks.on_message) hooks.on_message(*type, message, link);
  }
}

}  // namespace pvback::plane
