#include "xenbus/frontend_keys.hpp"

#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {

std::string refusal_text(const std::string& key, const std::string& what, const std::string& value) {
  return key + ": " + what + " (\"" + value.substr(0, 32) + "\")";
}

std::expected<std::uint64_t, KeyRefusal> read_number(const FrontendKeyReader& read, const std::string& key,
                                                     std::uint64_t max, std::optional<std::uint64_t> fallback) {
  auto text = read(key);
  if (!text) {
    if (text.error() == ENOENT && fallback) return *fallback;
    return std::unexpected(KeyRefusal{text.error(), key + (text.error() == ENOENT ? ": missing" : ": unreadable")});
  }
  auto v = parse_uint(*text, max);
  if (!v) return std::unexpected(KeyRefusal{EINVAL, refusal_text(key, "invalid", *text)});
  return *v;
}

bool flag_value(std::string_view text) {
  auto v = parse_uint(text, UINT32_MAX);
  return v && *v != 0;
}

bool read_flag(const FrontendKeyReader& read, const std::string& key) {
  auto text = read(key);
  return text && flag_value(*text);
}

}  // namespace pvback::xenbus
