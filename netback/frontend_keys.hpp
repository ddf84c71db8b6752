// What a netfront asks for in its XenStore directory at connect, decided from the values alone: a
// pure function of what it wrote (read through `read`) and what this backend advertised. The vif
// driver calls it at every connect (and read_xdp_headroom at every reconfigure);
// tests/netback/offload and the libFuzzer target tests/fuzz/vif_frontend_keys_fuzz.cpp drive it
// with any values a guest could write. The reader and the refusal are blkback's too
// (xenbus/frontend_keys.hpp).
//
// Keys (relative to the frontend's directory), as Linux netback reads them:
//   request-rx-copy (must be set: page flipping is not supported), feature-rx-notify (must be set),
//   multi-queue-num-queues (1 when absent), feature-no-csum-offload, feature-ipv6-csum-offload,
//   feature-sg, feature-gso-tcpv4 (needs sg and checksum offload), feature-gso-tcpv6 (needs sg
//   and IPv6 checksum offload), request-multicast-control and xdp-headroom (when offered);
//   per queue (queue-N/ when more than one): tx-ring-ref, rx-ring-ref, and event-channel-tx +
//   event-channel-rx (split channels, when offered and event-channel-tx exists) or event-channel;
//   ctrl-ring-ref + event-channel-ctrl (when the control ring is offered and ctrl-ring-ref exists).
// A boolean is Linux's: a number other than 0, anything else false.
#pragma once
#include <cstdint>
#include <expected>
#include <optional>
#include <vector>

#include "grant/types.hpp"
#include "netback/port.hpp"
#include "xenbus/frontend_keys.hpp"

namespace pvback::netback {

// RX data starts at most this far into each guest page; more leaves too little of it for a frame.
inline constexpr unsigned kMaxXdpHeadroom = 2047;

// What this backend advertised.
struct VifFrontendLimits {
  unsigned max_queues = 1;         // multi-queue-max-queues
  bool split_event_channels = false;
  bool ctrl_ring = false;
  bool multicast_control = false;  // feature-multicast-control
  bool xdp_headroom = false;       // feature-xdp-headroom
};

struct VifQueueKeys {
  GrantRef tx_ring_ref = 0;
  GrantRef rx_ring_ref = 0;
  EvtchnPort tx_event_channel = 0;  // equal unless split
  EvtchnPort rx_event_channel = 0;
  bool split_event_channels = false;
};

struct VifCtrlKeys {
  GrantRef ring_ref = 0;
  EvtchnPort event_channel = 0;
};

struct VifFrontendRequest {
  unsigned queues = 1;
  GuestOffloads offloads;
  bool multicast_control = false;
  std::uint16_t xdp_headroom = 0;
  std::vector<VifQueueKeys> rings;  // one per queue
  std::optional<VifCtrlKeys> ctrl;
};

[[nodiscard]] std::expected<VifFrontendRequest, xenbus::KeyRefusal> read_vif_frontend(
    const xenbus::FrontendKeyReader& read, const VifFrontendLimits& limits);

// xdp-headroom alone (0 when not offered or absent), for a reconfigure.
[[nodiscard]] std::expected<std::uint16_t, xenbus::KeyRefusal> read_xdp_headroom(const xenbus::FrontendKeyReader& read,
                                                                                  bool offered);

}  // namespace pvback::netback
