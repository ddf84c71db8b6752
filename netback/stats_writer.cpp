#include "netback/stats_writer.hpp"

#include "base/text_file.hpp"
#include "xenbus/state.hpp"

namespace pvback::netback {

std::string render_stats_json(const xenbus::BackendDevice& device, const VifDriver& driver) {
  auto flag = [](bool b) { return b ? "true" : "false"; };
  std::string out = "{\n";
  out += "  \"device\": " + json_string(device.name()) + ",\n";
  out += "  \"backend_path\": " + json_string(device.backend_path()) + ",\n";
  out += "  \"state\": " + json_string(std::string(xenbus::state_name(device.state()))) + ",\n";
  out += "  \"exit\": " + json_string(driver.exit().name()) + ",\n";
  const RateLimit rate = driver.rate();
  out += "  \"rate\": {\"bytes\": " + std::to_string(rate.bytes) + ", \"usec\": " + std::to_string(rate.usec) + "},\n";
  if (driver.connected()) {
    const auto& n = driver.negotiated();
    out += "  \"negotiated\": {\"queues\": " + std::to_string(n.queues) +
           ", \"split_event_channels\": " + flag(n.split_event_channels) + ", \"ctrl_ring\": " + flag(n.ctrl_ring) +
           ", \"multicast_control\": " + flag(n.multicast_control) +
           ", \"xdp_headroom\": " + std::to_string(n.xdp_headroom) + ", \"sg\": " + flag(n.offloads.sg) +
           ", \"gso_tcpv4\": " + flag(n.offloads.gso_tcpv4) + ", \"gso_tcpv6\": " + flag(n.offloads.gso_tcpv6) +
           ", \"csum\": " + flag(n.offloads.csum) + ", \"ipv6_csum\": " + flag(n.offloads.ipv6_csum) + "},\n";
  }
  if (driver.connected()) {
    std::string cgroup;
    for (const auto& dir : driver.data_plane_cgroup()) cgroup += (cgroup.empty() ? "" : ", ") + json_string(dir);
    out += "  \"data_plane\": {\"pid\": " + std::to_string(driver.data_plane_pid()) +
           ", \"restarts\": " + std::to_string(driver.data_plane_restarts()) + ", \"cgroup\": [" + cgroup + "]},\n";
  }
  append_json_queue_stats(out, driver.past_totals(), driver.queue_stats(), kQueueStatsFields);
  return out;
}

}  // namespace pvback::netback
