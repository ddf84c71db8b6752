// The JSON the host daemon's control socket answers with, parsed for pvbackctl: a small reader
// (no dependency) of RFC 8259 text and a writer for what pvbackctl prints with --json. Numbers
// keep their literal, so that 64-bit counters print exactly.
#pragma once
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pvback::ctl {

struct Json {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  std::string text;  // a String's value, a Number's literal
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;  // in the document's order

  // The member `key` of an object (nullptr if there is none or this is no object).
  const Json* find(std::string_view key) const;
  bool is(Type t) const { return type == t; }
  // A Number that is a whole value in range; nullopt otherwise.
  std::optional<std::int64_t> integer() const;
  // A String's value or a Number's literal, "true"/"false", "" for the rest.
  std::string scalar() const;
};

// At most this many arrays and objects inside one another.
inline constexpr unsigned kMaxJsonDepth = 64;

// The whole of `text` as one value (white space around it allowed); otherwise what is wrong and
// where ("at byte 17: expected ':'").
[[nodiscard]] std::expected<Json, std::string> parse_json(std::string_view text);
// `value` as compact JSON text.
std::string to_json(const Json& value);

}  // namespace pvback::ctl
