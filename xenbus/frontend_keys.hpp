// What the backends share to read a frontend's XenStore directory as pure functions of its values
// (blkback/frontend_keys.hpp, netback/frontend_keys.hpp): the reader of one key, a refusal that
// names the key and its value, and the two ways a key's number is taken. Pure and linked alone
// into the fuzz targets (no libxenstore): frontend_keys.cpp and parse_number.cpp.
#pragma once
#include <cerrno>
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace pvback::xenbus {

// Reads one key of the frontend's directory: its value, or an errno value (ENOENT: absent).
using FrontendKeyReader = std::function<std::expected<std::string, int>(const std::string& key)>;

struct KeyRefusal {
  int error = EINVAL;  // ENOENT for a missing key, EINVAL for a bad value, else the read's
  std::string why;     // for the log: which key and what is wrong with its value
};

// A refusal's text: `key: what ("value")`, the value cut at 32 characters.
[[nodiscard]] std::string refusal_text(const std::string& key, const std::string& what, const std::string& value);

// An unsigned value no larger than `max`; `fallback` when the key is absent and optional.
// A missing key is refused with ENOENT, an unreadable one with the read's error, a malformed or
// too large value with EINVAL.
[[nodiscard]] std::expected<std::uint64_t, KeyRefusal> read_number(const FrontendKeyReader& read,
                                                                   const std::string& key, std::uint64_t max,
                                                                   std::optional<std::uint64_t> fallback);

// A frontend boolean as Linux reads one (xenbus_read_unsigned(dir, key, 0) != 0): a number up to
// UINT32_MAX other than 0. Missing, unreadable or malformed is false.
[[nodiscard]] bool flag_value(std::string_view text);
[[nodiscard]] bool read_flag(const FrontendKeyReader& read, const std::string& key);

}  // namespace pvback::xenbus
