#include "supervisor/tuning.hpp"

#include <cstring>

#include "base/log.hpp"
#include "base/text_file.hpp"
#include "blkback/tunables.hpp"
#include "netback/tunables.hpp"

namespace pvback::supervisor {
namespace {

// Each entry of `config` checked against its type's table (on a scratch copy of the options).
std::expected<void, std::string> check_all(const Config& config) {
  for (std::string_view type : {"vbd", "vif"})
    for (const ConfigEntry* e : config.entries_of_type(type))
      if (auto ok = Tuning::check(type, e->key, e->value); !ok) return std::unexpected(e->where + ": " + ok.error());
  return {};
}

std::expected<Config, std::string> load_checked(const std::string& path) {
  if (path.empty()) return Config{};
  auto config = load_config(path);
  if (!config) return config;
  if (auto ok = check_all(*config); !ok) return std::unexpected(ok.error());
  return config;
}

}  // namespace

std::expected<Tuning, std::string> Tuning::load(std::string file, std::string runtime) {
  Tuning t;
  t.file_ = std::move(file);
  t.runtime_path_ = std::move(runtime);
  auto config = load_checked(t.file_);
  if (!config) return std::unexpected(config.error());
  t.config_ = std::move(*config);
  if (auto kept = load_checked(t.runtime_path_)) {
    t.runtime_ = std::move(*kept);
    if (!t.runtime_.sections.empty())
      PVBACK_LOG(Notice, "the tunables changed at run time are kept (%zu change(s), %s)", t.runtime_.sections.size(),
                 t.runtime_path_.c_str());
  } else {
    // Written only by this program; a damaged one must not keep the host daemon from starting.
    PVBACK_LOG(Warning, "the tunables changed at run time are lost: %s", kept.error().c_str());
  }
  return t;
}

std::expected<void, std::string> Tuning::reload() {
  auto config = load_checked(file_);
  if (!config) return std::unexpected(config.error());
  config_ = std::move(*config);
  return {};
}

DeviceFacts Tuning::facts(xenbus::XenStore& xs, DeviceType type, const std::string& backend_path) {
  DeviceFacts f;
  f.type = std::string(type_name(type));
  // backend_path ends in <domid>/<devid>, both checked when the device was found.
  const auto devid_at = backend_path.rfind('/');
  const auto domid_at = backend_path.rfind('/', devid_at - 1);
  f.devid = parse_devid_entry(std::string_view(backend_path).substr(devid_at + 1)).value_or(0);
  f.domid = parse_domid_entry(std::string_view(backend_path).substr(domid_at + 1, devid_at - domid_at - 1)).value_or(0);
  // Values a guest could not have written: the domain's name is the toolstack's (the guest can
  // read it, not write it), a backend's nodes are Dom0's.
  f.domain = xs.read("/local/domain/" + std::to_string(f.domid) + "/name").value_or("");
  if (type == DeviceType::Vbd) f.vdev = xs.read(backend_path + "/dev").value_or("");
  return f;
}

std::vector<const ConfigEntry*> Tuning::entries(const DeviceFacts& device) const {
  return config_.entries_for(device, &runtime_);
}

void Tuning::apply(const DeviceFacts& device, blkback::BackendOptions& options) const {
  for (const ConfigEntry* e : entries(device))
    if (auto set = set_tunable(blkback::vbd_tunables(), "vbd", options, e->key, e->value); !set)
      PVBACK_LOG(Warning, "%s: %s", e->where.c_str(), set.error().c_str());
}

void Tuning::apply(const DeviceFacts& device, netback::VifOptions& options) const {
  for (const ConfigEntry* e : entries(device))
    if (auto set = set_tunable(netback::vif_tunables(), "vif", options, e->key, e->value); !set)
      PVBACK_LOG(Warning, "%s: %s", e->where.c_str(), set.error().c_str());
}

std::vector<std::string> Tuning::set_arguments(const DeviceFacts& device) const {
  std::vector<std::string> out;
  for (const ConfigEntry* e : entries(device)) {
    out.push_back("--set");
    out.push_back(e->key + "=" + e->value);
  }
  return out;
}

std::expected<void, std::string> Tuning::check(std::string_view type, std::string_view key, std::string_view value) {
  if (type == "vbd") {
    blkback::BackendOptions scratch;
    if (auto set = set_tunable(blkback::vbd_tunables(), "vbd", scratch, key, value); !set)
      return std::unexpected(set.error());
  } else {
    netback::VifOptions scratch;
    if (auto set = set_tunable(netback::vif_tunables(), "vif", scratch, key, value); !set)
      return std::unexpected(set.error());
  }
  return {};
}

std::expected<void, std::string> Tuning::record(ConfigSection section, std::string key, std::string value) {
  section.entries = {{std::move(key), std::move(value), runtime_path_.empty() ? "pvbackctl set" : runtime_path_}};
  runtime_.sections.push_back(std::move(section));
  if (runtime_path_.empty()) return {};
  if (const int e = write_file_atomically(runtime_path_, "# pvbackctl set since the host started (pvback-supervisor "
                                                         "keeps it; do not edit)\n" + runtime_.text()))
    return std::unexpected("cannot keep it in " + runtime_path_ + ": " + std::strerror(e));
  return {};
}

}  // namespace pvback::supervisor
