// The control ring's messages (netif.h "Control messages"), answered by a pure function of the
// request, the vif's current hash configuration, its queue count and a reader of the guest's
// granted pages: no state, no logging. netback/ctrl_ring.cpp serves the ring with it;
// tests/fuzz/ctrl_messages_fuzz.cpp drives it with arbitrary message sequences.
//
// A request that changes the configuration yields the whole new HashConfig, built and checked
// locally (grant copies land in local buffers): the caller stores it in one step, so the data path
// never sees a half-applied key or mapping, and a refused request changes nothing (XSA-270).
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "grant/types.hpp"
#include "netback/vif_shared.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {

struct CtrlOutcome {
  std::uint32_t status = netif::kCtrlStatusNotSupported;  // netif::kCtrlStatus*
  std::uint32_t data = 0;
  std::optional<HashConfig> next;  // the configuration to store (success of a Set* only)
  std::array<char, 112> why{};     // a refusal's reason for the log, empty otherwise
};

// Copies `len` bytes from the start of the frontend's grant `gref` into `dest`; false if the
// grant cannot be read.
using GuestPageReader = std::function<bool(GrantRef gref, void* dest, std::uint32_t len)>;

[[nodiscard]] CtrlOutcome handle_ctrl_request(const netif::CtrlRequest& req, const HashConfig& current,
                                              unsigned queues, const GuestPageReader& read_guest);

}  // namespace pvback::netback
