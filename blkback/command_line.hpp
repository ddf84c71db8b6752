// pvback-blk's command line, parsed by pvback-blk for its one vbd and by the host daemon
// (pvback-supervisor, from its --blk-arg) for every vbd it serves itself.
#pragma once
#include <cstdio>
#include <expected>
#include <string>
#include <vector>

#include "blkback/options.hpp"

namespace pvback::blkback {

struct CommandLine {
  BackendOptions options;
  std::string backend_path;  // required by pvback-blk, not given to the host daemon
  std::string stats_path;    // empty: <run dir>/vbd-<domid>-<devid>.json
  // Non-empty: the Prometheus text exposition of the vbd, <dir>/pvback-vbd-<domid>-<devid>.prom,
  // rewritten with the statistics (node_exporter's textfile collector reads it).
  std::string prometheus_dir;
  std::string recovery_dir;  // empty: the platform's
  bool recovery = true;
  unsigned interval_ms = 1000;
  bool help = false;
};

// The arguments after the program name. The error is the message for the user (the caller prints
// the usage after it).
std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args);
void print_usage(std::FILE* out);

}  // namespace pvback::blkback
