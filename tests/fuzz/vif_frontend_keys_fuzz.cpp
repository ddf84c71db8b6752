// libFuzzer target: netback/frontend_keys.hpp's read_vif_frontend on any directory a netfront
// could write. Input: 2 bytes of what the backend advertised (byte 0: max queues - 1, up to 64;
// byte 1: bit 0 split event channels, 1 control ring, 2 multicast control, 3 XDP headroom), then
// lines "key=value" ('\n'-separated; a value "\x01" makes that key's read fail with EIO).
// Checked besides crashes: an accepted request keeps within what was advertised, has one set of
// rings per queue, and every value it took is the one the directory holds (flags read as Linux
// reads them, GSO only with scatter-gather and the checksum offload it needs); the reader is asked
// a bounded number of times; a refusal names a key that was read and has an errno of its kind.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "netback/frontend_keys.hpp"
#include "tests/fuzz/check.hpp"
#include "tests/fuzz/key_directory.hpp"
#include "xenbus/xenstore.hpp"

using namespace pvback;
using namespace pvback::netback;

namespace {

// The directory's values as the reader must have taken them.
struct Dir : fuzz::KeyDirectory {
  using KeyDirectory::KeyDirectory;
  bool flag(const std::string& k) const { return readable(k) && xenbus::flag_value(keys.at(k)); }
  std::uint64_t number(const std::string& k) const {
    CHECK(readable(k));
    auto v = xenbus::parse_uint(keys.at(k), UINT32_MAX);
    CHECK(v.has_value());
    return *v;
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  VifFrontendLimits limits;
  limits.max_queues = 1u + data[0] % 64;
  limits.split_event_channels = (data[1] & 1) != 0;
  limits.ctrl_ring = (data[1] & 2) != 0;
  limits.multicast_control = (data[1] & 4) != 0;
  limits.xdp_headroom = (data[1] & 8) != 0;
  Dir dir(std::string_view(reinterpret_cast<const char*>(data + 2), size - 2));
  const xenbus::FrontendKeyReader read = dir.reader();
  auto r = read_vif_frontend(read, limits);
  // 2 mandatory flags, the queue count, 5 offload flags, multicast, headroom; per queue the two
  // rings, whether split, one or two channels; the control ring's presence and its two keys.
  CHECK(dir.reads <= 10 + 5 * limits.max_queues + 3);
  if (!r) {
    const int e = r.error().error;
    CHECK(e == ENOENT || e == EINVAL || e == EOPNOTSUPP);
    const std::string& why = r.error().why;
    const std::size_t colon = why.find(':');
    CHECK(colon != std::string::npos && dir.asked.count(why.substr(0, colon)) == 1);
    if (e == EOPNOTSUPP) CHECK(why.starts_with("request-rx-copy:"));
    return 0;
  }
  CHECK(dir.flag("request-rx-copy") && dir.flag("feature-rx-notify"));
  CHECK(r->queues >= 1 && r->queues <= limits.max_queues);
  CHECK(r->queues == (dir.keys.count("multi-queue-num-queues") != 0 ? dir.number("multi-queue-num-queues") : 1));
  CHECK(r->rings.size() == r->queues);

  const GuestOffloads& o = r->offloads;
  CHECK(o.csum == !dir.flag("feature-no-csum-offload"));
  CHECK(o.ipv6_csum == dir.flag("feature-ipv6-csum-offload"));
  CHECK(o.sg == dir.flag("feature-sg"));
  CHECK(o.gso_tcpv4 == (o.sg && o.csum && dir.flag("feature-gso-tcpv4")));
  CHECK(o.gso_tcpv6 == (o.sg && o.ipv6_csum && dir.flag("feature-gso-tcpv6")));
  CHECK(r->multicast_control == (limits.multicast_control && dir.flag("request-multicast-control")));
  CHECK(r->xdp_headroom <= kMaxXdpHeadroom);
  if (limits.xdp_headroom && dir.keys.count("xdp-headroom") != 0) CHECK(r->xdp_headroom == dir.number("xdp-headroom"));
  else CHECK(r->xdp_headroom == 0);

  for (unsigned q = 0; q < r->queues; ++q) {
    const std::string p = r->queues > 1 ? "queue-" + std::to_string(q) + "/" : "";
    const VifQueueKeys& k = r->rings[q];
    CHECK(k.tx_ring_ref == dir.number(p + "tx-ring-ref"));
    CHECK(k.rx_ring_ref == dir.number(p + "rx-ring-ref"));
    CHECK(k.split_event_channels == (limits.split_event_channels && dir.readable(p + "event-channel-tx")));
    if (k.split_event_channels) {
      CHECK(k.tx_event_channel == dir.number(p + "event-channel-tx"));
      CHECK(k.rx_event_channel == dir.number(p + "event-channel-rx"));
    } else {
      CHECK(k.tx_event_channel == dir.number(p + "event-channel"));
      CHECK(k.rx_event_channel == k.tx_event_channel);
    }
  }
  CHECK(r->ctrl.has_value() == (limits.ctrl_ring && dir.readable("ctrl-ring-ref")));
  if (r->ctrl) {
    CHECK(r->ctrl->ring_ref == dir.number("ctrl-ring-ref"));
    CHECK(r->ctrl->event_channel == dir.number("event-channel-ctrl"));
  }
  return 0;
}
