// A frontend's XenStore directory for the fuzz targets of the frontend key readers
// (frontend_keys_fuzz, vif_frontend_keys_fuzz): lines "key=value" ('\n'-separated), and a reader
// over them in which a value "\x01" makes that key's read fail with EIO. The reader counts its
// reads and remembers the keys asked for.
#pragma once
#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "xenbus/frontend_keys.hpp"

namespace pvback::fuzz {

inline constexpr std::string_view kUnreadable = "\x01";

struct KeyDirectory {
  std::map<std::string, std::string> keys;
  unsigned reads = 0;
  std::set<std::string> asked;

  KeyDirectory(const KeyDirectory&) = delete;  // reader() refers to this one
  KeyDirectory& operator=(const KeyDirectory&) = delete;
  explicit KeyDirectory(std::string_view text) {
    for (std::size_t at = 0; at <= text.size();) {
      std::size_t end = text.find('\n', at);
      if (end == std::string_view::npos) end = text.size();
      const std::string_view line = text.substr(at, end - at);
      const std::size_t eq = line.find('=');
      if (eq != std::string_view::npos) keys[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
      at = end + 1;
    }
  }
  // Present with a value that reads.
  bool readable(const std::string& k) const {
    auto it = keys.find(k);
    return it != keys.end() && it->second != kUnreadable;
  }
  xenbus::FrontendKeyReader reader() {
    return [this](const std::string& key) -> std::expected<std::string, int> {
      ++reads;
      asked.insert(key);
      auto it = keys.find(key);
      if (it == keys.end()) return std::unexpected(ENOENT);
      if (it->second == kUnreadable) return std::unexpected(EIO);
      return it->second;
    };
  }
};

}  // namespace pvback::fuzz
