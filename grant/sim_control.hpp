// Client end of the simulated hypervisor's control socket (see grant/sim_protocol.hpp).
#pragma once
#include <expected>
#include <filesystem>
#include <mutex>
#include <vector>

#include "base/unique_fd.hpp"
#include "grant/sim_protocol.hpp"
#include "grant/types.hpp"

namespace pvback::grant {

class SimControl {
 public:
  // Connects and says Hello as `self`. Returns an errno value on failure.
  static std::expected<SimControl, int> connect(const std::filesystem::path& run_dir, DomId self);

  SimControl(SimControl&& other) noexcept : fd_(std::move(other.fd_)), self_(other.self_) {}
  SimControl& operator=(SimControl&&) = delete;

  // One request/reply round trip. A reply with error != 0 is returned as that errno value.
  // Received fds are appended to `fds` (closed if `fds` is null). Thread-safe.
  std::expected<sim_protocol::Reply, int> call(sim_protocol::Request request, std::vector<UniqueFd>* fds = nullptr);

  DomId self() const { return self_; }

 private:
  SimControl(UniqueFd fd, DomId self) : fd_(std::move(fd)), self_(self) {}
  UniqueFd fd_;
  DomId self_;
  std::mutex mutex_;
};

// SimControl::connect, or std::system_error naming the socket and the domain.
SimControl connect_sim_control_or_throw(const std::filesystem::path& run_dir, DomId self);

}  // namespace pvback::grant
