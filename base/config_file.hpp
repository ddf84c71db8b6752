// pvback's configuration file (/etc/pvback/pvback.conf): the tunables (base/tunables.hpp) of the
// host's vbds and vifs, with overrides per guest and per device.
//
//   # every vbd
//   [vbd]
//   max_persistent_grants = 2048
//   # the vbds of the guest named db1 (its xl name=), whatever its domid
//   [vbd domain=db1]
//   max_queues = 2
//   # one of its disks: by the name in the disk spec's vdev (xvdb, hda, sdc) or the devid
//   [vbd domain=db1 device=xvdb]
//   indirect_threshold = 512
//   # every vif of domain 7 (domids change at each guest start: for the runtime file)
//   [vif domid=7]
//   rx_stall_timeout_msecs = 10000
//
// A device takes, in order, the entries of the sections that match it, from the least to the most
// specific: [type], [type device=...], [type domain=/domid=...], [type domain=... device=...];
// sections equally specific apply in file order, so the later wins. The runtime layer (what
// `pvbackctl set` changed, kept in the run directory) applies after the file, in the order set.
//
// The parser knows no tunable: the caller checks every entry against its backend's table at load
// (Config::entries_of_type), so that a misspelt name fails the start, with its file and line.
#pragma once
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pvback {

struct ConfigEntry {
  std::string key;
  std::string value;
  std::string where;  // "FILE:LINE", for errors
};

struct ConfigSection {
  std::string type;                     // "vbd" or "vif"
  std::optional<std::uint32_t> domid;
  std::optional<std::string> domain;    // the guest's name
  std::optional<std::string> device;    // a vdev name (xvda) or a devid
  std::vector<ConfigEntry> entries;
  std::string where;

  // 0 [type], 1 with device= alone, 2 with a domain, 3 with both.
  unsigned specificity() const { return (domid || domain ? 2u : 0u) + (device ? 1u : 0u); }
  // "[vbd domain=db1 device=xvdb]"
  std::string header() const;
};

// What a section is matched against: read from XenStore by the one that starts the device.
struct DeviceFacts {
  std::string type;         // "vbd" or "vif"
  std::uint32_t domid = 0;  // the frontend's
  std::string domain;       // /local/domain/<domid>/name, "" if unknown
  std::uint32_t devid = 0;
  std::string vdev;         // a vbd's backend "dev" node (xvda), "" for a vif or if unknown
};

bool matches(const ConfigSection& section, const DeviceFacts& device);

struct Config {
  std::vector<ConfigSection> sections;

  // Every entry of the sections of `type`, for checking names and values at load.
  std::vector<const ConfigEntry*> entries_of_type(std::string_view type) const;
  // The entries that apply to `device`, in the order to apply them (see above); `after`'s (the
  // runtime layer) follow, in its section order.
  std::vector<const ConfigEntry*> entries_for(const DeviceFacts& device, const Config* after = nullptr) const;
  // The file's text again (comments dropped): what the runtime layer is saved as.
  std::string text() const;
};

// Parses `text` (named `source` in errors). An error names the file and line and says what is
// wrong: an unknown section type or selector, a line that is neither a section, a `key = value`
// nor a comment, an entry before any section, a bad domid.
std::expected<Config, std::string> parse_config(std::string_view text, std::string_view source);

// The file at `path` parsed; a file that does not exist is an empty configuration (every device
// keeps the defaults and the command line's values), any other error to read it is an error.
std::expected<Config, std::string> load_config(const std::string& path);

}  // namespace pvback
