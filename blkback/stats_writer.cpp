#include "blkback/stats_writer.hpp"

#include "base/text_file.hpp"
#include "xenbus/state.hpp"

namespace pvback::blkback {

std::string render_stats_json(const xenbus::BackendDevice& device, const VbdDriver& driver) {
  std::string out = "{\n";
  out += "  \"device\": " + json_string(device.name()) + ",\n";
  out += "  \"backend_path\": " + json_string(device.backend_path()) + ",\n";
  out += "  \"state\": " + json_string(std::string(xenbus::state_name(device.state()))) + ",\n";
  if (const storage::Engine* e = driver.engine()) {
    const storage::Capabilities& c = e->capabilities();
    out += "  \"storage\": {\"engine\": " + json_string(e->kind()) + ", \"target\": " + json_string(e->describe()) +
           ", \"sectors\": " + std::to_string(e->sectors()) +
           ", \"sector_size\": " + std::to_string(c.logical_block_size) +
           ", \"direct\": " + (c.direct ? "true" : "false") + ", \"read_only\": " +
           (driver.read_only() ? "true" : "false") + ", \"discard\": " + (c.discard ? "true" : "false") +
           "},\n";
  }
  const auto& n = driver.negotiated();
  if (driver.connected()) {
    out += "  \"negotiated\": {\"queues\": " + std::to_string(n.queues) +
           ", \"ring_page_order\": " + std::to_string(n.ring_page_order) + ", \"abi\": \"" +
           (n.abi == Abi::Native ? "native" : n.abi == Abi::X86_32 ? "x86_32-abi" : "x86_64-abi") +
           "\", \"persistent_grants\": " + (n.persistent_grants ? "true" : "false") + ", \"data_path\": \"" +
           (n.persistent_grants ? "persistent-map" : driver.options().data_path == DataPath::Map ? "map" : "copy") + "\"},\n";
  }
  if (driver.connected())
    out += "  \"data_plane\": {\"pid\": " + std::to_string(driver.data_plane_pid()) +
           ", \"restarts\": " + std::to_string(driver.data_plane_restarts()) +
           ", \"paused\": " + (driver.paused() ? "true" : "false") + ", \"cgroup\": [" +
           [&] {
             std::string list;
             for (const auto& dir : driver.data_plane_cgroup()) list += (list.empty() ? "" : ", ") + json_string(dir);
             return list;
           }() + "]},\n";
  // Linux xen-blkback's statistics/ under its names, over every connection (stats.hpp).
  QueueStats kernel;
  add_queue_totals(kernel, driver.past_totals(), driver.queue_stats(), kKernelStatsFields);
  out += "  \"kernel\": ";
  append_json_counters(out, kernel, kKernelStatsFields);
  out += ",\n";
  append_json_queue_stats(out, driver.past_totals(), driver.queue_stats(), kQueueStatsFields);
  return out;
}

}  // namespace pvback::blkback
