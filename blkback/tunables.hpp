// A vbd's tunables by the names operators know (base/tunables.hpp): xen-blkback's module
// parameters where it has one, and indirect_threshold, the indirect-segment limit advertised.
#pragma once
#include <span>

#include "base/tunables.hpp"
#include "blkback/options.hpp"

namespace pvback::blkback {

std::span<const Tunable<BackendOptions>> vbd_tunables();

// The options a running queue takes at once (Queue::tune, the data plane's Tune).
inline LiveTuning live_tuning(const BackendOptions& o) {
  return {o.max_persistent_grants, o.persistent_idle_expiry, o.poll_max, o.submit_batch};
}

}  // namespace pvback::blkback
