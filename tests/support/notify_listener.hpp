// The service manager's side of the $NOTIFY_SOCKET protocol, for tests: a datagram socket at a
// path the test owns, and the notifications that arrive on it, one datagram each.
#pragma once
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"

namespace pvback::test {

class NotifyListener {
 public:
  explicit NotifyListener(std::filesystem::path path) : path_(std::move(path)) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
    ::unlink(path_.c_str());
    bound_ = fd_ && ::bind(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  }
  bool bound() const { return bound_; }
  const std::filesystem::path& path() const { return path_; }

  // Every notification received so far (each datagram's text), oldest first.
  const std::vector<std::string>& received() {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
      if (n < 0) break;
      received_.emplace_back(buffer, static_cast<std::size_t>(n));
    }
    return received_;
  }
  // How many received notifications hold the line `line` (e.g. "READY=1").
  std::size_t count(const std::string& line) {
    return static_cast<std::size_t>(std::ranges::count_if(received(), [&](const std::string& m) {
      return ("\n" + m + "\n").find("\n" + line + "\n") != std::string::npos;
    }));
  }
  // Waits until `n` notifications hold `line`; false after `timeout`.
  bool wait_for(const std::string& line, std::size_t n = 1, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (count(line) < n) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{fd_.get(), POLLIN, 0};
      ::poll(&pfd, 1, static_cast<int>(left.count()));
    }
    return true;
  }

 private:
  std::filesystem::path path_;
  UniqueFd fd_;
  bool bound_ = false;
  std::vector<std::string> received_;
};

}  // namespace pvback::test
