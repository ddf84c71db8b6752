// Live statistics of one vif queue.
//
// Every counter has one writer at a time (base/counter.hpp):
//  - tx_*, events_received, notifications_sent, batches, grant_copy_segments, mcast_*,
//    rate_limited: the queue's own thread;
//  - rx_*, rx_stalls, stalled: whoever holds the queue's RX lock (its own thread, or another
//    queue of the same vif steering packets into this queue's RX ring, see queue.cpp). The lock
//    serialises the writers, so the relaxed load+store of Counter stays correct.
#pragma once
#include <cstdint>

#include "base/counter.hpp"

namespace pvback::netback {

using pvback::Counter;

struct QueueStats {
  // Guest -> port.
  Counter tx_packets, tx_bytes;          // handed to the port (before the port's own drops)
  Counter tx_too_many_slots;             // more than max_slots slots (dropped, answered ERROR)
  Counter tx_bad_size;                   // first slot < 14 bytes, a slot larger than what remains
  Counter tx_bad_offset;                 // offset + size beyond the page
  Counter tx_bad_extra;                  // unknown/duplicate extra type, bad GSO type/size, GSO not negotiated
  Counter tx_bad_grant;                  // a grant copy from the guest failed
  Counter tx_bad_checksum;               // csum_blank on a packet that is not TCP/UDP over IP
  Counter tx_no_buffers;                 // the port could not allocate buffers (alloc_tx)
  Counter tx_port_dropped;               // handed to transmit() but not sent
  Counter tx_ring_pending;               // gauge: requests in the TX ring not yet consumed
  Counter rate_limited;                  // times TX stopped for lack of credit
  Counter mcast_add, mcast_del;          // multicast filter requests from the guest

  // Port -> guest.
  Counter rx_packets, rx_bytes;          // delivered into the guest's buffers
  Counter rx_no_buffers;                 // steered here while this ring had no room
  Counter rx_stalled;                    // dropped while the queue was stalled
  Counter rx_too_big_for_guest;          // needs more slots than the guest can take (no sg)
  Counter rx_gso_not_negotiated;         // GSO of a type the guest did not ask for
  Counter rx_bad_checksum;               // partial checksum the guest cannot take and we could not complete
  Counter rx_multicast_filtered;         // multicast not in the guest's filter
  Counter rx_bad_grant;                  // a grant copy into the guest failed (answered ERROR)
  Counter rx_steered_out;                // received here, delivered to another queue's ring
  Counter rx_ring_posted;                // gauge: RX buffers the guest posted, not yet used
  Counter rx_stalls;                     // times the queue went stalled
  Counter stalled;                       // gauge: 1 while stalled (the driver may drop the carrier)

  Counter events_received, notifications_sent;
  // Event wake-ups that found no work beyond the grace, and the times the event channels were
  // then left masked for a while (an event storm, XSA-332's class).
  Counter spurious_events, events_throttled;
  Counter batches;                       // loop iterations that found work
  Counter grant_copy_segments;
};

// Every counter of QueueStats with its name in the statistics file: what sums and prints them
// walks this table, so a new counter is added here once.
struct QueueStatsField {
  const char* name;
  Counter QueueStats::*member;
};

inline constexpr QueueStatsField kQueueStatsFields[] = {
    {"tx_packets", &QueueStats::tx_packets},
    {"tx_bytes", &QueueStats::tx_bytes},
    {"tx_too_many_slots", &QueueStats::tx_too_many_slots},
    {"tx_bad_size", &QueueStats::tx_bad_size},
    {"tx_bad_offset", &QueueStats::tx_bad_offset},
    {"tx_bad_extra", &QueueStats::tx_bad_extra},
    {"tx_bad_grant", &QueueStats::tx_bad_grant},
    {"tx_bad_checksum", &QueueStats::tx_bad_checksum},
    {"tx_no_buffers", &QueueStats::tx_no_buffers},
    {"tx_port_dropped", &QueueStats::tx_port_dropped},
    {"tx_ring_pending", &QueueStats::tx_ring_pending},
    {"rate_limited", &QueueStats::rate_limited},
    {"mcast_add", &QueueStats::mcast_add},
    {"mcast_del", &QueueStats::mcast_del},
    {"rx_packets", &QueueStats::rx_packets},
    {"rx_bytes", &QueueStats::rx_bytes},
    {"rx_no_buffers", &QueueStats::rx_no_buffers},
    {"rx_stalled", &QueueStats::rx_stalled},
    {"rx_too_big_for_guest", &QueueStats::rx_too_big_for_guest},
    {"rx_gso_not_negotiated", &QueueStats::rx_gso_not_negotiated},
    {"rx_bad_checksum", &QueueStats::rx_bad_checksum},
    {"rx_multicast_filtered", &QueueStats::rx_multicast_filtered},
    {"rx_bad_grant", &QueueStats::rx_bad_grant},
    {"rx_steered_out", &QueueStats::rx_steered_out},
    {"rx_ring_posted", &QueueStats::rx_ring_posted},
    {"rx_stalls", &QueueStats::rx_stalls},
    {"stalled", &QueueStats::stalled},
    {"events_received", &QueueStats::events_received},
    {"notifications_sent", &QueueStats::notifications_sent},
    {"spurious_events", &QueueStats::spurious_events},
    {"events_throttled", &QueueStats::events_throttled},
    {"batches", &QueueStats::batches},
    {"grant_copy_segments", &QueueStats::grant_copy_segments},
};

}  // namespace pvback::netback
