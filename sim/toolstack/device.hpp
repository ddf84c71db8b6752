// Plugging and unplugging any PV device as libxl does it, shared by vbd and vif.
#pragma once
#include <span>
#include <string>
#include <utility>

#include "grant/types.hpp"

#include "xenbus/xenstore.hpp"

namespace pvback::sim {

using NodeValues = std::span<const std::pair<const char*, std::string>>;

// Writes the backend node (owned by the backend domain, readable by the guest) and the frontend
// node (owned by the guest, readable by the backend) with their keys, in one transaction, as
// libxl does. 0 or an errno value (EEXIST if the backend node has a state already).
int plug_device(xenbus::XenStore& xs, const std::string& backend_path, DomId backend_domid, NodeValues backend_keys,
                const std::string& frontend_path, DomId frontend_domid, NodeValues frontend_keys);

// online=0 and state Closing on the backend (unless it is Closed already), then, once the backend
// reached Closed or removed its node (or after `timeout_ms`), both nodes are removed.
// 0 or an errno value (ENOENT if the backend node does not exist).
int unplug_device(xenbus::XenStore& xs, const std::string& backend_path, const std::string& frontend_path,
                  int timeout_ms);

}  // namespace pvback::sim
