// The vif's statistics as Prometheus series (base/prometheus.hpp): per queue, labelled with the
// device (domid, handle) and the queue, and the device's state and data-plane restarts. tx is the
// guest's transmit (guest -> port), rx the guest's receive (port -> guest), as in pvback's
// statistics file; a vif's TAP interface counts the other way round (its tx is the guest's rx).
#pragma once
#include <string>

#include "base/prometheus.hpp"
#include "grant/types.hpp"
#include "netback/vif_driver.hpp"
#include "xenbus/backend_device.hpp"

namespace pvback::netback {

void append_vif_metrics(prometheus::Exposition& e, DomId domid, const std::string& handle,
                        const xenbus::BackendDevice& device, const VifDriver& driver);

}  // namespace pvback::netback
