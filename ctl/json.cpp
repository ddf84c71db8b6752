#include "ctl/json.hpp"

#include <charconv>

#include "base/text_file.hpp"

namespace pvback::ctl {
namespace {

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::expected<Json, std::string> document() {
    auto value = parse(0);
    if (!value) return value;
    skip_space();
    if (at_ < text_.size()) return fail("text after the value");
    return value;
  }

 private:
  std::unexpected<std::string> fail(const std::string& why) const {
    return std::unexpected("at byte " + std::to_string(at_) + ": " + why);
  }
  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\n' || text_[at_] == '\r' || text_[at_] == '\t'))
      ++at_;
  }
  bool take(char c) {
    skip_space();
    if (at_ < text_.size() && text_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  bool take_word(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) return false;
    at_ += word.size();
    return true;
  }

  std::expected<Json, std::string> parse(unsigned depth) {
    if (depth > kMaxJsonDepth) return fail("nested too deeply");
    skip_space();
    if (at_ >= text_.size()) return fail("unexpected end");
    Json v;
    const char c = text_[at_];
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') {
      auto s = string();
      if (!s) return std::unexpected(s.error());
      v.type = Json::Type::String;
      v.text = std::move(*s);
      return v;
    }
    if (take_word("true") || take_word("false")) {
      v.type = Json::Type::Bool;
      v.boolean = text_[at_ - 1] == 'e' && text_[at_ - 2] == 'u';  // "true", not "false"
      return v;
    }
    if (take_word("null")) return v;
    return number();
  }

  std::expected<Json, std::string> number() {
    const std::size_t start = at_;
    if (at_ < text_.size() && text_[at_] == '-') ++at_;
    auto digits = [&] {
      const std::size_t from = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
      return at_ > from;
    };
    if (!digits()) return fail("expected a value");
    if (text_[start + (text_[start] == '-')] == '0' && at_ - start > 1u + (text_[start] == '-'))
      return fail("a number with a leading zero");
    if (at_ < text_.size() && text_[at_] == '.' && (++at_, !digits())) return fail("expected digits after '.'");
    if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
      ++at_;
      if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
      if (!digits()) return fail("expected an exponent");
    }
    Json v;
    v.type = Json::Type::Number;
    v.text = std::string(text_.substr(start, at_ - start));
    return v;
  }

  std::expected<std::string, std::string> string() {
    ++at_;  // the opening quote
    std::string out;
    while (at_ < text_.size()) {
      const char c = text_[at_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return fail("a control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_ >= text_.size()) break;
      const char e = text_[at_++];
      switch (e) {
        case '"': case '\\': case '/': out += e; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned code = 0;
          if (at_ + 4 > text_.size() ||
              std::from_chars(text_.data() + at_, text_.data() + at_ + 4, code, 16).ptr != text_.data() + at_ + 4)
            return fail("a bad \\u escape");
          at_ += 4;
          // The daemon escapes control characters only; other code units become UTF-8 one by
          // one (surrogate pairs are not combined: nothing the daemon writes has them).
          if (code < 0x80) {
            out += static_cast<char>(code);
          } else if (code < 0x800) {
            out += static_cast<char>(0xc0 | (code >> 6));
            out += static_cast<char>(0x80 | (code & 0x3f));
          } else {
            out += static_cast<char>(0xe0 | (code >> 12));
            out += static_cast<char>(0x80 | ((code >> 6) & 0x3f));
            out += static_cast<char>(0x80 | (code & 0x3f));
          }
          break;
        }
        default: return fail("a bad escape");
      }
    }
    return fail("an unterminated string");
  }

  std::expected<Json, std::string> array(unsigned depth) {
    ++at_;
    Json v;
    v.type = Json::Type::Array;
    if (take(']')) return v;
    do {
      auto item = parse(depth + 1);
      if (!item) return item;
      v.items.push_back(std::move(*item));
    } while (take(','));
    if (!take(']')) return fail("expected ',' or ']'");
    return v;
  }

  std::expected<Json, std::string> object(unsigned depth) {
    ++at_;
    Json v;
    v.type = Json::Type::Object;
    if (take('}')) return v;
    do {
      skip_space();
      if (at_ >= text_.size() || text_[at_] != '"') return fail("expected a member's name");
      auto key = string();
      if (!key) return std::unexpected(key.error());
      if (!take(':')) return fail("expected ':'");
      auto value = parse(depth + 1);
      if (!value) return value;
      v.members.emplace_back(std::move(*key), std::move(*value));
    } while (take(','));
    if (!take('}')) return fail("expected ',' or '}'");
    return v;
  }

  std::string_view text_;
  std::size_t at_ = 0;
};

}  // namespace

const Json* Json::find(std::string_view key) const {
  for (const auto& [name, value] : members)
    if (name == key) return &value;
  return nullptr;
}

std::optional<std::int64_t> Json::integer() const {
  if (type != Type::Number) return std::nullopt;
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string Json::scalar() const {
  switch (type) {
    case Type::String:
    case Type::Number: return text;
    case Type::Bool: return boolean ? "true" : "false";
    default: return "";
  }
}

std::expected<Json, std::string> parse_json(std::string_view text) { return Parser(text).document(); }

std::string to_json(const Json& value) {
  switch (value.type) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return value.boolean ? "true" : "false";
    case Json::Type::Number: return value.text;
    case Json::Type::String: return json_string(value.text);
    case Json::Type::Array: {
      std::string out = "[";
      for (const Json& item : value.items) out += (out.size() > 1 ? ", " : "") + to_json(item);
      return out + "]";
    }
    case Json::Type::Object: {
      std::string out = "{";
      for (const auto& [name, item] : value.members)
        out += (out.size() > 1 ? ", " : "") + json_string(name) + ": " + to_json(item);
      return out + "}";
    }
  }
  return "null";
}

}  // namespace pvback::ctl
