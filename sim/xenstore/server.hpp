// A XenStore daemon core for the simulated hypervisor. It speaks the real wire protocol
// (xen/io/xs_wire.h, Xen's docs/misc/xenstore.txt) on UNIX stream sockets, so the real
// libxenstore (XENSTORED_PATH=<socket>) and xenstore-utils work against it unchanged.
//
// Sockets (grant/sim_layout.hpp):
//  - xenstore_socket(run_dir): every connection is Dom0 (privileged).
//  - guest_xenstore_socket(run_dir, N): exists from INTRODUCE(N) until RELEASE(N) or stop();
//    every connection acts as unprivileged domain N (relative paths under /local/domain/N,
//    permission checks, quotas).
#pragma once
#include <filesystem>
#include <sys/types.h>

#include <memory>
#include <vector>

namespace pvback::sim {

class XenStoreServer {
 public:
  // Binds the Dom0 socket (clients may connect as soon as this returns; they are served once
  // run() is running). Throws std::system_error if the socket cannot be created.
  explicit XenStoreServer(std::filesystem::path run_dir);
  ~XenStoreServer();
  XenStoreServer(const XenStoreServer&) = delete;
  XenStoreServer& operator=(const XenStoreServer&) = delete;

  // Serves until stop(). Call from one thread only.
  void run();
  // Thread-safe; may be called before run(), from any thread or a signal-safe context.
  void stop();
  // The processes connected to the Dom0 (privileged) socket now, one entry per connection (its
  // peer's pid when it connected, SO_PEERCRED). Thread-safe. Tests use it to tell which process
  // holds the host's privileged XenStore connections.
  std::vector<pid_t> dom0_client_pids() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pvback::sim
