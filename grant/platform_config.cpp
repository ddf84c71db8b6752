#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>

#include "grant/platform.hpp"
#include "grant/sim_layout.hpp"

namespace pvback::grant {

PlatformConfig PlatformConfig::from_env() {
  PlatformConfig config;
  const char* kind = std::getenv("PVBACK_PLATFORM");
  const char* sim_dir = std::getenv("PVBACK_SIM_DIR");
  const char* domid = std::getenv("PVBACK_DOMID");
  if (sim_dir != nullptr) config.sim_dir = sim_dir;
  if (kind != nullptr && std::string(kind) == "sim") {
    config.kind = Kind::Sim;
  } else if (kind != nullptr && std::string(kind) == "xen") {
    config.kind = Kind::Xen;
  } else if (kind != nullptr) {
    throw std::invalid_argument("PVBACK_PLATFORM must be 'xen' or 'sim', not '" + std::string(kind) + "'");
  } else {
    struct stat st{};
    config.kind = (::stat("/dev/xen/gntdev", &st) != 0 && sim_dir != nullptr) ? Kind::Sim : Kind::Xen;
  }
  if (config.kind == Kind::Sim && config.sim_dir.empty())
    throw std::invalid_argument("the simulated platform needs PVBACK_SIM_DIR (the run directory of pvback-sim)");
  if (domid != nullptr) {
    char* end = nullptr;
    unsigned long v = std::strtoul(domid, &end, 10);
    if (*domid == '\0' || *end != '\0' || v >= 0x7FF0) throw std::invalid_argument("PVBACK_DOMID is not a domain id");
    config.self = static_cast<DomId>(v);
  }
  return config;
}

std::string PlatformConfig::stats_dir() const { return kind == Kind::Sim ? sim_dir + "/stats" : "/run/pvback"; }

std::string PlatformConfig::recovery_dir() const {
  return kind == Kind::Sim ? sim_dir + "/recovery" : "/run/pvback/recovery";
}

std::string PlatformConfig::xenstore_path() const {
  if (kind != Kind::Sim) return {};
  return self == 0 ? sim_layout::xenstore_socket(sim_dir) : sim_layout::guest_xenstore_socket(sim_dir, self);
}

std::string PlatformConfig::host_tag() const {
  if (kind != Kind::Sim) return {};
  char tag[32];
  std::snprintf(tag, sizeof tag, "sim%08zx-", std::hash<std::string>{}(sim_dir) & 0xffffffffu);
  return tag;
}

}  // namespace pvback::grant
