// What an operator can tune on a pvback-net vif (command line of pvback-net).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

#include "plane/cgroup_leaf.hpp"
#include "plane/options.hpp"

namespace pvback::netback {

struct VifOptions {
  unsigned max_queues = 0;             // multi-queue-max-queues; 0: CPUs, at most 8 (base/queue_count.hpp), capped by the exit
  bool split_event_channels = true;    // feature-split-event-channels
  bool ctrl_ring = true;               // feature-ctrl-ring (receive-side hash configuration)
  bool multicast_control = true;       // feature-multicast-control + feature-dynamic-multicast-control
  bool gso = true;                     // feature-gso-tcpv4/6, when the exit can send GSO packets
  bool xdp_headroom = true;            // feature-xdp-headroom
  unsigned max_slots = 18;             // packets of more TX slots are dropped (XEN_NETBK_LEGACY_SLOTS_MAX)
  unsigned fatal_slots = 20;           // packets of more TX slots disconnect the vif (fatal_skb_slots)
  std::chrono::milliseconds rx_stall_timeout{60'000};
  // Where the vif's record (vif_record.hpp) and its data plane's listening socket live
  // ("<dir>/vif-<domid>-<handle>", ".dp"); empty: the record is a memfd of the control part (a
  // data plane restarted by it resumes exactly, a successor of the whole backend does not).
  std::string recovery_dir;
  // The rings are served by a data-plane process of their own (netback/data_plane.hpp): the TAP
  // exit only; the DPDK exit's rings stay on threads of pvback-net.
  bool data_plane_process = true;
  // The data plane's sandbox (sandbox/sandbox.hpp) and its uid: base + the frontend's domid.
  bool sandbox = true;
  std::uint32_t sandbox_uid_base = 0x70000000;
  // A data plane that died is started again at once, at most this many times within 10 s; one
  // more death fails the vif (systemd's StartLimitBurst default).
  unsigned data_plane_restart_burst = 5;
  // A data plane whose control part died serves on this long for a successor to adopt it.
  std::chrono::milliseconds orphan_timeout{60'000};
  ::pvback::plane::OnStop on_stop = ::pvback::plane::OnStop::Auto;  // --on-stop
  std::string data_plane_binary;       // empty: this executable
  // The data plane's control group (plane/cgroup_leaf.hpp): a leaf "vif-<domid>-<handle>" holding
  // it to memory, task and CPU limits, as pvback-blk's vbds have. Defaults: VifDriver::make_cgroup.
  plane::CgroupOptions cgroup;
};

}  // namespace pvback::netback
