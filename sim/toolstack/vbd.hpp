// What `xl block-attach` / `xl create` write for a virtual block device, for the simulated
// hypervisor's toolstack (pvback-sim-ctl add-vbd / remove-vbd) and for tests.
#pragma once
#include <cstdint>
#include <string>

#include "grant/types.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::sim {

struct VbdSpec {
  DomId frontend_domid = 1;
  DomId backend_domid = 0;
  std::uint32_t devid = 51712;     // virtual-device: 51712 = xvda (202 << 8)
  std::string params;              // the storage: a file or block device path
  std::string mode = "w";          // "r" or "w"
  std::string device_type = "disk";  // "disk" or "cdrom"
  bool discard_enable = true;
  std::string dev_name = "xvda";
  // libxl's "script" node: the hotplug script the toolstack runs once the backend is at InitWait
  // (xenbus/hotplug.hpp); empty: none (the node is not written). As for a vif (vif.hpp), the
  // simulated toolstack writes `hotplug_status` for the script with the other nodes, if not empty.
  std::string script;
  std::string hotplug_status;
  // The backend's directory under backend/: "vbd", or "vbd3" as Xen 4.19+'s libxl writes for
  // backendtype=tap (the frontend's stays device/vbd).
  std::string backend_kind = "vbd";
};

std::string vbd_backend_path(DomId backend_domid, DomId frontend_domid, std::uint32_t devid,
                             const std::string& kind = "vbd");
std::string vbd_frontend_path(DomId frontend_domid, std::uint32_t devid);

// Writes the backend node (owned by the backend domain, readable by the guest) and the frontend
// node (owned by the guest, readable by the backend) in one transaction, as libxl does.
// 0 or an errno value (EEXIST if the device already exists).
int add_vbd(xenbus::XenStore& xs, const VbdSpec& spec);

// Hot unplug as libxl does it: online=0 and state Closing on the backend, then, once the backend
// reached Closed (or after `timeout_ms`), both nodes are removed. 0 or an errno value.
int remove_vbd(xenbus::XenStore& xs, DomId backend_domid, DomId frontend_domid, std::uint32_t devid,
               int timeout_ms = 10000);

}  // namespace pvback::sim
