#include "netback/tunables.hpp"

#include <array>

namespace pvback::netback {
namespace {

using T = Tunable<VifOptions>;
using O = VifOptions;

constexpr std::array kTunables{
    // Advertised in the backend's directory, read by the frontend when it connects.
    T{"max_queues", "", TakesEffect::NextConnect, false, 0, 64,
      [](const O& o) -> std::uint64_t { return o.max_queues; },
      [](O& o, std::uint64_t v) { o.max_queues = static_cast<unsigned>(v); },
      "multi-queue-max-queues (0: one per CPU, capped by the exit)"},
    T{"separate_tx_rx_irq", "", TakesEffect::NextConnect, true, 0, 1,
      [](const O& o) -> std::uint64_t { return o.split_event_channels ? 1 : 0; },
      [](O& o, std::uint64_t v) { o.split_event_channels = v != 0; },
      "feature-split-event-channels: an event channel each for TX and RX"},
    T{"provides_xdp_headroom", "", TakesEffect::NextConnect, true, 0, 1,
      [](const O& o) -> std::uint64_t { return o.xdp_headroom ? 1 : 0; },
      [](O& o, std::uint64_t v) { o.xdp_headroom = v != 0; },
      "feature-xdp-headroom: leave the headroom the frontend's XDP asks for"},
    // The queues' limits, which each connection's queues (its data plane) are started with.
    T{"fatal_skb_slots", "", TakesEffect::NextConnect, false, 1, 255,  // below the TX ring's 256 slots
      [](const O& o) -> std::uint64_t { return o.fatal_slots; },
      [](O& o, std::uint64_t v) { o.fatal_slots = static_cast<unsigned>(v); },
      "a TX packet of more slots is malicious: the vif is disconnected (XSA-39)"},
    T{"rx_stall_timeout_msecs", "", TakesEffect::NextConnect, false, 0, 86'400'000,
      [](const O& o) -> std::uint64_t { return static_cast<std::uint64_t>(o.rx_stall_timeout.count()); },
      [](O& o, std::uint64_t v) { o.rx_stall_timeout = std::chrono::milliseconds(v); },
      "a guest that posts no RX buffers this long: carrier off, its packets dropped (0: never)"},
    // Kernel names with nothing to apply to in pvback.
    T{"rx_drain_timeout_msecs", "", TakesEffect::Never, false, 0, 0, nullptr, nullptr,
      "pvback drops the packets it holds for a guest when its queue stalls (rx_stall_timeout_msecs); there is no "
      "separate drain timer"},
    T{"hash_cache_size", "", TakesEffect::Never, false, 0, 0, nullptr, nullptr,
      "pvback computes the receive-side hash the frontend configured for each packet; it keeps no cache of hashes"},
};

}  // namespace

std::span<const Tunable<VifOptions>> vif_tunables() { return kTunables; }

}  // namespace pvback::netback
