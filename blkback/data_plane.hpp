// The control part's handle on a vbd's data-plane process: pvback-blk executed again as
// `pvback-blk --data-plane 3` (plane/process.hpp, shared with pvback-net), which serves the rings
// it is told to (data_plane_protocol.hpp) and holds no XenStore connection. The control part
// (VbdDriver) launches one per connection, watches its fd(), restarts it when it dies and stops
// it at disconnect.
#pragma once
#include <chrono>
#include <expected>
#include <functional>
#include <string>

#include "base/unique_fd.hpp"
#include "blkback/data_plane_protocol.hpp"
#include "plane/process.hpp"

namespace pvback::blkback {

// Starts `binary` (empty: this very executable) as a data plane, gives it `spec`, the storage
// file (`storage_fd`; -1 for an NBD server, which spec.nbd_uri names) and the statistics memory, and waits up to `ready_timeout` until it serves. errno value on
// failure (logged, naming the device); nothing is left running then.
// `listen_fd` (-1: none) is where a successor of this control part may adopt it.
std::expected<::pvback::plane::Process, int> launch_data_plane(const std::string& binary,
                                                               const plane::DataPlaneSpec& spec, int storage_fd,
                                                               int stats_fd, int listen_fd,
                                                               std::chrono::milliseconds ready_timeout,
                                                               const std::function<int(pid_t)>& place = {});

// Takes over a data plane a dead predecessor of this control part left serving, through the
// listening socket at `path`. Its spec and statistics memory come back in `spec` and `stats`.
// ENOENT / ECONNREFUSED: none there.
std::expected<::pvback::plane::Process, int> adopt_data_plane(const std::string& path, const std::string& name,
                                                              plane::DataPlaneSpec& spec, UniqueFd& stats);

// Stops a data plane left serving by a dead control part, through its listening socket at `path`
// (the device it served is gone, or a new connection of its frontend needs the storage): it
// finishes what is in flight and exits; waits up to `timeout` for that. Nothing there: 0.
int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

// The data plane's main (`pvback-blk --data-plane FD`): serves what the control part at the
// other end of `sock` sends, until Stop, the end of `sock` or SIGTERM. Returns the exit status.
int serve_as_data_plane(int sock);

}  // namespace pvback::blkback
