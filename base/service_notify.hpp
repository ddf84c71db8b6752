// The service manager's readiness and watchdog protocol (sd_notify(3), systemd's documented
// $NOTIFY_SOCKET protocol): one datagram of "KEY=VALUE" lines to the AF_UNIX socket named in
// NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Implemented here rather than
// linked from libsystemd: it is a socket and a sendto(), it works in every build (a Type=notify
// unit never waits for a READY=1 that a build without libsystemd compiled away) and adds no
// library to the backends.
//
// A process started by anything else has no NOTIFY_SOCKET, and every call is a no-op.
#pragma once
#include <chrono>
#include <string>
#include <string_view>

namespace pvback::service {

class Notifier {
 public:
  using Clock = std::chrono::steady_clock;

  Notifier() = default;  // notifies nobody
  // `socket`: NOTIFY_SOCKET's value; `watchdog`: the interval the manager expects pings within
  // (0: no watchdog). Pings go out every half interval, as sd_watchdog_enabled(3) advises.
  Notifier(std::string socket, std::chrono::microseconds watchdog);

  // From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the watchdog is this process's only if
  // WATCHDOG_PID is unset or names it), which are then removed from the environment: the
  // processes this one starts (the supervisor's backends, the data planes) are not the unit's
  // main process, and the manager would refuse, and log, their notifications. Call it before
  // any thread starts (setenv/unsetenv are not thread-safe).
  static Notifier from_environment();

  bool enabled() const { return !socket_.empty(); }
  bool watchdog_enabled() const { return enabled() && watchdog_.count() > 0; }
  // Sends `state` (e.g. "READY=1\nSTATUS=watching"): 0, or the errno of the failure.
  int send(std::string_view state) const;
  void ready(std::string_view status = {});
  void stopping();
  // Sends WATCHDOG=1 if the next ping is due at `now`. Returns how many milliseconds a main
  // loop may sleep before the following one is due (-1: no watchdog), to cap its poll timeout.
  int watchdog(Clock::time_point now = Clock::now());

 private:
  std::string socket_;
  std::chrono::microseconds watchdog_{0};
  Clock::time_point next_ping_{};
};

// The process's notifier: empty until main() sets it from the environment.
Notifier& notifier();

// A poll timeout (ms, -1 = none) shortened so that the watchdog's next ping is not missed.
int cap_for_watchdog(int timeout_ms, int watchdog_ms);

}  // namespace pvback::service
