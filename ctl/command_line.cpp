#include "ctl/command_line.hpp"

#include <charconv>
#include <cmath>

namespace pvback::ctl {

const char* const kUsageText =
    "usage: pvbackctl [--socket PATH] [--json] COMMAND\n"
    "  list                                  every device: state, who serves it, pid, uptime, storage or exit\n"
    "  info DEVICE                           what the backend advertised and the frontend negotiated\n"
    "  stats DEVICE [--queue N] [--watch [SECONDS] [--count N]]\n"
    "                                        counters (per second with --watch, until interrupted)\n"
    "  restart DEVICE                        a new data plane from the binary on disk, without disruption\n"
    "  pause DEVICE [--timeout SECONDS]      stop taking the guest's requests, finish those in flight, flush\n"
    "                                        the storage (a snapshot now has all the guest was told is done)\n"
    "  resume DEVICE                         take the guest's requests again\n"
    "  set DEVICE|vbd|vif|all NAME=VALUE     change a tunable (the kernel backends' names: max_persistent_grants,\n"
    "                                        max_queues, indirect_threshold, rx_stall_timeout_msecs, ...) on one\n"
    "                                        device or every one of a kind, and for those started later; says\n"
    "                                        whether it took effect now or at the frontend's next connection\n"
    "DEVICE is as list shows it: vbd-<domid>-<devid> or vif-<domid>-<devid>.\n"
    "--socket defaults to <run dir>/control.sock (/run/pvback/control.sock).\n";

namespace {

template <class T>
std::optional<T> number(const std::string& word) {
  T v{};
  const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (word.empty() || ec != std::errc() || end != word.data() + word.size()) return std::nullopt;
  return v;
}

}  // namespace

std::expected<CommandLine, std::string> parse_command_line(const std::vector<std::string>& args) {
  CommandLine c;
  std::vector<std::string> words;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      return args[++i];
    };
    if (a == "--json") {
      c.json = true;
    } else if (a == "-h" || a == "--help") {
      c.help = true;
    } else if (a == "--socket") {
      auto v = value();
      if (!v || v->empty()) return std::unexpected("--socket needs a path");
      c.socket = *v;
    } else if (a == "--queue") {
      auto v = value();
      c.queue = v ? number<unsigned>(*v) : std::nullopt;
      if (!c.queue) return std::unexpected("--queue needs a queue's number (0, 1, ...)");
    } else if (a == "--watch") {
      c.watch_seconds = kDefaultWatchSeconds;
      // An optional interval: the next word, if it is a number.
      if (i + 1 < args.size()) {
        if (auto s = number<double>(args[i + 1])) {
          if (!(*s >= 0.1 && *s <= 3600)) return std::unexpected("--watch takes 0.1 to 3600 seconds");
          c.watch_seconds = *s;
          ++i;
        }
      }
    } else if (a == "--timeout") {
      auto v = value();
      c.timeout_seconds = v ? number<unsigned>(*v) : std::nullopt;
      if (!c.timeout_seconds || *c.timeout_seconds < 1 || *c.timeout_seconds > 3600)
        return std::unexpected("--timeout takes 1 to 3600 seconds");
    } else if (a == "--count") {
      auto v = value();
      c.count = v ? number<unsigned long>(*v) : std::nullopt;
      if (!c.count || *c.count == 0) return std::unexpected("--count needs a number of reports (1 or more)");
    } else if (a.starts_with("-")) {
      return std::unexpected("unknown option " + a);
    } else {
      words.push_back(a);
    }
  }
  if (c.help) return c;
  if (words.empty()) return std::unexpected("no command");
  c.command = words[0];
  const bool per_device = c.command == "info" || c.command == "stats" || c.command == "restart" ||
                          c.command == "pause" || c.command == "resume" || c.command == "set";
  if (c.command != "list" && !per_device) return std::unexpected("unknown command '" + c.command + "'");
  if (per_device) {
    if (words.size() < 2) return std::unexpected(c.command + " needs a device (e.g. vbd-5-768; pvbackctl list shows them)");
    c.device = words[1];
  }
  if (c.command == "set") {
    if (words.size() != 3 || words[2].find('=') == std::string::npos || words[2].front() == '=')
      return std::unexpected("set takes a device (or vbd, vif, all) and NAME=VALUE, e.g. set vbd-5-768 "
                             "max_persistent_grants=512");
    c.setting = words[2];
  } else if (words.size() > (per_device ? 2u : 1u)) {
    return std::unexpected("too many arguments for " + c.command);
  }
  if (c.command != "stats" && (c.queue || c.watch_seconds || c.count))
    return std::unexpected("--queue, --watch and --count are options of stats");
  if (c.count && !c.watch_seconds) return std::unexpected("--count goes with --watch");
  if (c.command != "pause" && c.timeout_seconds) return std::unexpected("--timeout is an option of pause");
  return c;
}

}  // namespace pvback::ctl
