// The control part's handle on a vbd's data-plane process: pvback-blk executed again as
// `pvback-blk --data-plane 3`, which serves the rings it is told to (data_plane_protocol.hpp) and
// holds no XenStore connection. The control part (VbdDriver) launches one per connection,
// watches fd(), restarts it when it dies and stops it at disconnect.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <expected>
#include <functional>
#include <string>

#include "base/unique_fd.hpp"
#include "blkback/data_plane_protocol.hpp"

namespace pvback::blkback {

class DataPlaneProcess {
 public:
  DataPlaneProcess() = default;
  DataPlaneProcess(DataPlaneProcess&& o) noexcept;
  DataPlaneProcess& operator=(DataPlaneProcess&& o) noexcept;
  ~DataPlaneProcess();  // stop()s a process still running

  // Starts `binary` (empty: this very executable) as a data plane, gives it `spec`, the storage
  // and the statistics memory, and waits up to `ready_timeout` until it serves. errno value on
  // failure (logged, naming the device); nothing is left running then.
  // `listen_fd` (-1: none) is where a successor of this control part may adopt it. `place`, if
  // set, is called with the new process's pid before it is given anything (to put it in its
  // control group): an errno value it returns fails the launch.
  static std::expected<DataPlaneProcess, int> launch(const std::string& binary, const plane::DataPlaneSpec& spec,
                                                     int storage_fd, int stats_fd, int listen_fd,
                                                     std::chrono::milliseconds ready_timeout,
                                                     const std::function<int(pid_t)>& place = {});

  // Takes over a data plane a dead predecessor of this control part left serving, through the
  // listening socket at `path`. Its spec and statistics memory come back in `spec` and `stats`.
  // ENOENT / ECONNREFUSED: none there.
  static std::expected<DataPlaneProcess, int> adopt(const std::string& path, const std::string& name,
                                                    plane::DataPlaneSpec& spec, UniqueFd& stats);

  // Readable when the data plane said something or ended.
  int fd() const { return sock_.get(); }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  struct Event {
    enum Kind { Nothing, Fatal, Ended } kind = Nothing;
    int error = 0;            // Fatal
    std::string reason;       // Fatal: the queue's reason; Ended: how it ended ("killed by signal 9")
  };
  // After fd() polled readable: one thing that happened. Ended: the process is reaped.
  Event take_event();

  // Asks it to re-read the storage's size and waits (1 s) until it did. 0 or an errno value.
  [[nodiscard]] int resize();
  // Stop: it finishes the requests in flight, unmaps everything and exits; after `timeout`,
  // SIGKILL. Reaps it. Returns its wait status.
  int stop(std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

 private:
  int reap(bool block);
  // An adopted data plane is not our child: its end is seen, not waited for.
  bool child_ = true;
  std::string name_;
  UniqueFd sock_;
  pid_t pid_ = -1;
};

// "exited with status 1", "killed by signal 9" ...
std::string describe_wait_status(int status);

// Stops a data plane left serving by a dead control part, through its listening socket at `path`
// (the device it served is gone, or a new connection of its frontend needs the storage): it
// finishes what is in flight and exits; waits up to `timeout` for that. Nothing there: 0.
int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

}  // namespace pvback::blkback

namespace pvback::blkback {
// The data plane's main (`pvback-blk --data-plane FD`): serves what the control part at the
// other end of `sock` sends, until Stop, the end of `sock` or SIGTERM. Returns the exit status.
int serve_as_data_plane(int sock);
}  // namespace pvback::blkback
