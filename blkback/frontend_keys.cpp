#include "blkback/frontend_keys.hpp"

#include <cerrno>

#include "ring/blkif.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkback {
namespace {

using Refused = std::unexpected<FrontendRefusal>;

Refused refuse(int error, std::string why) { return Refused(FrontendRefusal{error, std::move(why)}); }

}  // namespace

using xenbus::read_number;

std::expected<FrontendRequest, FrontendRefusal> read_frontend(const FrontendKeyReader& read,
                                                               const FrontendLimits& limits) {
  FrontendRequest r;
  if (auto protocol = read("protocol"); protocol) {
    if (*protocol == blkif::kProtocolX86_32) r.abi = Abi::X86_32;
    else if (*protocol == blkif::kProtocolX86_64) r.abi = Abi::X86_64;
    else return refuse(EINVAL, "unknown protocol \"" + protocol->substr(0, 64) + "\"");
  } else if (protocol.error() != ENOENT) {
    return refuse(protocol.error(), "protocol: unreadable");
  }

  auto queues = read_number(read, "multi-queue-num-queues", UINT32_MAX, 1);
  if (!queues) return std::unexpected(queues.error());
  if (*queues == 0 || *queues > limits.max_queues)
    return refuse(EINVAL, "frontend asked for " + std::to_string(*queues) + " queues (1.." +
                              std::to_string(limits.max_queues) + " allowed)");
  r.queues = static_cast<unsigned>(*queues);

  auto order = read_number(read, "ring-page-order", UINT32_MAX, 0);
  if (!order) return std::unexpected(order.error());
  if (*order > limits.max_ring_page_order)
    return refuse(EINVAL, "frontend asked for ring-page-order " + std::to_string(*order) + " (max " +
                              std::to_string(limits.max_ring_page_order) + ")");
  r.ring_page_order = static_cast<unsigned>(*order);

  auto persistent = read("feature-persistent");
  r.persistent_grants = limits.persistent_offered && persistent && xenbus::parse_uint(*persistent, 1) == 1u;

  const unsigned pages = 1u << r.ring_page_order;
  r.rings.resize(r.queues);
  for (unsigned q = 0; q < r.queues; ++q) {
    const std::string dir = r.queues > 1 ? "queue-" + std::to_string(q) + "/" : "";
    auto evtchn = read_number(read, dir + "event-channel", UINT32_MAX, std::nullopt);
    if (!evtchn) return std::unexpected(evtchn.error());
    r.rings[q].event_channel = static_cast<EvtchnPort>(*evtchn);
    // A single-page ring may use the legacy "ring-ref" key (Linux accepts both).
    const bool legacy = r.ring_page_order == 0 && !read(dir + "ring-ref0").has_value();
    for (unsigned i = 0; i < pages; ++i) {
      auto ref = read_number(read, dir + (legacy ? "ring-ref" : "ring-ref" + std::to_string(i)), UINT32_MAX, std::nullopt);
      if (!ref) return std::unexpected(ref.error());
      r.rings[q].refs.push_back(static_cast<GrantRef>(*ref));
    }
  }
  return r;
}

}  // namespace pvback::blkback
