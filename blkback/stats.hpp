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

  // Linux xen-blkback's counters (its sysfs statistics/ directory, which xentop reads), counted
  // with the kernel's meaning beside pvback's own: pvback's reads, writes, ... count requests
  // answered OK, the kernel's every request it dispatched, whatever its outcome. Each request is
  // counted once, when it is answered (a request resumed from a crash-recovery record is counted
  // by the queue that answers it).
  //   oo_req   requests found in the ring that could not be taken at once for lack of resources
  //            (a free slot, or room in the bounce-page pool on the copy path); each once,
  //            however long it waited (Linux counts once per pass that stops for want of a
  //            free request structure);
  //   rd_req   read requests (direct, or indirect with indirect_op read), whatever the status:
  //            Linux counts them before it checks them, so refused and failed reads count too;
  //   wr_req   write requests likewise; barriers are not writes here (Linux counts
  //            BLKIF_OP_WRITE_BARRIER in f_req only);
  //   f_req    flush (BLKIF_OP_FLUSH_DISKCACHE) and barrier requests, whatever the status;
  //   ds_req   discard requests within the disk on writable storage, whatever the status
  //            (Linux counts a discard once xen_vbd_translate accepted it: a discard beyond
  //            the end of the disk or on a read-only one is not counted);
  //   rd_sect  512-byte sectors of read requests handed to the storage, whatever its answer
  //            (Linux adds them once the bios are submitted);
  //   wr_sect  likewise for writes and barriers with data.
  Counter kernel_oo_req, kernel_rd_req, kernel_wr_req, kernel_f_req, kernel_ds_req, kernel_rd_sect, kernel_wr_sect;
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

// The kernel's counters under the kernel's names (xen-blkback's statistics/ files), for the
// statistics file's "kernel" object and the Prometheus exposition.
inline constexpr QueueStatsField kKernelStatsFields[] = {
    {"oo_req", &QueueStats::kernel_oo_req},   {"rd_req", &QueueStats::kernel_rd_req},
    {"wr_req", &QueueStats::kernel_wr_req},   {"f_req", &QueueStats::kernel_f_req},
    {"ds_req", &QueueStats::kernel_ds_req},   {"rd_sect", &QueueStats::kernel_rd_sect},
    {"wr_sect", &QueueStats::kernel_wr_sect},
};

}  // namespace pvback::blkback
