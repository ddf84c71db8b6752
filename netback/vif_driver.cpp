#include "netback/vif_driver.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.hpp"
#include "netback/frontend_keys.hpp"
#include "ring/netif.hpp"
#include "xenbus/state.hpp"

namespace pvback::netback {
namespace {

constexpr unsigned kMaxQueuesLimit = 64;

xenbus::FrontendKeyReader key_reader(xenbus::XenStore& xs, const std::string& frontend_path) {
  return [&xs, frontend_path](const std::string& key) { return xs.read(frontend_path + "/" + key); };
}

}  // namespace

std::optional<RateLimit> parse_rate(const std::string& value) {
  const auto comma = value.find(',');
  if (comma == std::string::npos) return std::nullopt;
  RateLimit r;
  const char* end = value.data() + value.size();
  auto [p1, e1] = std::from_chars(value.data(), value.data() + comma, r.bytes);
  auto [p2, e2] = std::from_chars(value.data() + comma + 1, end, r.usec);
  if (e1 != std::errc() || p1 != value.data() + comma || e2 != std::errc() || p2 != end || comma == 0 ||
      comma + 1 == value.size())
    return std::nullopt;
  // Linux treats a zero period as no limit; so do we (a zero credit per period would stop TX).
  if (r.usec == 0 || r.bytes == 0) return RateLimit{};
  // Bounded so the credit arithmetic (ns, signed 64-bit) cannot overflow: at most an hour's period.
  constexpr std::uint64_t kMaxPeriodUsec = 3'600'000'000ull, kMaxBytes = 1ull << 48;
  if (r.usec > kMaxPeriodUsec || r.bytes > kMaxBytes) return std::nullopt;
  return r;
}

VifDriver::VifDriver(const grant::Platform& platform, VifOptions options, std::string name, DomId frontend_domid,
                     Exit& exit, Queue::FatalHandler on_fatal)
    : platform_(platform),
      options_(options),
      name_(std::move(name)),
      frontend_domid_(frontend_domid),
      exit_(exit),
      on_fatal_(std::move(on_fatal)) {
  if (options_.max_slots < netif::kLegacySlotsMax) options_.max_slots = netif::kLegacySlotsMax;
  if (options_.fatal_slots < options_.max_slots) options_.fatal_slots = options_.max_slots;
}

VifDriver::~VifDriver() { disconnect(); }

unsigned VifDriver::effective_max_queues() const {
  unsigned n = options_.max_queues;
  if (n == 0) n = std::max(1u, std::thread::hardware_concurrency());
  return std::min({n, kMaxQueuesLimit, std::max(1u, exit_.max_queues())});
}

int VifDriver::advertise(xenbus::XenStore& xs, const std::string& backend_path) {
  backend_path_ = backend_path;
  refresh_rate(xs);
  // libxl writes the vif's MTU; the exit carries it (1500 when absent, as Linux netback assumes).
  auto mtu = xs.read_uint(backend_path + "/mtu", 65535);
  mtu_ = mtu && *mtu >= 68 ? static_cast<std::uint32_t>(*mtu) : 1500;
  const ExitCapabilities caps = exit_.capabilities();
  const bool gso4 = options_.gso && caps.tx_tso4;
  const bool gso6 = options_.gso && caps.tx_tso6;
  return xs.transact([&](xenbus::Txn txn) -> int {
    const std::pair<const char*, const char*> keys[] = {
        {"feature-sg", "1"},
        {"feature-gso-tcpv4", gso4 ? "1" : "0"},
        {"feature-gso-tcpv6", gso6 ? "1" : "0"},
        {"feature-ipv6-csum-offload", "1"},
        {"feature-rx-copy", "1"},
        {"feature-rx-flip", "0"},
        {"feature-multicast-control", options_.multicast_control ? "1" : "0"},
        {"feature-dynamic-multicast-control", options_.multicast_control ? "1" : "0"},
        {"feature-split-event-channels", options_.split_event_channels ? "1" : "0"},
        {"feature-ctrl-ring", options_.ctrl_ring ? "1" : "0"},
        {"feature-xdp-headroom", options_.xdp_headroom ? "1" : "0"},
    };
    for (const auto& [key, value] : keys)
      if (int e = xs.write(backend_path + "/" + key, value, txn)) return e;
    return xs.write(backend_path + "/multi-queue-max-queues", std::to_string(effective_max_queues()), txn);
  });
}

void VifDriver::refresh_rate(xenbus::XenStore& xs) {
  if (backend_path_.empty()) return;
  auto text = xs.read(backend_path_ + "/rate");
  const std::string value = text ? *text : std::string();
  if (value == rate_text_) return;
  rate_text_ = value;
  RateLimit limit;
  if (!value.empty()) {
    auto parsed = parse_rate(value);
    if (!parsed) {
      PVBACK_LOG(Warning, "%s: cannot parse rate \"%.64s\" (expected <bytes>,<usec>): traffic unlimited",
                 name_.c_str(), value.c_str());
    } else {
      limit = *parsed;
    }
  }
  rate_ = limit;
  if (limit.bytes == 0) {
    PVBACK_LOG(Info, "%s: TX rate unlimited", name_.c_str());
  } else {
    PVBACK_LOG(Info, "%s: TX rate %llu bytes per %llu us", name_.c_str(), static_cast<unsigned long long>(limit.bytes),
               static_cast<unsigned long long>(limit.usec));
  }
  if (shared_) shared_->set_rate(limit);
}

QueueConfig VifDriver::queue_config(const VifQueueKeys& keys, unsigned index) const {
  QueueConfig c;
  c.name = negotiated_.queues > 1 ? name_ + " q" + std::to_string(index) : name_;
  c.index = index;
  c.frontend_domid = frontend_domid_;
  c.guest = negotiated_.offloads;
  c.multicast_control = negotiated_.multicast_control;
  c.xdp_headroom = negotiated_.xdp_headroom;
  c.exit = exit_.capabilities();
  c.max_slots = options_.max_slots;
  c.fatal_slots = options_.fatal_slots;
  c.rx_stall_timeout = options_.rx_stall_timeout;
  if (first_connect_) c.bind_patience = grant::kSuccessorBindPatience;
  c.tx_ring_ref = keys.tx_ring_ref;
  c.rx_ring_ref = keys.rx_ring_ref;
  c.tx_event_channel = keys.tx_event_channel;
  c.rx_event_channel = keys.rx_event_channel;
  c.split_event_channels = keys.split_event_channels;
  return c;
}

int VifDriver::connect(xenbus::XenStore& xs, const std::string& frontend_path) {
  disconnect();
  negotiated_ = VifNegotiated{};
  VifFrontendLimits limits;
  limits.max_queues = effective_max_queues();
  limits.split_event_channels = options_.split_event_channels;
  limits.ctrl_ring = options_.ctrl_ring;
  limits.multicast_control = options_.multicast_control;
  limits.xdp_headroom = options_.xdp_headroom;
  auto request = read_vif_frontend(key_reader(xs, frontend_path), limits);
  if (!request) {
    PVBACK_LOG(Error, "%s: frontend %s: %s", name_.c_str(), frontend_path.c_str(), request.error().why.c_str());
    return request.error().error;
  }
  negotiated_.queues = request->queues;
  negotiated_.offloads = request->offloads;
  negotiated_.multicast_control = request->multicast_control;
  negotiated_.xdp_headroom = request->xdp_headroom;
  negotiated_.split_event_channels = request->rings[0].split_event_channels;
  const GuestOffloads& o = negotiated_.offloads;
  std::vector<QueueConfig> configs;
  for (unsigned i = 0; i < negotiated_.queues; ++i) configs.push_back(queue_config(request->rings[i], i));
  std::optional<ControlRingConfig> ctrl_config;
  if (request->ctrl) {
    ctrl_config = ControlRingConfig{name_ + " ctrl", frontend_domid_, request->ctrl->ring_ref,
                                    request->ctrl->event_channel,
                                    first_connect_ ? grant::kSuccessorBindPatience : std::chrono::milliseconds{0}};
    negotiated_.ctrl_ring = true;
  }

  if (int e = exit_.configure(negotiated_.queues, negotiated_.offloads, mtu_)) {
    PVBACK_LOG(Error, "%s: cannot configure %s for %u queue(s): %s", name_.c_str(), exit_.name().c_str(),
               negotiated_.queues, std::strerror(e));
    return e;
  }
  shared_ = std::make_unique<VifShared>(negotiated_.queues);
  group_ = std::make_unique<QueueGroup>(negotiated_.queues);
  shared_->set_rate(rate_);
  shared_->set_multicast_control(negotiated_.multicast_control);

  first_connect_ = false;  // a later connect is the frontend's new connection, not a takeover
  const unsigned generation = ++generation_;
  auto on_fatal = [this, generation](int error, const std::string& reason) {
    fatal_generation_.store(generation);
    on_fatal_(error, reason);
  };
  for (unsigned i = 0; i < negotiated_.queues; ++i) {
    stats_.push_back(std::make_unique<QueueStats>());
    configs[i].group = group_.get();
    auto q = Queue::create(platform_, std::move(configs[i]), exit_.port(i), *shared_, *stats_.back(), on_fatal);
    if (!q) {
      PVBACK_LOG(Error, "%s: queue %u: cannot map the rings or bind the event channels: %s", name_.c_str(), i,
                 std::strerror(q.error()));
      disconnect();
      return q.error();
    }
    queues_.push_back(std::move(*q));
  }
  if (ctrl_config) {
    auto ctrl = ControlRing::create(platform_, *ctrl_config, *shared_, on_fatal);
    if (!ctrl) {
      PVBACK_LOG(Error, "%s: cannot map the control ring or bind its event channel: %s", name_.c_str(),
                 std::strerror(ctrl.error()));
      disconnect();
      return ctrl.error();
    }
    ctrl_ = std::move(*ctrl);
  }
  for (auto& q : queues_) threads_.emplace_back([queue = q.get()] { queue->run(); });
  if (ctrl_) threads_.emplace_back([ctrl = ctrl_.get()] { ctrl->run(); });
  link_up_ = true;
  exit_.set_link(true);
  PVBACK_LOG(Info,
             "%s: connected to %s: %u queue(s), %s event channels, control ring %s, sg %s, gso v4 %s v6 %s, "
             "csum %s, ipv6 csum %s, multicast control %s, xdp headroom %u",
             name_.c_str(), exit_.name().c_str(), negotiated_.queues,
             negotiated_.split_event_channels ? "split" : "shared", negotiated_.ctrl_ring ? "on" : "off",
             o.sg ? "on" : "off", o.gso_tcpv4 ? "on" : "off", o.gso_tcpv6 ? "on" : "off", o.csum ? "on" : "off",
             o.ipv6_csum ? "on" : "off", negotiated_.multicast_control ? "on" : "off", negotiated_.xdp_headroom);
  return 0;
}

int VifDriver::reconfigure(xenbus::XenStore& xs, const std::string& frontend_path) {
  auto read = read_xdp_headroom(key_reader(xs, frontend_path), options_.xdp_headroom);
  if (!read) {
    PVBACK_LOG(Error, "%s: frontend %s: %s", name_.c_str(), frontend_path.c_str(), read.error().why.c_str());
    return read.error().error;
  }
  const std::uint16_t headroom = *read;
  if (headroom == negotiated_.xdp_headroom) return 0;
  negotiated_.xdp_headroom = headroom;
  if (shared_) shared_->set_xdp_headroom(headroom);
  PVBACK_LOG(Info, "%s: reconfigured: xdp headroom %u", name_.c_str(), headroom);
  return 0;
}

void VifDriver::refresh_link() {
  if (queues_.empty()) return;
  bool stalled = false;
  for (const auto& s : stats_) stalled = stalled || s->stalled.get() != 0;
  if (link_up_ == !stalled) return;
  link_up_ = !stalled;
  exit_.set_link(link_up_);
  PVBACK_LOG(Notice, "%s: carrier %s (%s)", name_.c_str(), link_up_ ? "on" : "off",
             link_up_ ? "the guest posts RX buffers again" : "the guest posted no RX buffers for too long");
}

void VifDriver::disconnect() {
  if (link_up_) exit_.set_link(false);
  link_up_ = false;
  if (ctrl_) ctrl_->stop();
  for (auto& q : queues_) q->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  ctrl_.reset();
  queues_.clear();
  group_.reset();  // after the queues registered in it
  for (auto& s : stats_) add_counters(past_, *s, kQueueStatsFields);
  stats_.clear();
  // Gauges of ended connections are not carried over.
  past_.tx_ring_pending.set(0);
  past_.rx_ring_posted.set(0);
  past_.stalled.set(0);
  shared_.reset();
}

}  // namespace pvback::netback
