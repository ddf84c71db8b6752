#include "base/tunables.hpp"

#include <charconv>

namespace pvback {

std::string_view describe(TakesEffect when) {
  switch (when) {
    case TakesEffect::Now: return "now";
    case TakesEffect::NextConnect: return "at the frontend's next connection";
    case TakesEffect::Never: return "never";
  }
  return "never";
}

std::string_view keyword(TakesEffect when) {
  switch (when) {
    case TakesEffect::Now: return "now";
    case TakesEffect::NextConnect: return "next-connect";
    case TakesEffect::Never: return "never";
  }
  return "never";
}

bool same_tunable_name(std::string_view key, std::string_view name) {
  if (key.size() != name.size()) return false;
  for (std::size_t i = 0; i < key.size(); ++i) {
    const char a = key[i] == '-' ? '_' : key[i];
    if (a != name[i]) return false;
  }
  return true;
}

std::expected<std::uint64_t, std::string> parse_tunable_value(std::string_view name, std::string_view text,
                                                              bool boolean, std::uint64_t min, std::uint64_t max) {
  if (boolean) {
    for (std::string_view yes : {"1", "y", "yes", "true", "on", "Y"})
      if (text == yes) return 1;
    for (std::string_view no : {"0", "n", "no", "false", "off", "N"})
      if (text == no) return 0;
    return std::unexpected(std::string(name) + " is 0 or 1 (or yes/no, on/off), not '" + std::string(text) + "'");
  }
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || v < min || v > max)
    return std::unexpected(std::string(name) + " is a number from " + std::to_string(min) + " to " +
                           std::to_string(max) + ", not '" + std::string(text.substr(0, 32)) + "'");
  return v;
}

std::string tunable_names(std::span<const std::string_view> names) {
  std::string out;
  for (std::string_view n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

}  // namespace pvback
