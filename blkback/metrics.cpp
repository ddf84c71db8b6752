#include "blkback/metrics.hpp"

#include "ring/blkif.hpp"

namespace pvback::blkback {
namespace {

using prometheus::Type;
using Metric = prometheus::QueueMetric<QueueStats>;
constexpr Type C = Type::Counter;
constexpr Type G = Type::Gauge;
constexpr std::uint64_t kSector = blkif::kSectorSize;

constexpr const char* kRequests = "pvback_vbd_requests_total";
constexpr const char* kRequestsHelp = "Requests answered BLKIF_RSP_OKAY, by operation (an indirect request under its own)";
constexpr const char* kErrors = "pvback_vbd_request_errors_total";
constexpr const char* kErrorsHelp =
    "Requests answered with an error: bad_request (the frontend sent something invalid, BLKIF_RSP_ERROR), "
    "io_error (the storage failed, BLKIF_RSP_ERROR), unsupported (BLKIF_RSP_EOPNOTSUPP)";
constexpr const char* kBytes = "pvback_vbd_bytes_total";
constexpr const char* kBytesHelp =
    "Bytes of requests answered BLKIF_RSP_OKAY: read, written (writes and barriers' data), discarded";
constexpr const char* kLookups = "pvback_vbd_persistent_grant_lookups_total";
constexpr const char* kLookupsHelp = "Persistent-grant cache lookups of data segments, by result";

constexpr Metric kMetrics[] = {
    {kRequests, C, kRequestsHelp, "op", "read", &QueueStats::reads},
    {kRequests, C, kRequestsHelp, "op", "write", &QueueStats::writes},
    {kRequests, C, kRequestsHelp, "op", "flush", &QueueStats::flushes},
    {kRequests, C, kRequestsHelp, "op", "barrier", &QueueStats::barriers},
    {kRequests, C, kRequestsHelp, "op", "discard", &QueueStats::discards},
    {"pvback_vbd_indirect_requests_total", C, "BLKIF_OP_INDIRECT requests answered BLKIF_RSP_OKAY", nullptr, nullptr,
     &QueueStats::indirect},
    {kErrors, C, kErrorsHelp, "reason", "bad_request", &QueueStats::bad_requests},
    {kErrors, C, kErrorsHelp, "reason", "io_error", &QueueStats::io_errors},
    {kErrors, C, kErrorsHelp, "reason", "unsupported", &QueueStats::unsupported},
    {kBytes, C, kBytesHelp, "op", "read", &QueueStats::sectors_read, kSector},
    {kBytes, C, kBytesHelp, "op", "write", &QueueStats::sectors_written, kSector},
    {kBytes, C, kBytesHelp, "op", "discard", &QueueStats::sectors_discarded, kSector},
    {"pvback_vbd_in_flight_requests", G, "Requests taken from the ring and not yet answered", nullptr, nullptr,
     &QueueStats::in_flight},
    {"pvback_vbd_persistent_grants", G, "Grants kept mapped (persistent grants)", nullptr, nullptr,
     &QueueStats::persistent_grants},
    {kLookups, C, kLookupsHelp, "result", "hit", &QueueStats::persistent_hits},
    {kLookups, C, kLookupsHelp, "result", "miss", &QueueStats::persistent_misses},
    {"pvback_vbd_persistent_grant_evictions_total", C, "Persistent grants unmapped (idle, or the cache full)", nullptr,
     nullptr, &QueueStats::persistent_evictions},
    {"pvback_vbd_grant_maps_total", C, "Grants mapped for one request (not persistent)", nullptr, nullptr,
     &QueueStats::grants_mapped},
    {"pvback_vbd_grant_copy_segments_total", C, "Grant-copy segments (data and indirect descriptor pages)", nullptr,
     nullptr, &QueueStats::grants_copied},
    {"pvback_vbd_events_received_total", C, "Event-channel notifications from the frontend", nullptr, nullptr,
     &QueueStats::events_received},
    {"pvback_vbd_notifications_sent_total", C, "Event-channel notifications to the frontend", nullptr, nullptr,
     &QueueStats::notifications_sent},
    {"pvback_vbd_spurious_events_total", C, "Wake-ups that found no request beyond the grace (an event storm)",
     nullptr, nullptr, &QueueStats::spurious_events},
    {"pvback_vbd_events_throttled_total", C, "Times the event channel was left masked for a while (an event storm)",
     nullptr, nullptr, &QueueStats::events_throttled},
    {"pvback_vbd_batches_total", C, "Wake-ups that found requests", nullptr, nullptr, &QueueStats::batches},
    // Linux xen-blkback's statistics/ files under their names (stats.hpp says what each counts).
    {"pvback_vbd_kernel_oo_req_total", C,
     "xen-blkback's oo_req: requests that could not be taken from the ring at once for lack of a free slot or "
     "bounce pages, each counted once",
     nullptr, nullptr, &QueueStats::kernel_oo_req},
    {"pvback_vbd_kernel_rd_req_total", C, "xen-blkback's rd_req: read requests, whatever their status", nullptr,
     nullptr, &QueueStats::kernel_rd_req},
    {"pvback_vbd_kernel_wr_req_total", C, "xen-blkback's wr_req: write requests (not barriers), whatever their status",
     nullptr, nullptr, &QueueStats::kernel_wr_req},
    {"pvback_vbd_kernel_f_req_total", C, "xen-blkback's f_req: flush and barrier requests, whatever their status",
     nullptr, nullptr, &QueueStats::kernel_f_req},
    {"pvback_vbd_kernel_ds_req_total", C,
     "xen-blkback's ds_req: discard requests not refused as beyond the disk or on read-only storage", nullptr, nullptr,
     &QueueStats::kernel_ds_req},
    {"pvback_vbd_kernel_rd_sect_total", C,
     "xen-blkback's rd_sect: 512-byte sectors of reads handed to the storage, whatever its answer", nullptr, nullptr,
     &QueueStats::kernel_rd_sect},
    {"pvback_vbd_kernel_wr_sect_total", C,
     "xen-blkback's wr_sect: 512-byte sectors of writes and barriers handed to the storage, whatever its answer",
     nullptr, nullptr, &QueueStats::kernel_wr_sect},
};

}  // namespace

void append_vbd_metrics(prometheus::Exposition& e, DomId domid, const std::string& devid,
                        const xenbus::BackendDevice& device, const VbdDriver& driver) {
  const prometheus::Labels labels = {{"domid", std::to_string(domid)}, {"devid", devid}};
  prometheus::append_device_metrics(e, "pvback_vbd", labels, device.state(), driver.queue_stats().size(),
                                    driver.data_plane_restarts());
  prometheus::append_queue_metrics(e, labels, driver.past_totals(), driver.queue_stats(), kMetrics);
}

}  // namespace pvback::blkback
