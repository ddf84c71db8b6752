// The host daemon's tunables: the configuration file (base/config_file.hpp: host defaults, per
// guest, per device) read at start and on SIGHUP, and the runtime layer, what `pvbackctl set`
// changed, kept in the run directory so that a restarted host daemon (or a data plane started
// again) keeps it until the host reboots, as a module parameter written in sysfs would be.
//
// A device takes its values when its backend starts: those served here get them in their options,
// a backend process as `--set NAME=VALUE` arguments after the --blk-arg/--net-arg ones.
#pragma once
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "base/config_file.hpp"
#include "blkback/options.hpp"
#include "netback/options.hpp"
#include "supervisor/options.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::supervisor {

class Tuning {
 public:
  Tuning() = default;
  // Reads `file` (none if empty; a file that does not exist is an empty one) and `runtime` (empty:
  // none kept). Every entry is checked against its device type's tunables: the error names the
  // file, the line and the mistake. A runtime layer that no longer parses is set aside (logged).
  static std::expected<Tuning, std::string> load(std::string file, std::string runtime);
  // Reads the file again (SIGHUP): devices started from now on take it; the running ones keep
  // their values (pvbackctl set changes those). On error the previous file's values stay.
  [[nodiscard]] std::expected<void, std::string> reload();

  const std::string& file() const { return file_; }

  // What a device's section is matched against, read from XenStore: the guest's name and a
  // vbd's "dev" (its vdev).
  static DeviceFacts facts(xenbus::XenStore& xs, DeviceType type, const std::string& backend_path);
  // The device's options with its entries applied (checked at load, so none fails).
  void apply(const DeviceFacts& device, blkback::BackendOptions& options) const;
  void apply(const DeviceFacts& device, netback::VifOptions& options) const;
  // The same as a backend process's arguments: "--set", "NAME=VALUE", ...
  std::vector<std::string> set_arguments(const DeviceFacts& device) const;

  // Whether `type` has a tunable `key` that `value` suits: the error otherwise.
  [[nodiscard]] static std::expected<void, std::string> check(std::string_view type, std::string_view key,
                                                             std::string_view value);
  // Keeps an operator's change in the runtime layer: `section` (only its selectors matter) gets
  // `key = value` after every earlier change. The error if it could not be saved (it holds until
  // the host daemon restarts, then).
  [[nodiscard]] std::expected<void, std::string> record(ConfigSection section, std::string key, std::string value);

 private:
  std::vector<const ConfigEntry*> entries(const DeviceFacts& device) const;

  std::string file_;
  std::string runtime_path_;
  Config config_;
  Config runtime_;
};

}  // namespace pvback::supervisor
