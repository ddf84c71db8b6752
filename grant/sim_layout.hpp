// Where the simulated hypervisor (pvback-sim --run-dir DIR) puts its endpoints. Clients of the
// simulation (grant/sim_*.cpp, the XenStore socket users) and the daemon agree through this file.
#pragma once
#include <filesystem>
#include <string>

#include "grant/types.hpp"

namespace pvback::sim_layout {

// XenStore socket for Dom0 (privileged) connections: libxenstore's XENSTORED_PATH.
inline std::filesystem::path xenstore_socket(const std::filesystem::path& run_dir) { return run_dir / "socket"; }

// XenStore socket on which connections act as (unprivileged) domain `domid`. Exists from the
// domain's INTRODUCE until its RELEASE.
inline std::filesystem::path guest_xenstore_socket(const std::filesystem::path& run_dir, DomId domid) {
  return run_dir / "guest" / std::to_string(domid) / "socket";
}

// The hypervisor's control socket: domains, grant-table memory and event channels.
inline std::filesystem::path control_socket(const std::filesystem::path& run_dir) { return run_dir / "control"; }

}  // namespace pvback::sim_layout
