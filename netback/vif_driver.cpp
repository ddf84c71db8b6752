#include "netback/vif_driver.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "base/queue_count.hpp"
#include "netback/frontend_keys.hpp"
#include "netback/tap_exit.hpp"
#include "netback/tunables.hpp"
#include "ring/netif.hpp"
#include "xenbus/state.hpp"

namespace pvback::netback {
namespace {

constexpr unsigned kMaxQueuesLimit = 64;
constexpr const char* kSharedStatsName = "pvback-net-stats";

xenbus::FrontendKeyReader key_reader(xenbus::XenStore& xs, const std::string& frontend_path) {
  return [&xs, frontend_path](const std::string& key) { return xs.read(frontend_path + "/" + key); };
}

}  // namespace

std::string vif_recovery_prefix(const std::string& dir, DomId frontend_domid, const std::string& handle) {
  return dir + "/vif-" + std::to_string(frontend_domid) + "-" + handle;
}

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
      on_fatal_(std::move(on_fatal)),
      cgroup_(options_.cgroup, name_),
      restart_limit_(options_.data_plane_restart_burst) {
  if (options_.max_slots < netif::kLegacySlotsMax) options_.max_slots = netif::kLegacySlotsMax;
  if (options_.fatal_slots < options_.max_slots) options_.fatal_slots = options_.max_slots;
}

VifDriver::~VifDriver() { disconnect(); }

unsigned VifDriver::effective_max_queues() const {
  unsigned n = options_.max_queues;
  if (n == 0) n = default_queue_count();
  return std::min({n, kMaxQueuesLimit, std::max(1u, exit_.max_queues())});
}

int VifDriver::advertise(xenbus::XenStore& xs, const std::string& backend_path) {
  backend_path_ = backend_path;
  // backend_path ends in <domid>/<handle> (checked by the caller).
  if (!options_.recovery_dir.empty())
    recovery_prefix_ = vif_recovery_prefix(options_.recovery_dir, frontend_domid_,
                                           backend_path.substr(backend_path.rfind('/') + 1));
  refresh_rate(xs);
  // libxl writes the vif's MTU; the exit carries it (1500 when absent, as Linux netback assumes).
  auto mtu = xs.read_uint(backend_path + "/mtu", 65535);
  mtu_ = mtu && *mtu >= 68 ? static_cast<std::uint32_t>(*mtu) : 1500;
  // A frontend that has read the directory (connected to a predecessor, or about to connect)
  // negotiated from it, which this process's options (the operator may have changed them since)
  // must not contradict while that connection lasts.
  if (xenbus::frontend_has_read_advertisement(xs, backend_path) && xs.read(backend_path + "/multi-queue-max-queues")) {
    const Advertised own = wanted_advertisement();
    const auto queues = xs.read_uint(backend_path + "/multi-queue-max-queues", 64);
    const auto split = xs.read_uint(backend_path + "/feature-split-event-channels", 1);
    const auto xdp = xs.read_uint(backend_path + "/feature-xdp-headroom", 1);
    // Never more queues than this process's exit has (another exit, a device with fewer queues, a
    // predecessor's directory): a frontend that asks for more is refused at connect, not served
    // past the exit's ports.
    const unsigned read_back = queues && *queues > 0 ? static_cast<unsigned>(*queues) : own.max_queues;
    advertised_ = {std::min({read_back, kMaxQueuesLimit, std::max(1u, exit_.max_queues())}),
                   split ? *split == 1 : own.split_event_channels, xdp ? *xdp == 1 : own.xdp_headroom};
    // The directory may promise what this process cannot do (more queues, GSO its exit cannot
    // send: a successor with other options or another exit): it is written again before the
    // frontend's next connection, or that one would be refused (or its GSO frames dropped) too.
    const ExitCapabilities caps = exit_.capabilities();
    const auto gso4 = xs.read_uint(backend_path + "/feature-gso-tcpv4", 1);
    const auto gso6 = xs.read_uint(backend_path + "/feature-gso-tcpv6", 1);
    const bool gso_lost = (gso4 && *gso4 == 1 && !(options_.gso && caps.tx_tso4)) ||
                          (gso6 && *gso6 == 1 && !(options_.gso && caps.tx_tso6));
    if (gso_lost)
      PVBACK_LOG(Warning, "%s: the frontend was offered GSO that %s cannot send: its GSO frames are dropped until it "
                 "connects again", name_.c_str(), exit_.name().c_str());
    directory_stale_ = read_back != advertised_.max_queues || gso_lost;
    advertised_stale_ = directory_stale_ || advertised_ != own;
    return 0;
  }
  return write_features(xs);
}

VifDriver::Advertised VifDriver::wanted_advertisement() const {
  return {effective_max_queues(), options_.split_event_channels, options_.xdp_headroom};
}

void VifDriver::refresh_advertisement(xenbus::XenStore& xs) {
  if (!advertised_stale_) return;
  if (const int e = write_features(xs))
    PVBACK_LOG(Warning, "%s: cannot advertise the operator's new limits: %s", name_.c_str(), std::strerror(e));
}

// What the frontend negotiates from: written at advertise() and again when the operator changes it.
int VifDriver::write_features(xenbus::XenStore& xs) {
  const std::string& backend_path = backend_path_;
  const ExitCapabilities caps = exit_.capabilities();
  const bool gso4 = options_.gso && caps.tx_tso4;
  const bool gso6 = options_.gso && caps.tx_tso6;
  const int e = xs.transact([&](xenbus::Txn txn) -> int {
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
  if (e == 0) {
    advertised_ = wanted_advertisement();
    advertised_stale_ = directory_stale_ = false;
  }
  return e;
}

std::expected<TunableChange, std::string> VifDriver::set_tunable(xenbus::XenStore& xs, std::string_view key,
                                                                  std::string_view value) {
  VifOptions changed = options_;
  auto change = ::pvback::set_tunable(vif_tunables(), "vif", changed, key, value);
  if (!change) return change;
  const VifOptions previous = options_;
  options_ = changed;
  if (options_.fatal_slots < options_.max_slots) {  // as at start: no smaller than what is dropped
    options_.fatal_slots = options_.max_slots;
    if (change->name == "fatal_skb_slots") change->value = options_.fatal_slots;
  }
  // A frontend that read the directory negotiated from it: advertised before it connects again.
  if (connected_ || (!backend_path_.empty() && xenbus::frontend_has_read_advertisement(xs, backend_path_))) {
    advertised_stale_ = directory_stale_ || wanted_advertisement() != advertised_;
  } else if (!backend_path_.empty()) {
    if (const int e = write_features(xs)) {
      options_ = previous;
      return std::unexpected(name_ + ": not set: it cannot be advertised to the frontend: " + std::strerror(e));
    }
  }
  PVBACK_LOG(Notice, "%s: %s = %llu (was %llu), in effect at the frontend's next connection", name_.c_str(),
             change->name.c_str(), static_cast<unsigned long long>(change->value),
             static_cast<unsigned long long>(change->old_value));
  return change;
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
  spec_.rate = limit;  // a data plane started again gets it
  if (rings_) rings_->shared().set_rate(limit);
  if (plane_.running())
    if (int e = plane_.send(encode_set_rate(limit)))
      PVBACK_LOG(Warning, "%s: cannot give the data plane the new rate: %s", name_.c_str(), std::strerror(e));
  if (limit.bytes == 0) {
    PVBACK_LOG(Info, "%s: TX rate unlimited", name_.c_str());
  } else {
    PVBACK_LOG(Info, "%s: TX rate %llu bytes per %llu us", name_.c_str(), static_cast<unsigned long long>(limit.bytes),
               static_cast<unsigned long long>(limit.usec));
  }
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
  // What the backend's directory told the frontend, not the options: the operator may have changed
  // those since (they are advertised before the frontend's next connection).
  limits.max_queues = advertised_.max_queues;
  limits.split_event_channels = advertised_.split_event_channels;
  limits.ctrl_ring = options_.ctrl_ring;
  limits.multicast_control = options_.multicast_control;
  limits.xdp_headroom = advertised_.xdp_headroom;
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
  spec_ = VifRingsSpec{};
  spec_.name = name_;
  spec_.frontend_domid = frontend_domid_;
  for (unsigned i = 0; i < negotiated_.queues; ++i) spec_.queues.push_back(queue_config(request->rings[i], i));
  if (request->ctrl) {
    spec_.ctrl = ControlRingConfig{name_ + " ctrl", frontend_domid_, request->ctrl->ring_ref,
                                   request->ctrl->event_channel,
                                   first_connect_ ? grant::kSuccessorBindPatience : std::chrono::milliseconds{0}, {}};
    negotiated_.ctrl_ring = true;
  }
  spec_.multicast_control = negotiated_.multicast_control;
  spec_.rate = rate_;
  // The process's first connect resumes a predecessor's record if it is one of these very rings.
  spec_.resume = first_connect_;

  if (int e = exit_.configure(negotiated_.queues, negotiated_.offloads, mtu_)) {
    PVBACK_LOG(Error, "%s: cannot configure %s for %u queue(s): %s", name_.c_str(), exit_.name().c_str(),
               negotiated_.queues, std::strerror(e));
    return e;
  }
  first_connect_ = false;  // a later connect is the frontend's new connection, not a takeover
  ++generation_;
  // The data plane's control group first: one adopted is moved into it, one launched is placed
  // there before it is given anything.
  int e = serves_in_process() ? 0 : make_cgroup();
  const bool adopted = e == 0 && !serves_in_process() && claim_adopted();
  // Any other data plane a dead control part left serving holds these rings (or an earlier
  // connection's) and the TAP's queues: it stops first.
  if (!adopted) stop_orphan_data_plane(adoption_path());
  if (e == 0 && serves_in_process()) {
    e = start_rings();
  } else if (e == 0 && !adopted) {
    plane_restarts_ = 0;
    restart_limit_.reset();
    e = open_connection_record();
    if (e == 0) e = launch_data_plane(false);
  }
  if (e != 0) {
    disconnect();
    return e;
  }
  connected_ = true;
  link_up_ = true;
  exit_.set_link(true);
  PVBACK_LOG(Info,
             "%s: connected to %s: %u queue(s), %s event channels, control ring %s, sg %s, gso v4 %s v6 %s, "
             "csum %s, ipv6 csum %s, multicast control %s, xdp headroom %u, %s",
             name_.c_str(), exit_.name().c_str(), negotiated_.queues,
             negotiated_.split_event_channels ? "split" : "shared", negotiated_.ctrl_ring ? "on" : "off",
             o.sg ? "on" : "off", o.gso_tcpv4 ? "on" : "off", o.gso_tcpv6 ? "on" : "off", o.csum ? "on" : "off",
             o.ipv6_csum ? "on" : "off", negotiated_.multicast_control ? "on" : "off", negotiated_.xdp_headroom,
             plane_.running() ? "in a data-plane process" : "on threads of the control part");
  return 0;
}

bool VifDriver::serves_in_process() const {
  return !options_.data_plane_process || dynamic_cast<const TapExit*>(&exit_) == nullptr;
}

void VifDriver::use_stats(plane::SharedStats<QueueStats> stats) {
  shared_stats_ = std::move(stats);
  stats_.clear();
  for (unsigned i = 0; i < shared_stats_.size(); ++i) stats_.push_back(&shared_stats_.at(i));
}

// The connection's statistics memory and record: new statistics; the record file of a
// predecessor kept (VifRings resumes it only if it is one of these very rings).
int VifDriver::open_connection_record() {
  auto stats = plane::SharedStats<QueueStats>::create(negotiated_.queues, kSharedStatsName);
  if (!stats) {
    PVBACK_LOG(Error, "%s: cannot create the statistics memory: %s", name_.c_str(), std::strerror(stats.error()));
    return stats.error();
  }
  use_stats(std::move(*stats));
  auto record = open_record(recovery_prefix_, negotiated_.queues);
  if (!record) {
    PVBACK_LOG(Error, "%s: cannot open the vif's record %s: %s", name_.c_str(),
               recovery_prefix_.empty() ? "(memfd)" : recovery_prefix_.c_str(), std::strerror(record.error()));
    return record.error();
  }
  record_ = std::move(*record);
  return 0;
}

int VifDriver::start_rings() {
  if (int e = open_connection_record()) return e;
  const unsigned generation = generation_.load();
  auto on_fatal = [this, generation](int error, const std::string& reason) {
    fatal_generation_.store(generation);
    on_fatal_(error, reason);
  };
  std::vector<Port*> ports;
  for (unsigned i = 0; i < negotiated_.queues; ++i) ports.push_back(&exit_.port(i));
  auto rings = VifRings::create(platform_, spec_, ports, stats_, record_.get(), on_fatal);
  if (!rings) return rings.error();
  rings_ = std::move(*rings);
  return rings_->start();
}

int VifDriver::launch_data_plane(bool resume) {
  auto& tap = dynamic_cast<TapExit&>(exit_);
  PlaneSpec spec;
  spec.rings = spec_;
  unsigned channels = 0;
  for (QueueConfig& q : spec.rings.queues) {
    if (resume) q.bind_patience = grant::kSuccessorBindPatience;
    channels += q.split_event_channels ? 2 : 1;
  }
  if (spec.rings.ctrl) {
    if (resume) spec.rings.ctrl->bind_patience = grant::kSuccessorBindPatience;
    ++channels;
  }
  spec.rings.resume = spec.rings.resume || resume;
  spec.tap_name = tap.name();
  const std::vector<int> taps = tap.queue_fds();
  spec.tap_fds = static_cast<std::uint32_t>(taps.size());
  spec.sandbox = options_.sandbox;
  spec.uid = spec.gid = options_.sandbox_uid_base + frontend_domid_;
  spec.orphan_timeout_ms = static_cast<std::uint32_t>(options_.orphan_timeout.count());
  const UniqueFd listener = ::pvback::plane::listen_for_adoption(adoption_path(), name_);
  // Binding patiently may take kSuccessorBindPatience per channel.
  const auto timeout =
      std::chrono::milliseconds(10'000) + grant::kSuccessorBindPatience * (spec.rings.resume ? channels : 0);
  auto p = netback::launch_data_plane(options_.data_plane_binary, spec, shared_stats_.fd(), record_.get(), taps,
                                      listener ? listener.get() : -1, timeout, cgroup_.placer());
  if (!p) return p.error();
  plane_ = std::move(*p);
  return 0;
}

// The data plane's control group for this connection, its limits sized for what a vif's data plane
// holds (the operator's options override each):
// - memory, 32 MiB + 32 MiB per queue. Each TAP queue it serves has 256 TX and 256 RX packet
//   slots of 68 KiB (a 64 KiB GSO frame and its virtio header), mapped lazily: a frame touches only
//   the pages it fills, and slots are reused most recently freed first, so what is resident is what
//   was in flight at once: at most a TX ring's worth (256 slots) and one RX batch (64 slots, the
//   frames held for a guest short of buffers included), 21 MiB per queue were every frame 64 KiB,
//   and the queue's batch arrays (about 1 MiB). A TAP's queues the frontend does not use carry no
//   traffic and touch nothing. The base is the process itself (heap, stacks, its network namespace
//   and page tables, which the kernel charges to it); the guest's granted pages are not charged.
//   Measured: 3.4 MiB idle, 13.7 MiB at the peak of iperf3 both ways on two queues (README).
// - tasks, 16 + the queues: the main thread, one thread per queue and the control ring's, with room
//   for a replacement's start while its predecessor's last task is being reaped. The data plane
//   forks nothing (its seccomp filter allows clone only for threads) and has no io_uring workers.
// - CPU: none unless the operator sets one (--data-plane-cpu-max), as for a vbd.
int VifDriver::make_cgroup() {
  const auto queues = static_cast<std::uint64_t>(spec_.queues.size());
  return cgroup_.make({(std::uint64_t{32} << 20) + queues * (std::uint64_t{32} << 20), 16 + queues});
}

void VifDriver::offer_adopted(AdoptedDataPlane adopted) { adopted_ = std::move(adopted); }

void VifDriver::settle_after_start() {
  if (connected_) return;
  exit_.set_link(false);
  if (adopted_) {
    PVBACK_LOG(Notice, "%s: the frontend is not connected: stopping the data plane (pid %d) left serving",
               name_.c_str(), adopted_->process.pid());
    adopted_->process.stop();
    adopted_.reset();
    if (const std::string path = adoption_path(); !path.empty()) ::unlink(path.c_str());
  }
  // No data plane of this process runs: a control group of the vif's is one a dead control part
  // made for its data plane, which is gone.
  cgroup_.remove_orphan();
}

// The adopted data plane, if it serves the rings the frontend has now: its statistics and
// record become the connection's, and what may have changed while no control part ran (the
// rate, the headroom) is sent again.
bool VifDriver::claim_adopted() {
  if (!adopted_) return false;
  AdoptedDataPlane a = std::move(*adopted_);
  adopted_.reset();
  if (record_key(a.spec.rings) != record_key(spec_)) {
    PVBACK_LOG(Notice, "%s: the data plane left serving (pid %d) serves rings of an earlier connection: stopping it",
               name_.c_str(), a.process.pid());
    a.process.stop();
    return false;
  }
  auto stats = plane::SharedStats<QueueStats>::adopt(std::move(a.stats), negotiated_.queues);
  if (!stats) {
    PVBACK_LOG(Warning, "%s: the adopted data plane's statistics memory: %s: stopping it", name_.c_str(),
               std::strerror(stats.error()));
    a.process.stop();
    return false;
  }
  use_stats(std::move(*stats));
  record_ = std::move(a.record);
  plane_ = std::move(a.process);
  cgroup_.adopt(plane_.pid());
  plane_restarts_ = 0;
  restart_limit_.reset();
  for (const auto& message : {encode_set_rate(rate_), encode_set_xdp_headroom(negotiated_.xdp_headroom)})
    if (int e = plane_.send(message))
      PVBACK_LOG(Warning, "%s: cannot update the adopted data plane: %s", name_.c_str(), std::strerror(e));
  return true;
}

// Reports a fatal error of the current connection as a queue of it would.
void VifDriver::fail_connection(int error, const std::string& reason) {
  fatal_generation_.store(generation_.load());
  on_fatal_(error, reason);
}

void VifDriver::on_data_plane_event() {
  plane::handle_data_plane_event(
      plane_, restart_limit_, plane_restarts_, name_,
      [this](int error, const std::string& reason) { fail_connection(error, reason); },
      [this] { return launch_data_plane(true); }, {}, &restarting_);
}

int VifDriver::begin_restart(xenbus::OperationDone done) {
  if (!plane_.running()) return connected_ && rings_ ? EOPNOTSUPP : ENOTCONN;
  // Onto the binary on disk, if it speaks this protocol (see VbdDriver::begin_restart).
  if (!options_.data_plane_binary.empty())
    if (const int e = ::pvback::plane::repin_binary(options_.data_plane_binary, kPlaneProtocol, name_)) return e;
  auto told = [done = std::move(done), old = plane_.pid()](std::expected<pid_t, int> started) {
    if (started)
      done({0, "", {{"old_pid", old}, {"data_plane_pid", *started}}});
    else if (started.error() == EIO)
      done(xenbus::Outcome::failed(EIO, "the new data plane did not start: the device failed"));
    else
      done(xenbus::Outcome::failed(started.error(), "the connection ended before the new data plane started (the "
                                                    "frontend disconnected, or the host daemon is stopping)"));
  };
  return plane::begin_restart(plane_, restarting_, name_, std::move(told));
}

void VifDriver::check_operations() {
  plane::check_restart(
      plane_, restarting_, restart_limit_, plane_restarts_, name_,
      [this](int error, const std::string& reason) { fail_connection(error, reason); },
      [this] { return launch_data_plane(true); });
}

int VifDriver::reconfigure(xenbus::XenStore& xs, const std::string& frontend_path) {
  auto read = read_xdp_headroom(key_reader(xs, frontend_path), advertised_.xdp_headroom);
  if (!read) {
    PVBACK_LOG(Error, "%s: frontend %s: %s", name_.c_str(), frontend_path.c_str(), read.error().why.c_str());
    return read.error().error;
  }
  const std::uint16_t headroom = *read;
  if (headroom == negotiated_.xdp_headroom) return 0;
  negotiated_.xdp_headroom = headroom;
  for (QueueConfig& q : spec_.queues) q.xdp_headroom = headroom;  // a data plane started again gets it
  if (rings_) rings_->shared().set_xdp_headroom(headroom);
  if (plane_.running())
    if (int e = plane_.send(encode_set_xdp_headroom(headroom)))
      PVBACK_LOG(Warning, "%s: cannot give the data plane the new headroom: %s", name_.c_str(), std::strerror(e));
  PVBACK_LOG(Info, "%s: reconfigured: xdp headroom %u", name_.c_str(), headroom);
  return 0;
}

void VifDriver::refresh_link() {
  if (!connected_) return;
  bool stalled = false;
  for (const auto& s : stats_) stalled = stalled || s->stalled.get() != 0;
  if (link_up_ == !stalled) return;
  link_up_ = !stalled;
  exit_.set_link(link_up_);
  PVBACK_LOG(Notice, "%s: carrier %s (%s)", name_.c_str(), link_up_ ? "on" : "off",
             link_up_ ? "the guest posts RX buffers again" : "the guest posted no RX buffers for too long");
}

void VifDriver::disconnect() {
  const bool had_connection = connected_ || plane_.running() || rings_;
  // One left serving keeps its link, its control group (or scope) and its listening socket for the
  // successor.
  if (link_up_ && !left_serving_) exit_.set_link(false);
  link_up_ = false;
  if (plane_.running()) {
    const int status = plane_.stop();
    if (status != 0)
      PVBACK_LOG(Warning, "%s: the data plane %s", name_.c_str(), plane::describe_wait_status(status).c_str());
  }
  if (!left_serving_) cgroup_.remove();  // an adopted data plane, not our child, may take a moment to leave it
  if (restarting_.active()) restarting_.finish(std::unexpected(ENOTCONN));
  rings_.reset();
  if (had_connection && !left_serving_) {
    // Its listening socket goes with it.
    if (const std::string path = adoption_path(); !path.empty()) ::unlink(path.c_str());
    // The frontend closed, the vif failed or went: its rings will not be resumed, and a record
    // left live could be taken for a new connection on the same grant references. Only this
    // process ending (SIGTERM, a lost XenStore) keeps it for a successor.
    if (!keep_records_ && !recovery_prefix_.empty()) ::unlink(recovery_prefix_.c_str());
  }
  record_.reset();
  for (auto* s : stats_) add_counters(past_, *s, kQueueStatsFields);
  stats_.clear();
  shared_stats_ = plane::SharedStats<QueueStats>();
  // Gauges of ended connections are not carried over.
  past_.tx_ring_pending.set(0);
  past_.rx_ring_posted.set(0);
  past_.stalled.set(0);
  connected_ = false;
}

bool VifDriver::leave_data_plane() {
  // A data plane an operator's restart has already told to stop stops, as before.
  if (!keep_records_ || restarting_.active()) return false;
  left_serving_ = plane::leave_for_successor(plane_, options_.on_stop, cgroup_.own_unit(), options_.orphan_timeout);
  return left_serving_;
}

void VifDriver::remove_recovery_records() {
  // A data plane a dead control part left serving this vif stops first, then the control group
  // that predecessor made goes (with no recovery directory its data plane stopped with it).
  if (!plane_.running()) {
    if (!recovery_prefix_.empty()) stop_orphan_data_plane(adoption_path());
    cgroup_.remove_orphan();
  }
  if (recovery_prefix_.empty()) return;
  ::unlink(adoption_path().c_str());
  ::unlink(recovery_prefix_.c_str());
}

}  // namespace pvback::netback
