#include "xenbus/state_wait.hpp"

#include <algorithm>
#include <cerrno>

namespace pvback::xenbus {

int poll_until(pollfd* fds, nfds_t n, std::chrono::steady_clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  if (left < 0) left = 0;
  int r = ::poll(fds, n, static_cast<int>(std::min<long long>(left, 1000)));
  return r < 0 ? errno : 0;
}

int wait_for_state(XenStore& xs, const std::string& state_path, std::initializer_list<State> wanted,
                   std::initializer_list<State> failing, std::chrono::milliseconds timeout, State* last) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto contains = [](std::initializer_list<State> set, State s) { return std::find(set.begin(), set.end(), s) != set.end(); };
  for (;;) {
    while (xs.read_watch()) {
    }
    auto v = xs.read(state_path);
    if (v) {
      if (auto s = parse_state(*v)) {
        *last = *s;
        if (contains(wanted, *s)) return 0;
        if (contains(failing, *s)) return ENODEV;
      }
    } else if (v.error() == ENOENT) {
      if (contains(wanted, XenbusStateClosed)) return 0;  // gone
    } else if (v.error() != EAGAIN) {
      return v.error();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ETIMEDOUT;
    pollfd p{xs.fd(), POLLIN, 0};
    if (int e = poll_until(&p, 1, deadline); e != 0 && e != EINTR) return e;
  }
}

}  // namespace pvback::xenbus
