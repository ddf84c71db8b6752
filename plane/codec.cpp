#include "plane/codec.hpp"

#include <algorithm>

namespace pvback::plane {

void put_header(Writer& w, const Protocol& protocol, std::uint32_t type) {
  w.put(protocol.magic);
  w.put(protocol.version);
  w.put(type);
}

std::expected<std::uint32_t, std::string> get_header(Reader& r, const Protocol& protocol) {
  std::uint32_t magic = 0, version = 0, type = 0;
  if (!r.get(magic) || !r.get(version) || !r.get(type)) return std::unexpected("message too short");
  if (magic != protocol.magic) return std::unexpected("not a data-plane message");
  if (version != protocol.version)
    return std::unexpected("data-plane protocol version " + std::to_string(version) + ", this build speaks " +
                           std::to_string(protocol.version));
  return type;
}

std::expected<std::uint32_t, std::string> message_type(const Protocol& protocol, std::span<const std::byte> message) {
  Reader r(message);
  return get_header(r, protocol);
}

std::vector<std::byte> encode_notice(const Protocol& protocol, const Notice& notice) {
  Writer w;
  put_header(w, protocol, notice.type);
  w.put(notice.error);
  w.put(notice.reason);
  return w.take();
}

std::expected<Notice, std::string> decode_notice(const Protocol& protocol, std::span<const std::byte> message) {
  Reader r(message);
  auto type = get_header(r, protocol);
  if (!type) return std::unexpected(type.error());
  if (std::find(protocol.notices.begin(), protocol.notices.end(), *type) == protocol.notices.end())
    return std::unexpected("not a notice");
  Notice n;
  n.type = *type;
  if (!r.get(n.error) || !r.get(n.reason) || !r.done()) return std::unexpected("malformed notice");
  return n;
}

}  // namespace pvback::plane
