#include "netback/frontend_keys.hpp"

#include <cerrno>

namespace pvback::netback {
namespace {

using xenbus::FrontendKeyReader;
using xenbus::KeyRefusal;
using Refused = std::unexpected<KeyRefusal>;

// netback refuses a value that is there but cannot be read or parsed with EINVAL, whatever the
// read's error was (ENOENT stays: the key is missing).
KeyRefusal as_invalid(KeyRefusal r) {
  if (r.error != ENOENT) r.error = EINVAL;
  return r;
}

// A grant reference or event channel the frontend must write.
std::expected<std::uint32_t, KeyRefusal> required(const FrontendKeyReader& read, const std::string& key) {
  auto v = xenbus::read_number(read, key, UINT32_MAX, std::nullopt);
  if (!v) return Refused(as_invalid(v.error()));
  return static_cast<std::uint32_t>(*v);
}

// A flag the frontend must set; `error` and `why` when it does not.
std::optional<KeyRefusal> mandatory_flag(const FrontendKeyReader& read, const std::string& key, int error,
                                         const std::string& why) {
  auto text = read(key);
  if (text && xenbus::flag_value(*text)) return std::nullopt;
  if (text) return KeyRefusal{error, xenbus::refusal_text(key, "not set, " + why, *text)};
  return KeyRefusal{error, key + (text.error() == ENOENT ? ": missing, " : ": unreadable, ") + why};
}

std::expected<VifQueueKeys, KeyRefusal> read_queue(const FrontendKeyReader& read, const std::string& dir,
                                                   bool split_offered) {
  VifQueueKeys q;
  auto tx = required(read, dir + "tx-ring-ref");
  if (!tx) return Refused(tx.error());
  auto rx = required(read, dir + "rx-ring-ref");
  if (!rx) return Refused(rx.error());
  q.tx_ring_ref = *tx;
  q.rx_ring_ref = *rx;
  // Split event channels when we offered them and the frontend wrote event-channel-tx; else one.
  q.split_event_channels = split_offered && read(dir + "event-channel-tx").has_value();
  if (q.split_event_channels) {
    auto etx = required(read, dir + "event-channel-tx");
    if (!etx) return Refused(etx.error());
    auto erx = required(read, dir + "event-channel-rx");
    if (!erx) return Refused(erx.error());
    q.tx_event_channel = *etx;
    q.rx_event_channel = *erx;
  } else {
    auto e = required(read, dir + "event-channel");
    if (!e) return Refused(e.error());
    q.tx_event_channel = q.rx_event_channel = *e;
  }
  return q;
}

}  // namespace

std::expected<std::uint16_t, KeyRefusal> read_xdp_headroom(const FrontendKeyReader& read, bool offered) {
  // Linux netfront writes only "xdp-headroom" (256 with an XDP program, 0 without).
  if (!offered) return 0;
  auto v = xenbus::read_number(read, "xdp-headroom", UINT32_MAX, 0);
  if (!v) return Refused(as_invalid(v.error()));
  if (*v > kMaxXdpHeadroom)
    return Refused(KeyRefusal{EINVAL, "xdp-headroom: " + std::to_string(*v) + " (0.." +
                                          std::to_string(kMaxXdpHeadroom) + " allowed)"});
  return static_cast<std::uint16_t>(*v);
}

std::expected<VifFrontendRequest, KeyRefusal> read_vif_frontend(const FrontendKeyReader& read,
                                                                const VifFrontendLimits& limits) {
  VifFrontendRequest r;
  // Linux netback refuses frontends that cannot take copied RX packets or RX notifications.
  if (auto no = mandatory_flag(read, "request-rx-copy", EOPNOTSUPP, "page flipping is not supported"))
    return Refused(*no);
  if (auto no = mandatory_flag(read, "feature-rx-notify", EINVAL, "which is mandatory")) return Refused(*no);

  auto queues = xenbus::read_number(read, "multi-queue-num-queues", UINT32_MAX, 1);
  if (!queues) return Refused(as_invalid(queues.error()));
  if (*queues == 0 || *queues > limits.max_queues)
    return Refused(KeyRefusal{EINVAL, "multi-queue-num-queues: " + std::to_string(*queues) + " queues (1.." +
                                          std::to_string(limits.max_queues) + " allowed)"});
  r.queues = static_cast<unsigned>(*queues);

  GuestOffloads& o = r.offloads;
  o.csum = !xenbus::read_flag(read, "feature-no-csum-offload");
  o.ipv6_csum = xenbus::read_flag(read, "feature-ipv6-csum-offload");
  o.sg = xenbus::read_flag(read, "feature-sg");
  // GSO to the guest needs scatter-gather (a GSO packet spans pages) and checksum offload.
  o.gso_tcpv4 = o.sg && o.csum && xenbus::read_flag(read, "feature-gso-tcpv4");
  o.gso_tcpv6 = o.sg && o.ipv6_csum && xenbus::read_flag(read, "feature-gso-tcpv6");
  r.multicast_control = limits.multicast_control && xenbus::read_flag(read, "request-multicast-control");
  auto headroom = read_xdp_headroom(read, limits.xdp_headroom);
  if (!headroom) return Refused(headroom.error());
  r.xdp_headroom = *headroom;

  for (unsigned i = 0; i < r.queues; ++i) {
    const std::string dir = r.queues > 1 ? "queue-" + std::to_string(i) + "/" : "";
    auto q = read_queue(read, dir, limits.split_event_channels);
    if (!q) return Refused(q.error());
    r.rings.push_back(*q);
  }
  if (limits.ctrl_ring && read("ctrl-ring-ref").has_value()) {
    auto ref = required(read, "ctrl-ring-ref");
    if (!ref) return Refused(ref.error());
    auto port = required(read, "event-channel-ctrl");
    if (!port) return Refused(port.error());
    r.ctrl = VifCtrlKeys{*ref, *port};
  }
  return r;
}

}  // namespace pvback::netback
