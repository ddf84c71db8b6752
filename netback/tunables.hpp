// A vif's tunables by the names operators know (base/tunables.hpp): xen-netback's module
// parameters.
#pragma once
#include <span>

#include "base/tunables.hpp"
#include "netback/options.hpp"

namespace pvback::netback {

std::span<const Tunable<VifOptions>> vif_tunables();

}  // namespace pvback::netback
