// The number parsers of xenstore.hpp, apart from the client: pure, used on every value a guest
// writes, and linked alone into the fuzz targets (no libxenstore).
#include <cerrno>
#include <cstdint>

#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {

std::expected<std::uint64_t, int> parse_uint(std::string_view text, std::uint64_t max) {
  if (text.empty()) return std::unexpected(EINVAL);
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::unexpected(EINVAL);
    const auto digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::unexpected(ERANGE);
    value = value * 10 + digit;
  }
  if (value > max) return std::unexpected(ERANGE);
  return value;
}

std::expected<std::int64_t, int> parse_int(std::string_view text, std::int64_t min, std::int64_t max) {
  const bool negative = !text.empty() && text.front() == '-';
  if (negative) text.remove_prefix(1);
  // The magnitude of INT64_MIN is one more than INT64_MAX.
  const std::uint64_t limit = negative ? static_cast<std::uint64_t>(INT64_MAX) + 1 : INT64_MAX;
  auto magnitude = parse_uint(text, limit);
  if (!magnitude) return std::unexpected(magnitude.error());
  std::int64_t value = 0;
  if (negative)
    value = *magnitude == limit ? INT64_MIN : -static_cast<std::int64_t>(*magnitude);
  else
    value = static_cast<std::int64_t>(*magnitude);
  if (value < min || value > max) return std::unexpected(ERANGE);
  return value;
}

}  // namespace pvback::xenbus
