// What `xl network-attach` / `xl create` write for a virtual network interface, for the simulated
// hypervisor's toolstack (pvback-sim-ctl add-vif / remove-vif) and for tests.
#pragma once
#include <cstdint>
#include <string>

#include "grant/types.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::sim {

struct VifSpec {
  DomId frontend_domid = 1;
  DomId backend_domid = 0;
  std::uint32_t handle = 0;        // the devid: vif<domid>.<handle>, eth<handle> in the guest
  std::string mac;                 // the guest's MAC; empty: 00:16:3e + three bytes from domid/handle
  std::string bridge;              // optional, for the hotplug script
  std::string rate;                // optional, "<bytes>,<usec>" as libxl writes it
  std::uint32_t mtu = 1500;
  // libxl's "script" node, the hotplug script it runs once the backend is at InitWait
  // (xenbus/hotplug.hpp). The simulated toolstack runs none: it writes what the script would
  // report, `hotplug_status` ("hotplug-status"), with the other nodes; empty: nothing, and the test
  // reports for the script itself.
  std::string script = "/etc/xen/scripts/vif-bridge";
  std::string hotplug_status = "connected";
};

std::string vif_backend_path(DomId backend_domid, DomId frontend_domid, std::uint32_t handle);
std::string vif_frontend_path(DomId frontend_domid, std::uint32_t handle);
// The MAC libxl would not pick (it picks random ones) but a stable one for tests: 00:16:3e:DD:DD:HH.
std::string default_vif_mac(DomId frontend_domid, std::uint32_t handle);

// Writes both nodes with libxl's keys and permissions in one transaction. 0 or an errno value
// (EINVAL for a malformed MAC or rate, EEXIST if the vif exists).
int add_vif(xenbus::XenStore& xs, const VifSpec& spec);

// Hot unplug as libxl does it (see unplug_device). 0 or an errno value.
int remove_vif(xenbus::XenStore& xs, DomId backend_domid, DomId frontend_domid, std::uint32_t handle,
               int timeout_ms = 10000);

}  // namespace pvback::sim
