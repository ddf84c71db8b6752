// What an operator can tune on a pvback-net vif (command line of pvback-net).
#pragma once
#include <chrono>

namespace pvback::netback {

struct VifOptions {
  unsigned max_queues = 0;             // multi-queue-max-queues; 0: number of CPUs (capped by the exit)
  bool split_event_channels = true;    // feature-split-event-channels
  bool ctrl_ring = true;               // feature-ctrl-ring (receive-side hash configuration)
  bool multicast_control = true;       // feature-multicast-control + feature-dynamic-multicast-control
  bool gso = true;                     // feature-gso-tcpv4/6, when the exit can send GSO packets
  bool xdp_headroom = true;            // feature-xdp-headroom
  unsigned max_slots = 18;             // packets of more TX slots are dropped (XEN_NETBK_LEGACY_SLOTS_MAX)
  unsigned fatal_slots = 20;           // packets of more TX slots disconnect the vif (fatal_skb_slots)
  std::chrono::milliseconds rx_stall_timeout{60'000};
};

}  // namespace pvback::netback
