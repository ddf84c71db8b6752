// The live statistics of one vbd as a JSON document, rewritten atomically (write + rename) so a
// reader (cat, the operator CLI, a test) never sees a partial file.
#pragma once
#include <string>

#include "blkback/vbd_driver.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::blkback {

std::string render_stats_json(const xenbus::BackendDevice& device, const VbdDriver& driver);

}  // namespace pvback::blkback
