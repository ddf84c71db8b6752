// One vbd served: its XenbusState machine (xenbus::BackendDevice), its VbdDriver, its statistics
// file and the hooks of the loop that drives them. pvback-blk makes one for its vbd; the host
// daemon one per vbd it serves itself, all on its one XenStore connection.
#pragma once
#include <expected>
#include <memory>
#include <string>

#include "blkback/command_line.hpp"
#include "grant/platform.hpp"
#include "xenbus/backend_daemon.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkback {

// Starts serving the vbd at `backend_path` (BackendDevice::start: InitWait, then whatever the
// frontend's state asks for). `command_line.options` as the caller settled them (its cgroup
// parent); the recovery directory is prepared here. `platform` and `xs` must outlive the service.
// An errno value if it cannot start (logged, naming the device).
std::expected<std::unique_ptr<xenbus::DeviceService>, int> start_vbd(const grant::Platform& platform,
                                                                      xenbus::XenStore& xs,
                                                                      const std::string& backend_path,
                                                                      const CommandLine& command_line);

// Whether vbds are served on threads of the control part (--data-plane thread) rather than by a
// data-plane process: what the host daemon leaves to a pvback-blk process of the vbd's own. Files,
// images (through a qemu-storage-daemon of the control part), NBD servers (over TLS too) and RBD
// images get a confined data plane.
bool served_on_threads(const BackendOptions& options);

}  // namespace pvback::blkback
