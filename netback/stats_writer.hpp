// The live statistics of one vif as a JSON document (written atomically by pvback-net's main loop).
#pragma once
#include <string>

#include "netback/vif_driver.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::netback {

std::string render_stats_json(const xenbus::BackendDevice& device, const VifDriver& driver);

}  // namespace pvback::netback
