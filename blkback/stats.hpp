// Live statistics of one vbd and its queues.
//
// Each counter has exactly one writer, the queue's thread (see base/counter.hpp).
#pragma once
#include <cstdint>
#include <string>

#include "base/counter.hpp"

namespace pvback::blkback {

using pvback::Counter;

struct QueueStats {
  // Requests completed, by operation (an indirect request counts under its inner operation too).
  Counter reads, writes, flushes, barriers, discards, indirect;
  Counter sectors_read, sectors_written, sectors_discarded;  // 512-byte units
  // Requests answered BLKIF_RSP_ERROR because the frontend sent something invalid, because the
  // storage failed, and those answered BLKIF_RSP_EOPNOTSUPP.
  Counter bad_requests, io_errors, unsupported;
  Counter in_flight;                 // gauge: requests taken from the ring, not yet answered
  Counter persistent_grants;         // gauge: grants currently kept mapped
  Counter persistent_hits, persistent_misses, persistent_evictions;
  Counter grants_mapped, grants_copied;  // non-persistent map operations / grant-copy segments
  Counter events_received, notifications_sent;
  // Wake-ups that found no request beyond the grace, and the times the event channel was then
  // left masked for a while (an event storm, XSA-332's class).
  Counter spurious_events, events_throttled;
  Counter batches;                   // wake-ups that found work (requests per batch = total / batches)
};

// Every counter of QueueStats with its name in the statistics file: what sums and prints them
// walks this table, so a new counter is added here once.
struct QueueStatsField {
  const char* name;
  Counter QueueStats::*member;
};

inline constexpr QueueStatsField kQueueStatsFields[] = {
    {"reads", &QueueStats::reads},
    {"writes", &QueueStats::writes},
    {"flushes", &QueueStats::flushes},
    {"barriers", &QueueStats::barriers},
    {"discards", &QueueStats::discards},
    {"indirect", &QueueStats::indirect},
    {"sectors_read", &QueueStats::sectors_read},
    {"sectors_written", &QueueStats::sectors_written},
    {"sectors_discarded", &QueueStats::sectors_discarded},
    {"bad_requests", &QueueStats::bad_requests},
    {"io_errors", &QueueStats::io_errors},
    {"unsupported", &QueueStats::unsupported},
    {"in_flight", &QueueStats::in_flight},
    {"persistent_grants", &QueueStats::persistent_grants},
    {"persistent_hits", &QueueStats::persistent_hits},
    {"persistent_misses", &QueueStats::persistent_misses},
    {"persistent_evictions", &QueueStats::persistent_evictions},
    {"grants_mapped", &QueueStats::grants_mapped},
    {"grants_copied", &QueueStats::grants_copied},
    {"events_received", &QueueStats::events_received},
    {"notifications_sent", &QueueStats::notifications_sent},
    {"spurious_events", &QueueStats::spurious_events},
    {"events_throttled", &QueueStats::events_throttled},
    {"batches", &QueueStats::batches},
};

}  // namespace pvback::blkback
