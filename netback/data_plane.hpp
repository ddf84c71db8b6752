// A vif's data-plane process: pvback-net executed again as `pvback-net --data-plane 3` (comm
// pvback-net-dp; the handle is plane/process.hpp, shared with pvback-blk). It serves the vif's
// rings (TX, RX and the control ring: vif_rings.hpp) between the guest's grants and the TAP
// queue fds its control part gives it, confined (sandbox/sandbox.hpp), and holds no XenStore
// connection. The control part (VifDriver) launches one per connection, restarts it when it dies
// (it resumes the rings from the vif's record) and stops it at disconnect; a successor of a dead
// control part adopts it (and, first of all, the TAP queue fds it holds).
#pragma once
#include <chrono>
#include <expected>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.hpp"
#include "netback/data_plane_protocol.hpp"
#include "plane/process.hpp"

namespace pvback::netback {

// Starts `binary` (empty: this very executable) as a data plane serving `spec` with the queues'
// statistics memory, the vif's record, the TAP queue fds and (-1: none) the listening socket a
// successor of this control part may adopt it through. Waits up to `ready_timeout` until it
// serves. `place` (if set) puts the new process in its control group before it is given anything
// (plane::Launch::place). errno value on failure (logged, naming the device); nothing is left
// running then.
std::expected<plane::Process, int> launch_data_plane(const std::string& binary, const PlaneSpec& spec, int stats_fd,
                                                     int record_fd, std::span<const int> tap_fds, int listen_fd,
                                                     std::chrono::milliseconds ready_timeout,
                                                     const std::function<int(pid_t)>& place = {});

// A data plane a dead control part left serving, taken over through its listening socket.
struct AdoptedDataPlane {
  plane::Process process;
  PlaneSpec spec;  // what it serves, rate and headroom as last set
  UniqueFd stats;
  UniqueFd record;
  std::vector<UniqueFd> taps;  // the vif's TAP queue fds, in queue order
};
// ENOENT / ECONNREFUSED: none there; EPROTO: one that cannot be adopted (killed).
std::expected<AdoptedDataPlane, int> adopt_data_plane(const std::string& path, const std::string& name);

// Stops a data plane left serving by a dead control part, through its listening socket at `path`
// (the vif is gone, or a connection of its frontend that it does not serve needs the rings and
// the TAP queues): it finishes and exits; waits up to `timeout` for that. Nothing there: 0.
int stop_orphan_data_plane(const std::string& path, std::chrono::milliseconds timeout = std::chrono::milliseconds(10'000));

// The data plane's main (`pvback-net --data-plane FD`): serves what the control part at the
// other end of `sock` sends, until Stop, SIGTERM, or (orphaned) the orphan timeout. Returns the
// exit status.
int serve_as_data_plane(int sock);

}  // namespace pvback::netback
