#include "plane/options.hpp"

#include <filesystem>

#include "base/log.hpp"

namespace pvback::plane {

std::string prepare_recovery_dir(const std::string& chosen, const std::string& fallback, const std::string& name,
                                 const char* without) {
  const std::string dir = chosen.empty() ? fallback : chosen;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!ec) return dir;
  PVBACK_LOG(Warning, "%s: cannot create the recovery directory %s: %s; %s", name.c_str(), dir.c_str(),
             ec.message().c_str(), without);
  return {};
}

}  // namespace pvback::plane
