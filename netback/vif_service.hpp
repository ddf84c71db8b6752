// One vif served: its XenbusState machine (xenbus::BackendDevice), its VifDriver, its exit (the
// TAP, or a DPDK port), its statistics file and the hooks of the loop that drives them. pvback-net
// makes one for its vif; the host daemon one per vif it serves itself, all on its one XenStore
// connection.
#pragma once
#include <expected>
#include <memory>
#include <string>

#include "grant/platform.hpp"
#include "netback/command_line.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::netback {

// Starts serving the vif at `backend_path`: adopts the data plane a dead predecessor left serving
// (or stops one it will not adopt), makes the exit, then BackendDevice::start. `platform` and `xs`
// must outlive the service. An errno value if it cannot start (logged, naming the device).
std::expected<std::unique_ptr<xenbus::DeviceService>, int> start_vif(const grant::Platform& platform,
                                                                      xenbus::XenStore& xs,
                                                                      const std::string& backend_path,
                                                                      const CommandLine& command_line);

// Whether this command line serves a vif's rings on threads of the control part (the DPDK exit,
// whose EAL lives there, or --data-plane thread): what the host daemon leaves to a pvback-net
// process of the vif's own.
bool served_on_threads(const CommandLine& command_line);

}  // namespace pvback::netback
