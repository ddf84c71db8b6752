#include "blkback/tunables.hpp"

#include <array>

namespace pvback::blkback {
namespace {

using T = Tunable<BackendOptions>;
using O = BackendOptions;

constexpr std::array kTunables{
    // xen-blkback's persistent-grant limits (both writable at run time there too): the cache of
    // each queue shrinks or grows at once, the least recently used idle grants unmapped first.
    // At most 65536 per queue: each is a mapping kept and about 70 bytes of the data plane's
    // memory, allocated when the bound grows.
    T{"max_persistent_grants", "", TakesEffect::Now, false, 0, 65'536,
      [](const O& o) -> std::uint64_t { return o.max_persistent_grants; },
      [](O& o, std::uint64_t v) { o.max_persistent_grants = static_cast<unsigned>(v); },
      "persistent grants each queue keeps mapped (beyond it, least recently used first are unmapped)"},
    T{"persistent_grant_unused_seconds", "", TakesEffect::Now, false, 1, 86'400,
      [](const O& o) -> std::uint64_t {
        // Rounded up: --persistent-idle-ms may have set a part of a second.
        return static_cast<std::uint64_t>((o.persistent_idle_expiry.count() + 999) / 1000);
      },
      [](O& o, std::uint64_t v) { o.persistent_idle_expiry = std::chrono::seconds(v); },
      "a persistent grant unused this long is unmapped"},
    // pvback's own (the kernel's blkback neither polls nor batches submissions to io_uring).
    T{"poll_max_us", "", TakesEffect::Now, false, 0, static_cast<std::uint64_t>(kMaxPollMax.count()),
      [](const O& o) -> std::uint64_t { return static_cast<std::uint64_t>(o.poll_max.count()); },
      [](O& o, std::uint64_t v) { o.poll_max = std::chrono::microseconds(v); },
      "a busy queue polls its ring and completions up to this long before sleeping, with the frontend's "
      "notifications off meanwhile (adaptive; 0: never polls)"},
    T{"submit_batch", "", TakesEffect::Now, false, 0, kMaxSubmitBatch,
      [](const O& o) -> std::uint64_t { return o.submit_batch; },
      [](O& o, std::uint64_t v) { o.submit_batch = static_cast<unsigned>(v); },
      "requests started per io_uring_enter as a batch from the ring is submitted (0: all at once; small starts "
      "the first sooner, large costs fewer system calls)"},
    // Negotiated: advertised in the backend's directory, read by the frontend when it connects.
    T{"max_queues", "", TakesEffect::NextConnect, false, 0, 256,
      [](const O& o) -> std::uint64_t { return o.max_queues; },
      [](O& o, std::uint64_t v) { o.max_queues = static_cast<unsigned>(v); },
      "multi-queue-max-queues (0: one per CPU)"},
    T{"max_ring_page_order", "", TakesEffect::NextConnect, false, 0, 6,
      [](const O& o) -> std::uint64_t { return o.max_ring_page_order; },
      [](O& o, std::uint64_t v) { o.max_ring_page_order = static_cast<unsigned>(v); },
      "max-ring-page-order: the ring's size, 2^N pages"},
    T{"indirect_threshold", "max_indirect_segments", TakesEffect::NextConnect, false, 0, 4096,
      [](const O& o) -> std::uint64_t { return o.max_indirect_segments; },
      [](O& o, std::uint64_t v) { o.max_indirect_segments = static_cast<unsigned>(v); },
      "feature-max-indirect-segments: segments of one indirect request (0: none)"},
    T{"feature_persistent", "", TakesEffect::NextConnect, true, 0, 1,
      [](const O& o) -> std::uint64_t { return o.persistent_grants ? 1 : 0; },
      [](O& o, std::uint64_t v) { o.persistent_grants = v != 0; },
      "feature-persistent: offer persistent grants"},
    // Kernel names with nothing to apply to in pvback.
    T{"max_buffer_pages", "", TakesEffect::Never, false, 0, 0, nullptr, nullptr,
      "xen-blkback keeps a pool of free pages to map grants into; pvback maps and copies into buffers each queue "
      "allocates once when it connects"},
    T{"log_stats", "", TakesEffect::Never, false, 0, 0, nullptr, nullptr,
      "pvback keeps every vbd's statistics all the time (pvbackctl stats, its statistics file)"},
};

}  // namespace

std::span<const Tunable<BackendOptions>> vbd_tunables() { return kTunables; }

}  // namespace pvback::blkback
