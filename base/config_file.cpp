#include "base/config_file.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace pvback {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

bool is_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::ranges::all_of(s, [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
         });
}

// "7" as a guest domid (below DOMID_FIRST_RESERVED, 0x7FF0), canonical decimal.
std::optional<std::uint32_t> parse_domid(std::string_view s) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v >= 0x7FF0 || (s.size() > 1 && s[0] == '0'))
    return std::nullopt;
  return v;
}

std::expected<ConfigSection, std::string> parse_header(std::string_view inside, const std::string& where) {
  ConfigSection section;
  section.where = where;
  std::vector<std::string_view> words;
  while (!(inside = trim(inside)).empty()) {
    const auto space = inside.find_first_of(" \t");
    words.push_back(inside.substr(0, space));
    inside = space == std::string_view::npos ? std::string_view() : inside.substr(space);
  }
  if (words.empty() || (words[0] != "vbd" && words[0] != "vif"))
    return std::unexpected(where + ": a section is [vbd] or [vif], with domain=NAME, domid=N or device=DEV after it");
  section.type = words[0];
  for (std::size_t i = 1; i < words.size(); ++i) {
    const auto eq = words[i].find('=');
    const std::string_view key = words[i].substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : words[i].substr(eq + 1);
    auto twice = [&] { return std::unexpected(where + ": " + std::string(key) + "= given twice"); };
    if (eq == std::string_view::npos || !is_name(value))
      return std::unexpected(where + ": '" + std::string(words[i]) +
                             "' is not a selector (domain=NAME, domid=N or device=DEV)");
    if (key == "domain") {
      if (section.domain) return twice();
      section.domain = std::string(value);
    } else if (key == "domid") {
      if (section.domid) return twice();
      section.domid = parse_domid(value);
      if (!section.domid) return std::unexpected(where + ": domid=" + std::string(value) + " is not a guest's domid");
    } else if (key == "device") {
      if (section.device) return twice();
      section.device = std::string(value);
    } else {
      return std::unexpected(where + ": unknown selector '" + std::string(key) + "' (domain, domid or device)");
    }
  }
  return section;
}

}  // namespace

std::string ConfigSection::header() const {
  std::string out = "[" + type;
  if (domid) out += " domid=" + std::to_string(*domid);
  if (domain) out += " domain=" + *domain;
  if (device) out += " device=" + *device;
  return out + "]";
}

bool matches(const ConfigSection& section, const DeviceFacts& device) {
  if (section.type != device.type) return false;
  if (section.domid && *section.domid != device.domid) return false;
  if (section.domain && *section.domain != device.domain) return false;
  if (section.device && *section.device != std::to_string(device.devid) &&
      (device.vdev.empty() || *section.device != device.vdev))
    return false;
  return true;
}

std::vector<const ConfigEntry*> Config::entries_of_type(std::string_view type) const {
  std::vector<const ConfigEntry*> out;
  for (const auto& s : sections)
    if (s.type == type)
      for (const auto& e : s.entries) out.push_back(&e);
  return out;
}

std::vector<const ConfigEntry*> Config::entries_for(const DeviceFacts& device, const Config* after) const {
  std::vector<const ConfigEntry*> out;
  for (unsigned level = 0; level <= 3; ++level)
    for (const auto& s : sections)
      if (s.specificity() == level && matches(s, device))
        for (const auto& e : s.entries) out.push_back(&e);
  if (after)
    for (const auto& s : after->sections)
      if (matches(s, device))
        for (const auto& e : s.entries) out.push_back(&e);
  return out;
}

std::string Config::text() const {
  std::string out;
  for (const auto& s : sections) {
    out += s.header() + "\n";
    for (const auto& e : s.entries) out += e.key + " = " + e.value + "\n";
  }
  return out;
}

std::expected<Config, std::string> parse_config(std::string_view text, std::string_view source) {
  Config config;
  unsigned line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++line_no;
    const std::string where = std::string(source) + ":" + std::to_string(line_no);
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      // A comment may follow the header.
      const auto close = line.find(']');
      const std::string_view after = close == std::string_view::npos ? "x" : trim(line.substr(close + 1));
      if (!after.empty() && after.front() != '#') return std::unexpected(where + ": a section header ends with ']'");
      auto section = parse_header(line.substr(1, close - 1), where);
      if (!section) return std::unexpected(section.error());
      config.sections.push_back(std::move(*section));
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string_view::npos)
      return std::unexpected(where + ": expected 'name = value', a [section] or a # comment");
    const std::string_view key = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    for (std::string_view comment : {" #", "\t#"})
      if (const auto hash = value.find(comment); hash != std::string_view::npos) value = trim(value.substr(0, hash));
    if (!is_name(key)) return std::unexpected(where + ": '" + std::string(key.substr(0, 64)) + "' is not a name");
    if (value.empty()) return std::unexpected(where + ": " + std::string(key) + " has no value");
    if (config.sections.empty())
      return std::unexpected(where + ": " + std::string(key) + " comes before any [vbd] or [vif] section");
    config.sections.back().entries.push_back({std::string(key), std::string(value.substr(0, 256)), where});
  }
  return config;
}

std::expected<Config, std::string> load_config(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return std::unexpected(path + ": is a directory");
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return Config{};
    return std::unexpected(path + ": " + std::strerror(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) return std::unexpected(path + ": cannot read it");
  return parse_config(text.str(), path);
}

}  // namespace pvback
