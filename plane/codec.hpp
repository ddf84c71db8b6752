// The framing every control-part <-> data-plane protocol shares (pvback-blk's and pvback-net's):
// one message per SOCK_SEQPACKET packet, a header (the protocol's magic, its version, the message
// type) and fields in host byte order (both ends run on the same host). Encoding and decoding are
// pure; a decode of anything malformed fails rather than guess. Each backend's protocol
// (blkback/data_plane_protocol.hpp, netback/data_plane_protocol.hpp) builds its messages from
// these pieces and keeps its own magic and version, so one backend's data plane never takes the
// other's messages, and a data plane of another version is recognised as such and not adopted.
#pragma once
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace pvback::plane {

// Message types common to every protocol; each protocol adds its own between these.
inline constexpr std::uint32_t kStart = 1;    // control -> data plane: what to serve, with fds
inline constexpr std::uint32_t kStop = 2;     // finish what is in flight, unmap, exit 0
inline constexpr std::uint32_t kAdopt = 4;    // a successor of the control part, on the listener
inline constexpr std::uint32_t kReady = 100;  // set up and confined (error 0), or why not
inline constexpr std::uint32_t kFatal = 101;  // the frontend broke the protocol: disconnect it
inline constexpr std::uint32_t kAdopted = 103;  // the answer to Adopt: what it serves, with fds

struct Protocol {
  std::uint32_t magic;
  std::uint32_t version;
  std::span<const std::uint32_t> notices;  // the types that are Notices (below)
};

class Writer {
 public:
  template <class T>
    requires std::is_integral_v<T>
  void put(T v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void put(bool b) { put(static_cast<std::uint8_t>(b ? 1 : 0)); }
  void put(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  std::vector<std::byte> take() { return std::move(out_); }

 private:
  std::vector<std::byte> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <class T>
    requires std::is_integral_v<T>
  [[nodiscard]] bool get(T& v) {
    if (in_.size() < sizeof v) return false;
    std::memcpy(&v, in_.data(), sizeof v);
    in_ = in_.subspan(sizeof v);
    return true;
  }
  // A boolean is one byte, 0 or 1; anything else is malformed.
  [[nodiscard]] bool get(bool& b) {
    std::uint8_t v = 0;
    if (!get(v) || v > 1) return false;
    b = v == 1;
    return true;
  }
  [[nodiscard]] bool get(std::string& s) {
    std::uint32_t n = 0;
    if (!get(n) || n > in_.size()) return false;
    s.assign(reinterpret_cast<const char*>(in_.data()), n);
    in_ = in_.subspan(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::span<const std::byte> in_;
};

void put_header(Writer& w, const Protocol& protocol, std::uint32_t type);
// The message type, or why the header is not one of `protocol`'s ("data-plane protocol version 1,
// this build speaks 2").
std::expected<std::uint32_t, std::string> get_header(Reader& r, const Protocol& protocol);
// The type of any message of `protocol`, or why not.
std::expected<std::uint32_t, std::string> message_type(const Protocol& protocol, std::span<const std::byte> message);

// The short messages: a type, an errno value and a reason.
struct Notice {
  std::uint32_t type = kReady;
  std::int32_t error = 0;
  std::string reason;
};
std::vector<std::byte> encode_notice(const Protocol& protocol, const Notice& notice);
// Refuses a type that is not one of `protocol`'s notices.
std::expected<Notice, std::string> decode_notice(const Protocol& protocol, std::span<const std::byte> message);

}  // namespace pvback::plane
