// The vbd's statistics as Prometheus series (base/prometheus.hpp): per queue, labelled with the
// device (domid, devid) and the queue, pvback's counters under Prometheus' conventions and Linux
// xen-blkback's under theirs (pvback_vbd_kernel_*), and the device's state and data-plane
// restarts. What each series counts: stats.hpp, and the README's operator section.
#pragma once
#include <string>

#include "base/prometheus.hpp"
#include "blkback/vbd_driver.hpp"
#include "grant/types.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::blkback {

void append_vbd_metrics(prometheus::Exposition& e, DomId domid, const std::string& devid,
                        const xenbus::BackendDevice& device, const VbdDriver& driver);

}  // namespace pvback::blkback
