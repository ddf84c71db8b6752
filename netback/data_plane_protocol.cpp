#include "netback/data_plane_protocol.hpp"

namespace pvback::netback {
namespace {

using plane::Reader;
using plane::Writer;

void put_duration(Writer& w, std::chrono::milliseconds d) { w.put(static_cast<std::int64_t>(d.count())); }
bool get_duration(Reader& r, std::chrono::milliseconds& d) {
  std::int64_t ms = 0;
  if (!r.get(ms) || ms < 0) return false;
  d = std::chrono::milliseconds(ms);
  return true;
}

void put_queue(Writer& w, const QueueConfig& q) {
  w.put(q.name);
  w.put(static_cast<std::uint32_t>(q.index));
  w.put(static_cast<std::uint32_t>(q.frontend_domid));
  w.put(static_cast<std::uint32_t>(q.tx_ring_ref));
  w.put(static_cast<std::uint32_t>(q.rx_ring_ref));
  w.put(static_cast<std::uint32_t>(q.tx_event_channel));
  w.put(static_cast<std::uint32_t>(q.rx_event_channel));
  w.put(q.split_event_channels);
  for (bool b : {q.guest.csum, q.guest.ipv6_csum, q.guest.sg, q.guest.gso_tcpv4, q.guest.gso_tcpv6}) w.put(b);
  for (bool b : {q.exit.tx_csum, q.exit.tx_tso4, q.exit.tx_tso6, q.exit.rx_gso, q.exit.poll_mode}) w.put(b);
  w.put(q.multicast_control);
  w.put(q.xdp_headroom);
  w.put(static_cast<std::uint32_t>(q.max_slots));
  w.put(static_cast<std::uint32_t>(q.fatal_slots));
  put_duration(w, q.rx_stall_timeout);
  put_duration(w, q.bind_patience);
}

bool get_queue(Reader& r, QueueConfig& q) {
  std::uint32_t index = 0, domid = 0, tx_ref = 0, rx_ref = 0, tx_port = 0, rx_port = 0, max_slots = 0, fatal_slots = 0;
  if (!r.get(q.name) || !r.get(index) || !r.get(domid) || !r.get(tx_ref) || !r.get(rx_ref) || !r.get(tx_port) ||
      !r.get(rx_port) || !r.get(q.split_event_channels))
    return false;
  for (bool* b : {&q.guest.csum, &q.guest.ipv6_csum, &q.guest.sg, &q.guest.gso_tcpv4, &q.guest.gso_tcpv6})
    if (!r.get(*b)) return false;
  for (bool* b : {&q.exit.tx_csum, &q.exit.tx_tso4, &q.exit.tx_tso6, &q.exit.rx_gso, &q.exit.poll_mode})
    if (!r.get(*b)) return false;
  if (!r.get(q.multicast_control) || !r.get(q.xdp_headroom) || !r.get(max_slots) || !r.get(fatal_slots) ||
      !get_duration(r, q.rx_stall_timeout) || !get_duration(r, q.bind_patience))
    return false;
  // Queue::create checks the limits against the ring; here only what does not fit the types.
  if (domid > 0xFFFF || index >= kRecordMaxQueues || max_slots > 1024 || fatal_slots > 1024) return false;
  q.index = index;
  q.frontend_domid = static_cast<DomId>(domid);
  q.tx_ring_ref = tx_ref;
  q.rx_ring_ref = rx_ref;
  q.tx_event_channel = tx_port;
  q.rx_event_channel = rx_port;
  q.max_slots = max_slots;
  q.fatal_slots = fatal_slots;
  return true;
}

}  // namespace

std::vector<std::byte> encode_plane_spec(const PlaneSpec& spec, PlaneMsg type) {
  Writer w;
  plane::put_header(w, kPlaneProtocol, static_cast<std::uint32_t>(type));
  const VifRingsSpec& v = spec.rings;
  w.put(v.name);
  w.put(static_cast<std::uint32_t>(v.frontend_domid));
  w.put(v.multicast_control);
  w.put(v.rate.bytes);
  w.put(v.rate.usec);
  w.put(v.resume);
  w.put(spec.tap_name);
  w.put(spec.tap_fds);
  w.put(spec.sandbox);
  w.put(spec.uid);
  w.put(spec.gid);
  w.put(spec.orphan_timeout_ms);
  w.put(v.ctrl.has_value());
  if (v.ctrl) {
    w.put(v.ctrl->name);
    w.put(static_cast<std::uint32_t>(v.ctrl->ring_ref));
    w.put(static_cast<std::uint32_t>(v.ctrl->event_channel));
    put_duration(w, v.ctrl->bind_patience);
  }
  w.put(static_cast<std::uint32_t>(v.queues.size()));
  for (const QueueConfig& q : v.queues) put_queue(w, q);
  return w.take();
}

std::expected<PlaneSpec, std::string> decode_plane_spec(std::span<const std::byte> message, PlaneMsg want) {
  Reader r(message);
  auto type = plane::get_header(r, kPlaneProtocol);
  if (!type) return std::unexpected(type.error());
  if (*type != static_cast<std::uint32_t>(want))
    return std::unexpected(want == PlaneMsg::Start ? "not a Start message" : "not an Adopted message");
  PlaneSpec spec;
  VifRingsSpec& v = spec.rings;
  std::uint32_t domid = 0, queues = 0;
  bool ctrl = false;
  if (!r.get(v.name) || !r.get(domid) || !r.get(v.multicast_control) || !r.get(v.rate.bytes) ||
      !r.get(v.rate.usec) || !r.get(v.resume) || !r.get(spec.tap_name) || !r.get(spec.tap_fds) ||
      !r.get(spec.sandbox) || !r.get(spec.uid) || !r.get(spec.gid) || !r.get(spec.orphan_timeout_ms) || !r.get(ctrl))
    return std::unexpected("truncated Start message");
  if (domid > 0xFFFF) return std::unexpected("Start message for domain " + std::to_string(domid));
  v.frontend_domid = static_cast<DomId>(domid);
  if (ctrl) {
    ControlRingConfig c;
    std::uint32_t ref = 0, port = 0;
    if (!r.get(c.name) || !r.get(ref) || !r.get(port) || !get_duration(r, c.bind_patience))
      return std::unexpected("malformed control ring");
    c.frontend_domid = v.frontend_domid;
    c.ring_ref = ref;
    c.event_channel = port;
    v.ctrl = std::move(c);
  }
  if (!r.get(queues)) return std::unexpected("truncated Start message");
  if (queues == 0 || queues > kRecordMaxQueues)
    return std::unexpected("Start message with " + std::to_string(queues) + " queues");
  if (spec.tap_fds < queues || spec.tap_fds > kMaxTapFds)
    return std::unexpected("Start message with " + std::to_string(spec.tap_fds) + " TAP fds for " +
                           std::to_string(queues) + " queues");
  v.queues.resize(queues);
  for (std::uint32_t i = 0; i < queues; ++i) {
    if (!get_queue(r, v.queues[i])) return std::unexpected("malformed queue " + std::to_string(i));
    if (v.queues[i].frontend_domid != v.frontend_domid || v.queues[i].index != i)
      return std::unexpected("queue " + std::to_string(i) + " does not belong to the vif");
  }
  if (!r.done()) return std::unexpected("trailing bytes after the Start message");
  return spec;
}

std::vector<std::byte> encode_set_rate(const RateLimit& rate) {
  Writer w;
  plane::put_header(w, kPlaneProtocol, static_cast<std::uint32_t>(PlaneMsg::SetRate));
  w.put(rate.bytes);
  w.put(rate.usec);
  return w.take();
}

std::expected<RateLimit, std::string> decode_set_rate(std::span<const std::byte> message) {
  Reader r(message);
  auto type = plane::get_header(r, kPlaneProtocol);
  if (!type) return std::unexpected(type.error());
  RateLimit rate;
  if (*type != static_cast<std::uint32_t>(PlaneMsg::SetRate) || !r.get(rate.bytes) || !r.get(rate.usec) || !r.done())
    return std::unexpected("malformed SetRate");
  return rate;
}

std::vector<std::byte> encode_set_xdp_headroom(std::uint16_t headroom) {
  Writer w;
  plane::put_header(w, kPlaneProtocol, static_cast<std::uint32_t>(PlaneMsg::SetXdpHeadroom));
  w.put(headroom);
  return w.take();
}

std::expected<std::uint16_t, std::string> decode_set_xdp_headroom(std::span<const std::byte> message) {
  Reader r(message);
  auto type = plane::get_header(r, kPlaneProtocol);
  if (!type) return std::unexpected(type.error());
  std::uint16_t headroom = 0;
  if (*type != static_cast<std::uint32_t>(PlaneMsg::SetXdpHeadroom) || !r.get(headroom) || !r.done())
    return std::unexpected("malformed SetXdpHeadroom");
  return headroom;
}

}  // namespace pvback::netback
