// pvback-net's command line, parsed by pvback-net for its one vif and by the host daemon
// (pvback-supervisor, from its --net-arg) for every vif it serves itself.
#pragma once
#include <cstdio>
#include <expected>
#include <string>
#include <vector>

#include "netback/options.hpp"

namespace pvback::netback {

struct CommandLine {
  VifOptions options;
  std::string backend_path;  // required by pvback-net, not given to the host daemon
  std::string stats_path;    // empty: <run dir>/vif-<domid>-<handle>.json
  // Non-empty: the Prometheus text exposition of the vif, <dir>/pvback-vif-<domid>-<handle>.prom,
  // rewritten with the statistics (node_exporter's textfile collector reads it).
  std::string prometheus_dir;
  std::string recovery_dir;  // empty: the platform's
  bool recovery = true;
  unsigned interval_ms = 1000;
  std::string exit_kind = "tap";  // tap or dpdk
  std::string tap_name;           // empty: vif<domid>.<handle>
  bool tap_up = false;
  std::string dpdk_devargs;
  std::string dpdk_eal_args;  // one word of several EAL arguments
  bool dpdk_tso = false;
  bool dpdk_soft_gso = true;
  bool help = false;
};

// The arguments after the program name. The error is the message for the user (the caller prints
// the usage after it).
std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args);
void print_usage(std::FILE* out);

}  // namespace pvback::netback
