#include "netback/vif_driver.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.hpp"
#include "ring/netif.hpp"
#include "xenbus/state.hpp"

namespace pvback::netback {
namespace {

constexpr unsigned kMaxQueuesLimit = 64;
// RX data starts this far into each guest page; more leaves too little of the page for a frame.
constexpr unsigned kMaxXdpHeadroom = 2047;

// A frontend boolean: Linux's xenbus_read_unsigned(..., 0) != 0. Missing or malformed is false.
bool read_flag(xenbus::XenStore& xs, const std::string& path) {
  auto v = xs.read_uint(path, UINT32_MAX);
  return v && *v != 0;
}

// A required grant ref or event channel; logs which key is missing or malformed.
std::expected<std::uint32_t, int> read_required(xenbus::XenStore& xs, const std::string& path, const std::string& name) {
  auto v = xs.read_uint(path, UINT32_MAX);
  if (!v) {
    PVBACK_LOG(Error, "%s: %s: %s", name.c_str(), path.c_str(), v.error() == ENOENT ? "missing" : "invalid");
    return std::unexpected(v.error() == ENOENT ? ENOENT : EINVAL);
  }
  return static_cast<std::uint32_t>(*v);
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

int VifDriver::read_xdp_headroom(xenbus::XenStore& xs, const std::string& frontend_path, std::uint16_t* headroom) {
  *headroom = 0;
  // Linux netfront writes only "xdp-headroom" (256 with an XDP program, 0 without).
  if (!options_.xdp_headroom) return 0;
  auto v = xs.read_uint(frontend_path + "/xdp-headroom", UINT32_MAX);
  if (!v && v.error() == ENOENT) return 0;
  if (!v || *v > kMaxXdpHeadroom) {
    PVBACK_LOG(Error, "%s: xdp-headroom %s (0..%u allowed)", name_.c_str(), v ? std::to_string(*v).c_str() : "invalid",
               kMaxXdpHeadroom);
    return EINVAL;
  }
  *headroom = static_cast<std::uint16_t>(*v);
  return 0;
}

std::expected<QueueConfig, int> VifDriver::read_queue(xenbus::XenStore& xs, const std::string& dir, unsigned index) {
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
  auto tx = read_required(xs, dir + "/tx-ring-ref", c.name);
  if (!tx) return std::unexpected(tx.error());
  auto rx = read_required(xs, dir + "/rx-ring-ref", c.name);
  if (!rx) return std::unexpected(rx.error());
  c.tx_ring_ref = *tx;
  c.rx_ring_ref = *rx;
  // Split event channels when we offered them and the frontend wrote both keys; else one channel.
  const bool split = options_.split_event_channels && xs.exists(dir + "/event-channel-tx").value_or(false);
  if (split) {
    auto etx = read_required(xs, dir + "/event-channel-tx", c.name);
    if (!etx) return std::unexpected(etx.error());
    auto erx = read_required(xs, dir + "/event-channel-rx", c.name);
    if (!erx) return std::unexpected(erx.error());
    c.tx_event_channel = *etx;
    c.rx_event_channel = *erx;
  } else {
    auto e = read_required(xs, dir + "/event-channel", c.name);
    if (!e) return std::unexpected(e.error());
    c.tx_event_channel = c.rx_event_channel = *e;
  }
  c.split_event_channels = split;
  if (index == 0) negotiated_.split_event_channels = split;
  return c;
}

int VifDriver::connect(xenbus::XenStore& xs, const std::string& frontend_path) {
  disconnect();
  negotiated_ = VifNegotiated{};
  // Linux netback refuses frontends that cannot take copied RX packets or RX notifications.
  if (!read_flag(xs, frontend_path + "/request-rx-copy")) {
    PVBACK_LOG(Error, "%s: frontend does not request rx-copy (page flipping is not supported)", name_.c_str());
    return EOPNOTSUPP;
  }
  if (!read_flag(xs, frontend_path + "/feature-rx-notify")) {
    PVBACK_LOG(Error, "%s: frontend lacks feature-rx-notify, which is mandatory", name_.c_str());
    return EINVAL;
  }
  auto queues = xs.read_uint(frontend_path + "/multi-queue-num-queues", UINT32_MAX);
  if (!queues && queues.error() != ENOENT) {
    PVBACK_LOG(Error, "%s: multi-queue-num-queues is not a number", name_.c_str());
    return EINVAL;
  }
  negotiated_.queues = queues ? static_cast<unsigned>(*queues) : 1;
  if (negotiated_.queues == 0 || negotiated_.queues > effective_max_queues()) {
    PVBACK_LOG(Error, "%s: frontend asked for %u queues (1..%u allowed)", name_.c_str(), negotiated_.queues,
               effective_max_queues());
    return EINVAL;
  }
  GuestOffloads& o = negotiated_.offloads;
  o.csum = !read_flag(xs, frontend_path + "/feature-no-csum-offload");
  o.ipv6_csum = read_flag(xs, frontend_path + "/feature-ipv6-csum-offload");
  o.sg = read_flag(xs, frontend_path + "/feature-sg");
  // GSO to the guest needs scatter-gather (a GSO packet spans pages) and checksum offload.
  o.gso_tcpv4 = o.sg && o.csum && read_flag(xs, frontend_path + "/feature-gso-tcpv4");
  o.gso_tcpv6 = o.sg && o.ipv6_csum && read_flag(xs, frontend_path + "/feature-gso-tcpv6");
  negotiated_.multicast_control =
      options_.multicast_control && read_flag(xs, frontend_path + "/request-multicast-control");
  if (int e = read_xdp_headroom(xs, frontend_path, &negotiated_.xdp_headroom)) return e;

  std::vector<QueueConfig> configs;
  for (unsigned i = 0; i < negotiated_.queues; ++i) {
    const std::string dir = negotiated_.queues > 1 ? frontend_path + "/queue-" + std::to_string(i) : frontend_path;
    auto c = read_queue(xs, dir, i);
    if (!c) return c.error();
    configs.push_back(std::move(*c));
  }
  std::optional<ControlRingConfig> ctrl_config;
  if (options_.ctrl_ring && xs.exists(frontend_path + "/ctrl-ring-ref").value_or(false)) {
    auto ref = read_required(xs, frontend_path + "/ctrl-ring-ref", name_);
    if (!ref) return ref.error();
    auto port = read_required(xs, frontend_path + "/event-channel-ctrl", name_);
    if (!port) return port.error();
    ctrl_config = ControlRingConfig{name_ + " ctrl", frontend_domid_, *ref, *port,
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
  std::uint16_t headroom = 0;
  if (int e = read_xdp_headroom(xs, frontend_path, &headroom)) return e;
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
