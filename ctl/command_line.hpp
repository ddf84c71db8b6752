// pvbackctl's command line: options anywhere among the words, one command and its device.
#pragma once
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace pvback::ctl {

struct CommandLine {
  std::string socket;   // empty: the default (<run dir>/control.sock)
  bool json = false;
  bool help = false;
  std::string command;  // list, info, stats, restart, pause, resume, set
  std::string device;   // all but list (set: also vbd, vif or all)
  std::string setting;  // set's NAME=VALUE
  std::optional<unsigned> queue;           // stats --queue N
  std::optional<double> watch_seconds;     // stats --watch [SECONDS]
  std::optional<unsigned long> count;      // stats --watch --count N: N reports, then exit
  std::optional<unsigned> timeout_seconds;  // pause --timeout S: the drain's (the daemon's default: 30)
};

inline constexpr double kDefaultWatchSeconds = 1.0;
inline constexpr unsigned kDefaultPauseTimeout = 30;

// `args` without the program's name; the error names what is wrong.
[[nodiscard]] std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args);

extern const char* const kUsageText;

}  // namespace pvback::ctl
