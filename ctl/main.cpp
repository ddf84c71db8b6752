// pvbackctl: the operator's tool for the host daemon (pvback-supervisor) through its control
// socket. See man/pvbackctl.8.pod.
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ctl/client.hpp"
#include "ctl/command_line.hpp"
#include "ctl/format.hpp"
#include "grant/platform.hpp"

namespace {

using namespace pvback::ctl;
using namespace std::chrono_literals;

// A restart waits for the old data plane to finish what is in flight and the new one to bind; a
// pause for its drain (the daemon gives up at --timeout and answers; its timer may take a second
// more to notice).
constexpr auto kRestartTimeout = 60s;
constexpr auto kPauseMargin = 15s;
constexpr auto kTimeout = 15s;

int report(const Error& e) {
  std::fprintf(stderr, "pvbackctl: %s\n", e.message.c_str());
  return e.status;
}

// Where the daemon listens unless --socket says: its run directory's control.sock, as
// pvback-supervisor chooses it (the simulated host's with PVBACK_PLATFORM=sim).
std::expected<std::string, Error> default_socket() {
  try {
    return pvback::grant::PlatformConfig::from_env().stats_dir() + "/control.sock";
  } catch (const std::exception& e) {
    return std::unexpected(Error{kUsage, e.what()});
  }
}

void print(const std::string& text) { std::fputs(text.c_str(), stdout); }

int watch(Client& client, const CommandLine& c) {
  std::optional<Json> before;
  auto last = std::chrono::steady_clock::now();
  const auto interval = std::chrono::duration<double>(*c.watch_seconds);
  for (unsigned long n = 0; !c.count || n < *c.count; ++n) {
    if (n > 0) std::this_thread::sleep_until(last + std::chrono::duration_cast<std::chrono::steady_clock::duration>(interval));
    auto answer = client.request("stats " + c.device, kTimeout);
    if (!answer) return report(answer.error());
    const auto now = std::chrono::steady_clock::now();
    const Json* stats = answer->find("stats");
    auto counters = select_counters(stats ? *stats : Json{}, c.queue);
    if (!counters) return report({kRefused, c.device + ": " + counters.error()});
    if (c.json) {
      print(to_json(*counters) + "\n");
    } else {
      const double seconds = std::chrono::duration<double>(now - last).count();
      const std::time_t wall = std::time(nullptr);
      char stamp[32];
      std::strftime(stamp, sizeof stamp, "%H:%M:%S", std::localtime(&wall));
      print(std::string(n > 0 ? "\n" : "") + stamp + "  " + c.device +
            (c.queue ? " queue " + std::to_string(*c.queue) : std::string(" total")) + "\n" +
            format_rates(*counters, before ? &*before : nullptr, seconds));
    }
    std::fflush(stdout);
    before = std::move(*counters);
    last = now;
  }
  return kOk;
}

int run(const CommandLine& c) {
  auto path = c.socket.empty() ? default_socket() : std::expected<std::string, Error>(c.socket);
  if (!path) return report(path.error());
  auto client = Client::connect(*path);
  if (!client) return report(client.error());
  if (c.command == "stats" && c.watch_seconds) return watch(*client, c);
  std::string request = c.device.empty() ? c.command : c.command + " " + c.device;
  const unsigned drain = c.timeout_seconds.value_or(kDefaultPauseTimeout);
  // (Not request += " " + ...: GCC 12's -Wrestrict misfires on it.)
  if (c.command == "pause" && c.timeout_seconds) request.append(1, ' ').append(std::to_string(drain));
  if (c.command == "set") request.append(1, ' ').append(c.setting);
  const auto timeout = c.command == "restart" ? std::chrono::milliseconds(kRestartTimeout)
                       : c.command == "pause" ? std::chrono::milliseconds(std::chrono::seconds(drain) + kPauseMargin)
                                              : std::chrono::milliseconds(kTimeout);
  std::string raw;
  auto answer = client->request(request, timeout, &raw);
  if (!answer) {
    Error e = answer.error();
    if (e.message.starts_with("no such device")) e.message += " (pvbackctl list shows the devices)";
    return report(e);
  }
  if (c.command == "stats") {
    const Json* stats = answer->find("stats");
    if (stats == nullptr) return report({kBadAnswer, "malformed answer from pvback-supervisor: no \"stats\""});
    if (c.json && c.queue) {
      auto counters = select_counters(*stats, c.queue);
      if (!counters) return report({kRefused, c.device + ": " + counters.error()});
      print(to_json(*counters) + "\n");
      return kOk;
    }
    if (!c.json) {
      auto text = format_stats(*stats, c.queue);
      if (!text) return report({kRefused, c.device + ": " + text.error()});
      print(*text);
      return kOk;
    }
  }
  if (c.json) {
    print(raw.ends_with('\n') ? raw : raw + "\n");
  } else if (c.command == "list") {
    print(format_list(*answer));
  } else if (c.command == "info") {
    print(format_info(*answer));
  } else if (c.command == "set") {
    print(format_set(*answer));
    // A device of the kind that refused (its line says why): not all done.
    if (const Json* set = answer->find("set"))
      if (const Json* devices = set->find("devices"))
        for (const Json& d : devices->items)
          if (d.find("error") != nullptr) return kRefused;
  } else {
    print(format_operation(c.command, c.device, *answer));
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  auto c = parse_command_line(std::vector<std::string>(argv + 1, argv + argc));
  if (!c) {
    std::fprintf(stderr, "pvbackctl: %s\n%s", c.error().c_str(), kUsageText);
    return kUsage;
  }
  if (c->help) {
    std::fputs(kUsageText, stdout);
    return kOk;
  }
  return run(*c);
}
