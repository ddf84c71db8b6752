#include "netback/metrics.hpp"

namespace pvback::netback {
namespace {

using prometheus::Type;
using Metric = prometheus::QueueMetric<QueueStats>;
constexpr Type C = Type::Counter;
constexpr Type G = Type::Gauge;

constexpr const char* kPackets = "pvback_vif_packets_total";
constexpr const char* kPacketsHelp =
    "Packets moved: tx from the guest handed to the port (before the port's own drops), rx delivered into the "
    "guest's buffers";
constexpr const char* kBytes = "pvback_vif_bytes_total";
constexpr const char* kBytesHelp = "Bytes of those packets";
constexpr const char* kTxDrops = "pvback_vif_tx_dropped_packets_total";
constexpr const char* kTxDropsHelp = "Packets from the guest dropped, by reason";
constexpr const char* kRxDrops = "pvback_vif_rx_dropped_packets_total";
constexpr const char* kRxDropsHelp = "Packets for the guest dropped, by reason";
constexpr const char* kMcast = "pvback_vif_multicast_requests_total";
constexpr const char* kMcastHelp = "Multicast filter requests from the guest (control ring), by action";

constexpr Metric kMetrics[] = {
    {kPackets, C, kPacketsHelp, "direction", "tx", &QueueStats::tx_packets},
    {kPackets, C, kPacketsHelp, "direction", "rx", &QueueStats::rx_packets},
    {kBytes, C, kBytesHelp, "direction", "tx", &QueueStats::tx_bytes},
    {kBytes, C, kBytesHelp, "direction", "rx", &QueueStats::rx_bytes},
    {kTxDrops, C, kTxDropsHelp, "reason", "too_many_slots", &QueueStats::tx_too_many_slots},
    {kTxDrops, C, kTxDropsHelp, "reason", "bad_size", &QueueStats::tx_bad_size},
    {kTxDrops, C, kTxDropsHelp, "reason", "bad_offset", &QueueStats::tx_bad_offset},
    {kTxDrops, C, kTxDropsHelp, "reason", "bad_extra", &QueueStats::tx_bad_extra},
    {kTxDrops, C, kTxDropsHelp, "reason", "bad_grant", &QueueStats::tx_bad_grant},
    {kTxDrops, C, kTxDropsHelp, "reason", "bad_checksum", &QueueStats::tx_bad_checksum},
    {kTxDrops, C, kTxDropsHelp, "reason", "no_buffers", &QueueStats::tx_no_buffers},
    {kTxDrops, C, kTxDropsHelp, "reason", "port_dropped", &QueueStats::tx_port_dropped},
    {kRxDrops, C, kRxDropsHelp, "reason", "no_buffers", &QueueStats::rx_no_buffers},
    {kRxDrops, C, kRxDropsHelp, "reason", "stalled", &QueueStats::rx_stalled},
    {kRxDrops, C, kRxDropsHelp, "reason", "too_big_for_guest", &QueueStats::rx_too_big_for_guest},
    {kRxDrops, C, kRxDropsHelp, "reason", "gso_not_negotiated", &QueueStats::rx_gso_not_negotiated},
    {kRxDrops, C, kRxDropsHelp, "reason", "bad_checksum", &QueueStats::rx_bad_checksum},
    {kRxDrops, C, kRxDropsHelp, "reason", "multicast_filtered", &QueueStats::rx_multicast_filtered},
    {kRxDrops, C, kRxDropsHelp, "reason", "bad_grant", &QueueStats::rx_bad_grant},
    {"pvback_vif_rx_steered_out_packets_total", C, "Packets received on this queue and delivered to another's ring",
     nullptr, nullptr, &QueueStats::rx_steered_out},
    {"pvback_vif_tx_ring_pending_requests", G, "Requests in the TX ring not yet consumed", nullptr, nullptr,
     &QueueStats::tx_ring_pending},
    {"pvback_vif_rx_ring_posted_buffers", G, "RX buffers the guest posted, not yet used", nullptr, nullptr,
     &QueueStats::rx_ring_posted},
    {"pvback_vif_stalled", G, "1 while the queue is stalled (the guest posts no RX buffers)", nullptr, nullptr,
     &QueueStats::stalled},
    {"pvback_vif_rx_stalls_total", C, "Times the queue went stalled", nullptr, nullptr, &QueueStats::rx_stalls},
    {"pvback_vif_rate_limited_total", C, "Times TX stopped for lack of credit (the vif's rate)", nullptr, nullptr,
     &QueueStats::rate_limited},
    {kMcast, C, kMcastHelp, "action", "add", &QueueStats::mcast_add},
    {kMcast, C, kMcastHelp, "action", "del", &QueueStats::mcast_del},
    {"pvback_vif_events_received_total", C, "Event-channel notifications from the frontend", nullptr, nullptr,
     &QueueStats::events_received},
    {"pvback_vif_notifications_sent_total", C, "Event-channel notifications to the frontend", nullptr, nullptr,
     &QueueStats::notifications_sent},
    {"pvback_vif_spurious_events_total", C, "Wake-ups that found no work beyond the grace (an event storm)", nullptr,
     nullptr, &QueueStats::spurious_events},
    {"pvback_vif_events_throttled_total", C, "Times the event channels were left masked for a while (an event storm)",
     nullptr, nullptr, &QueueStats::events_throttled},
    {"pvback_vif_batches_total", C, "Loop iterations that found work", nullptr, nullptr, &QueueStats::batches},
    {"pvback_vif_grant_copy_segments_total", C, "Grant-copy segments", nullptr, nullptr,
     &QueueStats::grant_copy_segments},
};

}  // namespace

void append_vif_metrics(prometheus::Exposition& e, DomId domid, const std::string& handle,
                        const xenbus::BackendDevice& device, const VifDriver& driver) {
  const prometheus::Labels labels = {{"domid", std::to_string(domid)}, {"handle", handle}};
  prometheus::append_device_metrics(e, "pvback_vif", labels, device.state(), driver.queue_stats().size(),
                                    driver.data_plane_restarts());
  prometheus::append_queue_metrics(e, labels, driver.past_totals(), driver.queue_stats(), kMetrics);
}

}  // namespace pvback::netback
