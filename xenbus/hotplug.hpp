// The toolstack's hotplug script, as the kernel's backends wait for it.
//
// libxl names a script in the backend directory's "script" node (/etc/xen/scripts/block for a
// phy disk unless the disk line says script=, vif-bridge or the vif line's script for a vif) and
// runs it once the backend has reached InitWait. The script checks and sets up what the device
// needs (block: that a disk opened writable is not in use by another guest, and a loop device for
// a file; vif-bridge: the interface on its bridge) and reports in the same directory:
// "hotplug-status" = "connected" on success (block's write_dev also writes "physical-device"),
// "error" or "busy" with a reason in "hotplug-error" on failure. Linux's blkback opens nothing
// before "physical-device" appears and netback does not go Connected before "hotplug-status" is
// "connected", so a disk the script refused never reaches the guest. pvback does the same for
// both kinds: a device whose directory names a script is served only once the script said so.
#pragma once
#include <optional>
#include <string>

namespace pvback::xenbus {

struct HotplugVerdict {
  enum class Kind {
    NoScript,   // nothing to wait for (no "script" node: a toolstack that runs none, the tests)
    Pending,    // the script has not reported yet
    Connected,  // it succeeded: serve the device
    Failed,     // it refused or failed: serve nothing (detail: its reason, as it wrote it)
  };
  Kind kind = Kind::NoScript;
  std::string detail;
};

// From the backend directory's nodes (nullopt: missing). Pure; the caller reads the nodes.
// "connected" succeeds, as does a "physical-device" written before any status (what Linux's
// blkback waits for); any other status fails, with "hotplug-error" (or the status itself) as
// the reason.
HotplugVerdict hotplug_verdict(const std::optional<std::string>& script, const std::optional<std::string>& status,
                               const std::optional<std::string>& error,
                               const std::optional<std::string>& physical_device);

}  // namespace pvback::xenbus
