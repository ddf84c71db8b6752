#include "blkback/vbd_driver.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <unistd.h>

#include "base/fd_passing.hpp"
#include "base/log.hpp"
#include "base/queue_count.hpp"
#include "blkback/frontend_keys.hpp"
#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "storage/nbd_engine.hpp"
#ifdef PVBACK_HAVE_RBD
#include "storage/rbd_engine.hpp"
#endif
#include "ring/blkif.hpp"
#include "xenbus/state.hpp"

namespace pvback::blkback {
namespace {

// 64 pages (2048 requests): keeps every in-flight request within one io_uring completion queue.
constexpr unsigned kMaxRingPageOrder = 6;
constexpr unsigned kMaxQueuesLimit = 256;

}  // namespace

VbdDriver::VbdDriver(const grant::Platform& platform, BackendOptions options, std::string name, DomId frontend_domid,
                     Queue::FatalHandler on_fatal)
    : platform_(platform),
      options_(options),
      name_(std::move(name)),
      frontend_domid_(frontend_domid),
      on_fatal_(std::move(on_fatal)),
      cgroup_(options_.cgroup, name_),
      restart_limit_(options_.data_plane_restart_burst) {
  if (options_.max_ring_page_order > kMaxRingPageOrder) options_.max_ring_page_order = kMaxRingPageOrder;
  if (options_.max_indirect_segments > blkif::kMaxIndirectSegments)
    options_.max_indirect_segments = blkif::kMaxIndirectSegments;
}

VbdDriver::~VbdDriver() { disconnect(); }

unsigned VbdDriver::effective_max_queues() const {
  unsigned n = options_.max_queues;
  if (n == 0) n = default_queue_count();
  return std::min(n, kMaxQueuesLimit);
}

// The storage is opened before the frontend says whether it uses persistent grants, so auto
// decides on what this backend offers.
bool VbdDriver::use_direct_io() const {
  using Direct = BackendOptions::Direct;
  if (options_.direct != Direct::Auto) return options_.direct == Direct::On;
  const bool maps_guest_pages =
      options_.persistent_grants || advertised_.persistent_grants || options_.data_path == DataPath::Map;
  if (!maps_guest_pages || platform_.direct_io_into_mappings()) return true;
  PVBACK_LOG(Notice, "%s: PV dom0: serving the storage buffered, not with O_DIRECT into mapped grants "
             "(--direct on overrides)", name_.c_str());
  return false;
}

// What "params" names, as libxl writes it: a path (the phy backend: a file or block device), an
// NBD URI, an RBD image ("rbd:pool/image...", or "aio:rbd:..." from the qdisk backend), or
// "<format>:<path>" (the qdisk backend; "aio" is libxl's word for raw). A raw image is served by
// the io_uring engine; other formats through a qemu-storage-daemon of its own.
std::expected<std::unique_ptr<storage::Engine>, int> VbdDriver::open_engine(const std::string& params) const {
#ifdef PVBACK_HAVE_RBD
  if (storage::names_rbd(params)) {
    auto o = storage::parse_rbd_params(params);
    if (!o) {
      PVBACK_LOG(Error, "%s: \"%s\": %s", name_.c_str(), params.c_str(), o.error().c_str());
      return std::unexpected(EINVAL);
    }
    o->read_only = read_only_;
    o->discard = discard_enable_;
    auto rbd = storage::RbdEngine::open(*o);
    if (!rbd) return std::unexpected(rbd.error());
    return std::unique_ptr<storage::Engine>(std::move(*rbd));
  }
#else
  if (params.starts_with("rbd:") || params.starts_with("aio:rbd:")) {
    PVBACK_LOG(Error, "%s: this pvback-blk was built without RBD support (PVBACK_RBD=OFF)", name_.c_str());
    return std::unexpected(EOPNOTSUPP);
  }
#endif
  for (const char* scheme : {"nbd://", "nbds://", "nbd+unix://", "nbds+unix://"}) {
    if (params.starts_with(scheme)) {
      storage::NbdOptions o;
      o.uri = params;
      o.read_only = read_only_;
      o.discard = discard_enable_;
      return storage::NbdEngine::open(o);
    }
  }
  std::string path = params;
  const auto colon = params.find(':');
  const char* format = nullptr;
  if (colon != std::string::npos && params.find('/') > colon) {
    const std::string prefix = params.substr(0, colon);
    format = storage::qemu_format_name(prefix);
    if (format != nullptr) {
      path = params.substr(colon + 1);
    } else if (::access(params.c_str(), F_OK) != 0) {  // not a file named so either
      PVBACK_LOG(Error, "%s: \"%s\" names no format pvback serves (raw, aio, qcow2, qcow, vhd, vhdx, vmdk, qed, luks; rbd:pool/image)",
                 name_.c_str(), prefix.c_str());
      return std::unexpected(EINVAL);
    }
  }
  if (format != nullptr && std::string_view(format) != "raw") {
    storage::NbdOptions o;
    o.image = path;
    o.format = format;
    o.writethrough = !options_.image_writeback;
    o.read_only = read_only_;
    o.discard = discard_enable_;
    return storage::NbdEngine::open(o);
  }
  storage::FileOptions so;
  so.path = path;
  so.read_only = read_only_;
  so.allow_direct = use_direct_io();
  so.discard = discard_enable_;
  // A data-plane process gets an open file of its own, locked when it starts (reopen_locked).
  so.lock = !options_.data_plane_process;
  auto file = storage::FileEngine::open(so);
  if (!file) return std::unexpected(file.error());
  return std::unique_ptr<storage::Engine>(std::move(*file));
}

int VbdDriver::open_storage(xenbus::XenStore& xs, const std::string& backend_path) {
  auto params = xs.read(backend_path + "/params");
  if (!params || params->empty()) {
    PVBACK_LOG(Error, "%s: no storage: \"params\" is %s", name_.c_str(), params ? "empty" : "missing");
    return params ? EINVAL : params.error();
  }
  auto mode = xs.read(backend_path + "/mode");
  const std::string m = mode ? *mode : "w";
  if (m.empty() || (m[0] != 'r' && m[0] != 'w')) {
    PVBACK_LOG(Error, "%s: invalid mode \"%s\" (r or w)", name_.c_str(), m.c_str());
    return EINVAL;
  }
  read_only_ = m[0] == 'r';
  auto type = xs.read(backend_path + "/device-type");
  if (type && *type != "disk" && *type != "cdrom") {
    PVBACK_LOG(Error, "%s: invalid device-type \"%s\" (disk or cdrom)", name_.c_str(), type->c_str());
    return EINVAL;
  }
  cdrom_ = type && *type == "cdrom";
  auto removable = xs.read_uint(backend_path + "/removable", 1);
  removable_ = removable && *removable == 1;
  auto discard = xs.read_uint(backend_path + "/discard-enable", 1);
  discard_enable_ = !discard || *discard == 1;  // libxl omits it when enabled

  auto engine = open_engine(*params);
  if (!engine) {
    PVBACK_LOG(Error, "%s: cannot open %s: %s", name_.c_str(), params->c_str(), std::strerror(engine.error()));
    storage_failure_ = "opening " + *params;  // the error node: "<errno> opening <params>"
    return engine.error();
  }
  engine_ = std::move(*engine);
  params_ = *params;
  if (options_.inject_latency.count() > 0) {
    storage::FaultPlan plan;
    plan.max_latency = options_.inject_latency;
    plan.seed = static_cast<std::uint64_t>(::getpid());
    engine_ = std::make_unique<storage::FaultEngine>(std::move(engine_), plan);
    PVBACK_LOG(Warning, "%s: testing: every storage operation waits up to %lld us first", name_.c_str(),
               static_cast<long long>(options_.inject_latency.count()));
  }
  return 0;
}

int VbdDriver::publish_disk(xenbus::XenStore& xs, xenbus::Txn txn) {
  const storage::Capabilities& caps = engine_->capabilities();
  std::uint32_t info = 0;
  if (read_only()) info |= blkif::kVdiskReadonly;  // "mode" r, or storage that refuses writes
  if (cdrom_) info |= blkif::kVdiskCdrom;
  if (removable_) info |= blkif::kVdiskRemovable;
  const std::pair<const char*, std::string> keys[] = {
      {"sectors", std::to_string(engine_->sectors())},
      {"info", std::to_string(info)},
      {"sector-size", std::to_string(caps.logical_block_size)},
      {"physical-sector-size", std::to_string(caps.physical_block_size)},
      {"feature-flush-cache", options_.flush ? "1" : "0"},
      {"feature-barrier", options_.barrier ? "1" : "0"},
  };
  for (const auto& [key, value] : keys)
    if (int e = xs.write(backend_path_ + "/" + key, value, txn)) return e;
  if (caps.discard) {
    const std::pair<const char*, std::string> discard_keys[] = {
        {"feature-discard", "1"},
        {"discard-granularity", std::to_string(caps.discard_granularity)},
        {"discard-alignment", std::to_string(caps.discard_alignment)},
        {"discard-secure", caps.secure_discard ? "1" : "0"},
    };
    for (const auto& [key, value] : discard_keys)
      if (int e = xs.write(backend_path_ + "/" + key, value, txn)) return e;
  }
  return 0;
}

int VbdDriver::advertise(xenbus::XenStore& xs, const std::string& backend_path) {
  backend_path_ = backend_path;
  if (!options_.recovery_dir.empty()) {
    // backend_path ends in <domid>/<devid> (checked by the caller).
    const auto devid_at = backend_path.rfind('/');
    const auto domid_at = backend_path.rfind('/', devid_at - 1);
    recovery_prefix_ = options_.recovery_dir + "/vbd-" + backend_path.substr(domid_at + 1, devid_at - domid_at - 1) +
                       "-" + backend_path.substr(devid_at + 1);
    // Not decided by the backend's XenBus state: a predecessor killed while it was itself
    // resuming may have left it at InitWait. The record says whether it is live and whose it is.
    resume_next_connect_ = true;
  }
  // A frontend that has read the directory (connected to a predecessor, or about to connect)
  // negotiated from it, which this process's options (the operator may have changed them since)
  // must not contradict while that connection lasts.
  if (xenbus::frontend_has_read_advertisement(xs, backend_path) && xs.read(backend_path + "/max-ring-page-order")) {
    read_advertised(xs);
    return 0;
  }
  return write_negotiable(xs);
}

VbdDriver::Advertised VbdDriver::wanted_advertisement() const {
  return {effective_max_queues(), options_.max_ring_page_order, options_.max_indirect_segments,
          options_.persistent_grants};
}

// What the frontend negotiates from: written at advertise(), and again when the operator changed
// it (at once if the frontend is not connected, else before it connects again).
int VbdDriver::write_negotiable(xenbus::XenStore& xs) {
  const Advertised a = wanted_advertisement();
  const int e = xs.transact([&](xenbus::Txn txn) -> int {
    const std::pair<const char*, std::string> keys[] = {
        {"feature-persistent", a.persistent_grants ? "1" : "0"},
        {"feature-max-indirect-segments", std::to_string(a.max_indirect_segments)},
        {"max-ring-page-order", std::to_string(a.max_ring_page_order)},
        {"multi-queue-max-queues", std::to_string(a.max_queues)},
    };
    for (const auto& [key, value] : keys)
      if (int e = xs.write(backend_path_ + "/" + key, value, txn)) return e;
    return 0;
  });
  if (e == 0) {
    advertised_ = a;
    advertised_stale_ = false;
  }
  return e;
}

// The directory's values, each within what this backend can serve; one missing or garbled (only
// Dom0 writes there) is this process's own.
void VbdDriver::read_advertised(xenbus::XenStore& xs) {
  const Advertised own = wanted_advertisement();
  auto read = [&](const char* key, unsigned max, unsigned fallback) {
    const auto v = xs.read_uint(backend_path_ + "/" + key, max);
    return v ? static_cast<unsigned>(*v) : fallback;
  };
  advertised_.max_queues = std::max(1u, read("multi-queue-max-queues", kMaxQueuesLimit, own.max_queues));
  advertised_.max_ring_page_order = read("max-ring-page-order", kMaxRingPageOrder, own.max_ring_page_order);
  advertised_.max_indirect_segments =
      read("feature-max-indirect-segments", blkif::kMaxIndirectSegments, own.max_indirect_segments);
  advertised_.persistent_grants = read("feature-persistent", 1, own.persistent_grants ? 1 : 0) == 1;
  advertised_stale_ = advertised_ != own;
  if (advertised_stale_)
    PVBACK_LOG(Notice, "%s: the connection resumed was made against other limits than this process's: those hold "
               "until the frontend connects again", name_.c_str());
}

void VbdDriver::refresh_advertisement(xenbus::XenStore& xs) {
  if (!advertised_stale_) return;
  if (const int e = write_negotiable(xs))
    PVBACK_LOG(Warning, "%s: cannot advertise the operator's new limits: %s", name_.c_str(), std::strerror(e));
  else
    PVBACK_LOG(Info, "%s: the operator's new limits advertised for the frontend's new connection", name_.c_str());
}

// The storage is opened only now: a disk the toolstack's block script refused (in use by another
// guest) is never opened (xenbus/hotplug.hpp).
int VbdDriver::prepare(xenbus::XenStore& xs, const std::string& backend_path) {
  if (!engine_) {
    if (int e = open_storage(xs, backend_path)) return e;
  }
  // Published now as well as at connect: some frontends read the geometry early.
  return xs.transact([&](xenbus::Txn txn) -> int { return publish_disk(xs, txn); });
}

QueueConfig VbdDriver::queue_config(const FrontendRing& ring, unsigned index) const {
  QueueConfig c;
  c.name = negotiated_.queues > 1 ? name_ + " q" + std::to_string(index) : name_;
  c.index = index;
  c.frontend_domid = frontend_domid_;
  c.abi = negotiated_.abi;
  c.ring_refs = ring.refs;
  c.remote_port = ring.event_channel;
  c.data_path = options_.data_path;
  if (!recovery_prefix_.empty()) c.recovery_path = recovery_prefix_ + "-q" + std::to_string(index);
  c.resume = resume_next_connect_;
  if (c.resume) c.bind_patience = grant::kSuccessorBindPatience;
  c.persistent_grants = negotiated_.persistent_grants;
  c.max_persistent_grants = options_.max_persistent_grants;
  c.persistent_idle_expiry = options_.persistent_idle_expiry;
  c.poll_max = options_.poll_max;
  c.submit_batch = options_.submit_batch;
  c.max_indirect_segments = advertised_.max_indirect_segments;  // what the frontend was told
  c.flush_enabled = options_.flush;
  c.barrier_enabled = options_.barrier;
  c.discard_enabled = engine_->capabilities().discard;
  if (!c.recovery_path.empty()) {
    // pvback-blk's own storage daemon died: the requests it failed are not the guest's errors. The
    // process ends as a crash would (EX_TEMPFAIL, 75), the daemon with it; the supervisor's
    // successor starts a new daemon and executes them again from the recovery record, so the
    // guest sees a pause.
    c.on_storage_lost = [name = name_, storage = engine_->describe()](int error) {
      PVBACK_LOG(Error, "%s: its storage is gone (%s: %s): exiting, so that a successor executes the requests in "
                 "flight again from the recovery record", name.c_str(), storage.c_str(), std::strerror(error));
      std::_Exit(75);
    };
  }
  return c;
}

int VbdDriver::connect(xenbus::XenStore& xs, const std::string& frontend_path) {
  disconnect();
  if (!engine_) return ENODEV;
  negotiated_ = Negotiated{};
  FrontendLimits limits;
  // What the backend's directory told the frontend, not the options: the operator may have changed
  // those since (they are advertised before the frontend's next connection).
  limits.max_queues = advertised_.max_queues;
  limits.max_ring_page_order = advertised_.max_ring_page_order;
  // Persistent grants are guest pages kept mapped: a storage opened with O_DIRECT cannot serve
  // into them where the platform forbids it (a PV dom0: grant::Platform::direct_io_into_mappings),
  // whatever the directory says (a successor whose options differ from what was advertised).
  const bool persistent_safe = !engine_->capabilities().direct || platform_.direct_io_into_mappings();
  if (advertised_.persistent_grants && !persistent_safe)
    PVBACK_LOG(Warning, "%s: not using persistent grants: the disk is open with O_DIRECT, which this dom0 cannot do "
               "into mapped grants", name_.c_str());
  limits.persistent_offered = advertised_.persistent_grants && persistent_safe;
  auto request = read_frontend([&](const std::string& key) { return xs.read(frontend_path + "/" + key); }, limits);
  if (!request) {
    PVBACK_LOG(Error, "%s: frontend %s: %s", name_.c_str(), frontend_path.c_str(), request.error().why.c_str());
    return request.error().error;
  }
  negotiated_.abi = request->abi;
  negotiated_.queues = request->queues;
  negotiated_.ring_page_order = request->ring_page_order;
  negotiated_.persistent_grants = request->persistent_grants;
  std::vector<QueueConfig> configs;
  for (unsigned i = 0; i < negotiated_.queues; ++i) configs.push_back(queue_config(request->rings[i], i));
  resume_next_connect_ = false;  // any later connect is a new connection of the frontend
  const unsigned generation = ++generation_;
  if (!serves_in_process()) {
    plane_configs_ = std::move(configs);
    plane_restarts_ = 0;
    restart_limit_.reset();
    // A successor of a control part that died finds its data plane still serving: it adopts it.
    // A new connection of the frontend stops one left serving an earlier connection (it holds
    // the storage's lock).
    const bool resume = plane_configs_.front().resume;
    // A predecessor of this process paused the device and was stopped (SIGTERM, an upgrade): the
    // pause holds (a data plane it left serving, if adopted, says so itself).
    if (resume && !paused_ && ::access(pause_marker_path().c_str(), F_OK) == 0) {
      if (options_.pausable) {
        paused_ = true;
        paused_since_ = std::chrono::steady_clock::now();
        PVBACK_LOG(Notice, "%s: paused by the operator before this process started: its data plane starts paused",
                   name_.c_str());
      } else {
        PVBACK_LOG(Warning, "%s: paused by the operator under the host daemon, which no longer serves it: not "
                   "paused (nothing here could resume it)", name_.c_str());
        ::unlink(pause_marker_path().c_str());
      }
    }
    // One connected to the storage daemon of a dead predecessor (the daemon died with it) cannot
    // be: it is stopped, and the new one resumes its rings with this process's daemon.
    const bool adoptable = data_plane_outlives_control();
    if (!resume || !adoptable) stop_orphan_data_plane(adoption_path());
    if (int e = make_cgroup()) {
      disconnect();
      return e;
    }
    if (!(resume && adoptable && adopt_data_plane())) {
      if (int e = make_stats(); e != 0 || (e = launch_data_plane(false)) != 0) {
        disconnect();
        return e;
      }
    }
  } else {
    if (int e = make_stats()) return e;
    auto on_fatal = [this, generation](int error, const std::string& reason) {
      fatal_generation_.store(generation);
      on_fatal_(error, reason);
    };
    for (unsigned i = 0; i < negotiated_.queues; ++i) {
      auto q = Queue::create(platform_, *engine_, std::move(configs[i]), *stats_[i], on_fatal);
      if (!q) {
        PVBACK_LOG(Error, "%s: queue %u: cannot map the ring or bind the event channel: %s", name_.c_str(), i,
                   std::strerror(q.error()));
        disconnect();
        return q.error();
      }
      queues_.push_back(std::move(*q));
    }
  }
  if (int e = xs.transact([&](xenbus::Txn txn) { return publish_disk(xs, txn); })) {
    disconnect();
    return e;
  }
  for (auto& q : queues_) threads_.emplace_back([queue = q.get()] { queue->run(); });
  PVBACK_LOG(Info, "%s: connected: %u queue(s), ring order %u, %s ABI, persistent grants %s, %s data path%s",
             name_.c_str(), negotiated_.queues, negotiated_.ring_page_order,
             negotiated_.abi == Abi::Native ? "native" : negotiated_.abi == Abi::X86_32 ? "x86_32" : "x86_64",
             negotiated_.persistent_grants ? "on" : "off",
             negotiated_.persistent_grants ? "persistent-map" : options_.data_path == DataPath::Map ? "map" : "copy",
             plane_.running() ? ", in a data-plane process" : "");
  return 0;
}

const storage::Engine* VbdDriver::base_engine() const {
  const auto* fault = dynamic_cast<const storage::FaultEngine*>(engine_.get());
  return fault != nullptr ? &fault->inner() : engine_.get();
}

storage::Engine* VbdDriver::base_engine() {
  auto* fault = dynamic_cast<storage::FaultEngine*>(engine_.get());
  return fault != nullptr ? &fault->inner() : engine_.get();
}

// A file is given to the data plane open and locked; the data plane connects to an NBD server
// (an image's qemu-storage-daemon of this process, or one named by its URI, over TLS too: every
// connection, with its handshake, is made while it may still read the certificates or key) or to
// the RBD image's cluster before it confines itself.
bool VbdDriver::serves_in_process() const { return !options_.data_plane_process; }

int VbdDriver::make_stats() {
  auto stats = SharedQueueStats::create(negotiated_.queues, kSharedStatsName);
  if (!stats) {
    PVBACK_LOG(Error, "%s: cannot create the statistics memory: %s", name_.c_str(), std::strerror(stats.error()));
    return stats.error();
  }
  use_stats(std::move(*stats));
  return 0;
}

void VbdDriver::use_stats(SharedQueueStats stats) {
  shared_stats_ = std::move(stats);
  stats_.clear();
  for (unsigned i = 0; i < shared_stats_.size(); ++i) stats_.push_back(&shared_stats_.at(i));
}

// Reports a fatal error of the current connection as a queue of it would.
void VbdDriver::fail_connection(int error, const std::string& reason) {
  fatal_generation_.store(generation_.load());
  on_fatal_(error, reason);
}

void VbdDriver::disconnect() {
  const bool had_connection = !queues_.empty() || plane_.running() || !plane_configs_.empty();
  if (plane_.running()) {
    const int status = plane_.stop();
    if (status != 0) PVBACK_LOG(Warning, "%s: the data plane %s", name_.c_str(), ::pvback::plane::describe_wait_status(status).c_str());
  }
  // One left serving keeps its control group (or scope) and its listening socket for the successor.
  if (!left_serving_) cgroup_.remove();  // an adopted data plane, not our child, may take a moment to leave it
  abandon_operations();
  // Its listening socket goes with it (not at the connect() of a successor that may adopt one).
  if (!plane_configs_.empty() && !left_serving_)
    if (const std::string path = adoption_path(); !path.empty()) ::unlink(path.c_str());
  plane_configs_.clear();
  for (auto& q : queues_) q->stop();
  for (auto& t : threads_) t.join();
  threads_.clear();
  queues_.clear();  // waits for in-flight I/O and unmaps everything
  // The frontend closed, the device failed or went: its rings will not be resumed, and a record
  // left live could be taken for a new ring that happens to reuse the same grant references. Only
  // this process ending (SIGTERM, a lost XenStore) keeps them for a successor.
  if (had_connection && !keep_recovery_records_) remove_recovery_records();
  for (auto* s : stats_) {
    add_counters(past_, *s, kQueueStatsFields);
    add_counters(past_, *s, kKernelStatsFields);
  }
  stats_.clear();
  shared_stats_ = SharedQueueStats();
  // Gauges of ended connections are not carried over.
  past_.in_flight.set(0);
  past_.persistent_grants.set(0);
}

bool VbdDriver::data_plane_outlives_control() const {
  const auto* nbd = dynamic_cast<const storage::NbdEngine*>(base_engine());
  return nbd == nullptr || nbd->storage_daemon() == 0;
}

bool VbdDriver::leave_data_plane() {
  // An operator's pause or restart under way is ended by disconnect() with an answer that says the
  // device is not paused (restarted): the data plane stops, as that answer says, rather than serve
  // on paused (or half-stopped) for a successor.
  if (!keep_recovery_records_ || operation_.kind != Operation::None || restarting_.active() ||
      !data_plane_outlives_control())
    return false;
  left_serving_ = ::pvback::plane::leave_for_successor(plane_, options_.on_stop, cgroup_.own_unit(),
                                                       options_.orphan_timeout);
  return left_serving_;
}

void VbdDriver::remove_recovery_records() {
  // A data plane a dead control part left serving this device stops first, then the control group
  // that predecessor made goes (with no recovery directory its data plane stopped with it).
  if (!plane_.running()) {
    if (!recovery_prefix_.empty()) stop_orphan_data_plane(adoption_path());
    cgroup_.remove_orphan();
  }
  if (recovery_prefix_.empty()) return;
  ::unlink(adoption_path().c_str());
  if (const std::string path = lock_owner_path(); !path.empty()) ::unlink(path.c_str());
  ::unlink(pause_marker_path().c_str());  // a data plane of a new connection writes it again while paused
  lock_owner_.clear();
  // One record per queue a connection ever had: "<prefix>-q<N>".
  for (unsigned i = 0; i < 256; ++i) {
    const std::string path = recovery_prefix_ + "-q" + std::to_string(i);
    if (::unlink(path.c_str()) != 0 && errno == ENOENT && i >= effective_max_queues()) break;
  }
}

bool VbdDriver::check_resize(xenbus::XenStore& xs) {
  if (!engine_ || !engine_->refresh_size()) return false;
  if (plane_.running()) {
    // The data plane takes the new size before the guest hears of it.
    auto done = plane_.request({static_cast<std::uint32_t>(plane::Msg::Resize), 0, {}},
                               static_cast<std::uint32_t>(plane::Msg::Resized), std::chrono::milliseconds(1000));
    if (const int e = done ? done->error : done.error())
      PVBACK_LOG(Warning, "%s: the data plane did not take the new size: %s", name_.c_str(), std::strerror(e));
    // What it said meanwhile (a Paused, a Fatal) is handled now: its fd will not tell of it.
    while (plane_.running() && plane_.has_unread()) on_data_plane_event();
  }
  PVBACK_LOG(Notice, "%s: storage size changed to %llu sectors", name_.c_str(),
             static_cast<unsigned long long>(engine_->sectors()));
  const int rc = xs.transact([&](xenbus::Txn txn) -> int {
    if (int e = xs.write(backend_path_ + "/sectors", std::to_string(engine_->sectors()), txn)) return e;
    if (!connected()) return 0;
    // Rewriting the unchanged state fires the frontend's watch on it; that is how Linux
    // frontends learn about a resize.
    auto state = xs.read(backend_path_ + "/state", txn);
    if (!state) return state.error();
    return xs.write(backend_path_ + "/state", *state, txn);
  });
  if (rc != 0) PVBACK_LOG(Error, "%s: cannot publish the new size: %s", name_.c_str(), std::strerror(rc));
  return true;
}

}  // namespace pvback::blkback
