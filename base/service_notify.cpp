#include "base/service_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/log.hpp"
#include "base/unique_fd.hpp"

namespace pvback::service {

Notifier::Notifier(std::string socket, std::chrono::microseconds watchdog)
    : socket_(std::move(socket)), watchdog_(watchdog) {}

Notifier Notifier::from_environment() {
  auto number = [](const char* text, unsigned long long& out) {
    if (text == nullptr || *text == '\0') return false;
    const char* end = text + std::strlen(text);
    auto [ptr, ec] = std::from_chars(text, end, out);
    return ec == std::errc() && ptr == end;
  };
  const char* socket = std::getenv("NOTIFY_SOCKET");
  unsigned long long usec = 0, pid = 0;
  const bool watchdog_here = number(std::getenv("WATCHDOG_USEC"), usec) &&
                             (std::getenv("WATCHDOG_PID") == nullptr ||
                              (number(std::getenv("WATCHDOG_PID"), pid) && pid == static_cast<unsigned long long>(::getpid())));
  Notifier result(socket != nullptr ? socket : "", std::chrono::microseconds(watchdog_here ? usec : 0));
  for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}) ::unsetenv(name);
  return result;
}

int Notifier::send(std::string_view state) const {
  if (!enabled()) return 0;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // "@name" is a socket in the abstract namespace (a leading NUL byte); anything else a path.
  if (socket_.size() >= sizeof address.sun_path || (socket_[0] != '/' && socket_[0] != '@')) return EINVAL;
  std::memcpy(address.sun_path, socket_.data(), socket_.size());
  if (socket_[0] == '@') address.sun_path[0] = '\0';
  const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return errno;
  if (::sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<const sockaddr*>(&address),
               length) < 0)
    return errno;
  return 0;
}

void Notifier::ready(std::string_view status) {
  std::string state = "READY=1";
  if (!status.empty()) state.append("\nSTATUS=").append(status);
  if (int e = send(state); e != 0)
    PVBACK_LOG(Warning, "cannot tell the service manager that we are ready (%s): %s", socket_.c_str(), std::strerror(e));
  next_ping_ = Clock::now();  // the first ping right away: the watchdog runs from READY on
}

void Notifier::stopping() {
  if (int e = send("STOPPING=1"); e != 0)
    PVBACK_LOG(Warning, "cannot tell the service manager that we are stopping (%s): %s", socket_.c_str(),
               std::strerror(e));
}

int Notifier::watchdog(Clock::time_point now) {
  if (!watchdog_enabled()) return -1;
  if (now >= next_ping_) {
    if (int e = send("WATCHDOG=1"); e != 0)
      PVBACK_LOG_RATELIMITED(Warning, "cannot ping the service manager's watchdog (%s): %s", socket_.c_str(), std::strerror(e));
    next_ping_ = now + watchdog_ / 2;
  }
  return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(next_ping_ - now).count());
}

Notifier& notifier() {
  static Notifier instance;
  return instance;
}

int cap_for_watchdog(int timeout_ms, int watchdog_ms) {
  if (watchdog_ms < 0) return timeout_ms;
  return timeout_ms < 0 ? watchdog_ms : std::min(timeout_ms, watchdog_ms);
}

}  // namespace pvback::service
