// What a blkfront asks for in its XenStore directory at connect, decided from the values alone: a
// pure function of what it wrote (read through `read`) and the limits this backend advertised.
// The vbd driver calls it at every connect; tests/blkback/request and the libFuzzer target
// tests/fuzz/frontend_keys_fuzz.cpp drive it with any values a guest could write.
//
// Keys (relative to the frontend's directory): protocol, multi-queue-num-queues, ring-page-order,
// feature-persistent, and per queue (queue-N/ when more than one) event-channel and ring-ref<i>
// (or the legacy ring-ref for a single page).
#pragma once
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

#include "blkback/queue.hpp"
#include "grant/types.hpp"
#include "xenbus/frontend_keys.hpp"

namespace pvback::blkback {

struct FrontendLimits {
  unsigned max_queues = 1;           // multi-queue-max-queues as advertised
  unsigned max_ring_page_order = 0;  // max-ring-page-order as advertised
  bool persistent_offered = false;   // feature-persistent as advertised
};

struct FrontendRing {
  EvtchnPort event_channel = 0;
  std::vector<GrantRef> refs;        // 1 << ring_page_order of them
};

struct FrontendRequest {
  Abi abi = Abi::Native;
  unsigned queues = 1;
  unsigned ring_page_order = 0;
  bool persistent_grants = false;    // both ends
  std::vector<FrontendRing> rings;   // one per queue
};

// The reader and the refusal are the ones netback's frontend keys use too (xenbus/frontend_keys.hpp).
using FrontendRefusal = xenbus::KeyRefusal;
using FrontendKeyReader = xenbus::FrontendKeyReader;

[[nodiscard]] std::expected<FrontendRequest, FrontendRefusal> read_frontend(const FrontendKeyReader& read,
                                                                            const FrontendLimits& limits);

}  // namespace pvback::blkback
