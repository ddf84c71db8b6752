// A scripted blkback for the blkfront tests: a thread acting as Dom0 that advertises chosen
// features, records what the frontend wrote, and (optionally) serves requests from a RAM disk
// through the simulated grant tables and event channels.
#pragma once
#include <poll.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "grant/platform.hpp"
#include "ring/blkif.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::blkfront::testing {

struct BackendConfig {
  enum class Mode { Serve, Silent, BadId };
  Mode mode = Mode::Serve;
  bool reach_init_wait = true;
  unsigned max_ring_page_order = 4;   // written only if > 0 ... or always (see write_features)
  unsigned max_queues = 4;
  unsigned max_indirect_segments = 256;
  bool persistent = true;
  bool flush = true;
  bool barrier = true;
  bool discard = true;
  std::uint64_t sectors = 8192;  // 4 MiB
  std::uint32_t sector_size = 512;
};

struct SeenRequest {
  std::uint8_t operation = 0;
  std::uint8_t indirect_op = 0;
  std::uint16_t nr_segments = 0;
  std::uint64_t sector = 0;
  std::vector<blkif::Segment> segs;
};

class ScriptedBackend {
 public:
  ScriptedBackend(grant::PlatformConfig dom0, std::string backend_path, std::string frontend_path, DomId frontend_id,
                  BackendConfig config)
      : platform_(std::move(dom0)),
        be_(std::move(backend_path)),
        fe_(std::move(frontend_path)),
        fe_id_(frontend_id),
        config_(config),
        disk_(config.sectors * 512) {
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedBackend() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

  // Hot unplug: the backend goes Closing on its own.
  void go_closing() { request_closing_ = true; }

  std::map<std::string, std::string> frontend_keys() {
    std::lock_guard lock(mutex_);
    return keys_;
  }
  std::vector<SeenRequest> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  std::vector<std::byte> disk() {
    std::lock_guard lock(mutex_);
    return disk_;
  }
  bool connected() const { return connected_; }
  bool finished() const { return finished_; }
  std::string error() {
    std::lock_guard lock(mutex_);
    return error_;
  }

 private:
  using Ring = std::variant<blkif::x86_64::BackRing, blkif::x86_32::BackRing>;
  struct Q {
    grant::Mapping map;
    Ring ring;
    std::unique_ptr<grant::EventChannels> events;
    grant::BoundPort port;
  };

  void fail(const std::string& what) {
    std::lock_guard lock(mutex_);
    if (error_.empty()) error_ = what;
  }

  static void dump(xenbus::XenStore& xs, const std::string& path, const std::string& rel,
                   std::map<std::string, std::string>& out) {
    auto dir = xs.directory(path);
    if (!dir) return;
    for (const auto& name : *dir) {
      const std::string p = path + "/" + name;
      const std::string r = rel.empty() ? name : rel + "/" + name;
      if (auto v = xs.read(p); v && !v->empty()) out[r] = *v;
      dump(xs, p, r, out);
    }
  }

  std::string state_of(xenbus::XenStore& xs, const std::string& path) { return xs.read(path + "/state").value_or(""); }

  void run();
  bool setup_queues(xenbus::XenStore& xs);
  template <class R>
  void serve(Q& q, R& ring);
  std::int16_t do_request(const blkif::native::Request& req, SeenRequest& seen);

  grant::Platform platform_;
  std::string be_, fe_;
  DomId fe_id_;
  BackendConfig config_;
  std::unique_ptr<grant::GrantMapper> mapper_;
  std::vector<Q> queues_;
  std::mutex mutex_;
  std::map<std::string, std::string> keys_;
  std::vector<SeenRequest> seen_;
  std::vector<std::byte> disk_;
  std::string error_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> request_closing_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

inline void ScriptedBackend::run() {
  auto xso = xenbus::XenStore::open(platform_.config().xenstore_path());
  if (!xso) return fail("backend: open XenStore");
  auto& xs = *xso;
  auto w = [&](const std::string& key, const std::string& value) { xs.write(be_ + "/" + key, value); };
  w("max-ring-page-order", std::to_string(config_.max_ring_page_order));
  w("multi-queue-max-queues", std::to_string(config_.max_queues));
  w("feature-max-indirect-segments", std::to_string(config_.max_indirect_segments));
  w("feature-persistent", config_.persistent ? "1" : "0");
  w("feature-flush-cache", config_.flush ? "1" : "0");
  w("feature-barrier", config_.barrier ? "1" : "0");
  w("feature-discard", config_.discard ? "1" : "0");
  if (config_.discard) {
    w("discard-granularity", "4096");
    w("discard-alignment", "0");
    w("discard-secure", "1");
  }
  xs.watch(fe_ + "/state", "fe");
  if (!config_.reach_init_wait) {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return;
  }
  w("state", "2");
  // Wait for Initialised.
  while (!stop_ && state_of(xs, fe_) != "3") {
    pollfd p{xs.fd(), POLLIN, 0};
    ::poll(&p, 1, 50);
    while (xs.read_watch()) {
    }
  }
  if (stop_) return;
  {
    std::map<std::string, std::string> keys;
    dump(xs, fe_, "", keys);
    std::lock_guard lock(mutex_);
    keys_ = std::move(keys);
  }
  if (!setup_queues(xs)) return;
  w("sectors", std::to_string(config_.sectors));
  w("info", "0");
  w("sector-size", std::to_string(config_.sector_size));
  w("physical-sector-size", "4096");
  w("state", "4");
  connected_ = true;
  bool closing = false;
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({xs.fd(), POLLIN, 0});
    for (auto& q : queues_) fds.push_back({q.events->fd(), POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    if (request_closing_.exchange(false)) {
      w("state", "5");
      closing = true;
    }
    while (xs.read_watch()) {
    }
    const std::string fs = state_of(xs, fe_);
    if (fs == "5" || fs == "6" || fs.empty()) {
      queues_.clear();  // unmap, unbind
      if (!closing) w("state", "5");
      closing = true;
      if (fs != "5") {
        w("state", "6");
        break;
      }
      continue;
    }
    if (closing) continue;
    for (std::size_t i = 0; i < queues_.size(); ++i) {
      if (fds[i + 1].revents & POLLIN)
        while (auto port = queues_[i].events->pending()) queues_[i].events->unmask(*port);
      std::visit([&](auto& r) { serve(queues_[i], r); }, queues_[i].ring);
    }
  }
  connected_ = false;
  finished_ = true;
}

inline bool ScriptedBackend::setup_queues(xenbus::XenStore& xs) {
  mapper_ = platform_.open_mapper();
  auto keys = frontend_keys();
  const unsigned nq = keys.contains("multi-queue-num-queues") ? std::stoul(keys["multi-queue-num-queues"]) : 1;
  const unsigned order = keys.contains("ring-page-order") ? std::stoul(keys["ring-page-order"]) : 0;
  const bool x32 = keys["protocol"] == "x86_32-abi";
  queues_.resize(nq);
  for (unsigned i = 0; i < nq; ++i) {
    const std::string prefix = nq > 1 ? "queue-" + std::to_string(i) + "/" : "";
    std::vector<GrantRef> refs;
    if (order == 0) {
      refs.push_back(static_cast<GrantRef>(std::stoul(keys[prefix + "ring-ref"])));
    } else {
      for (unsigned r = 0; r < (1u << order); ++r)
        refs.push_back(static_cast<GrantRef>(std::stoul(keys[prefix + "ring-ref" + std::to_string(r)])));
    }
    auto map = mapper_->map(fe_id_, refs, Access::ReadWrite);
    if (!map) {
      fail("backend: map ring");
      return false;
    }
    Q& q = queues_[i];
    q.map = std::move(*map);
    if (x32)
      q.ring = *blkif::x86_32::BackRing::attach(q.map.data(), refs.size());
    else
      q.ring = *blkif::x86_64::BackRing::attach(q.map.data(), refs.size());
    q.events = platform_.open_event_channels();
    auto port = q.events->bind_interdomain(fe_id_, static_cast<EvtchnPort>(std::stoul(keys[prefix + "event-channel"])));
    if (!port) {
      fail("backend: bind");
      return false;
    }
    q.port = grant::BoundPort(*q.events, *port);
  }
  (void)xs;
  return true;
}

template <class R>
void ScriptedBackend::serve(Q& q, R& ring) {
  for (;;) {
    auto more = ring.final_check_for_requests();
    if (!more) {
      fail("backend: ring overflow");
      return;
    }
    if (!*more) return;
    while (*ring.unconsumed_requests() > 0) {
      auto req = blkif::to_native(ring.next_request());
      if (config_.mode == BackendConfig::Mode::Silent) continue;
      SeenRequest seen;
      std::int16_t status = do_request(req, seen);
      {
        std::lock_guard lock(mutex_);
        seen_.push_back(std::move(seen));
      }
      auto rsp = blkif::make_response(req, status);
      if (config_.mode == BackendConfig::Mode::BadId) rsp.id = 9999;
      if constexpr (std::is_same_v<R, blkif::x86_32::BackRing>)
        ring.put_response(blkif::to_x86_32(rsp));
      else
        ring.put_response(blkif::to_x86_64(rsp));
    }
    if (ring.push_responses_and_check_notify()) q.port.notify();
  }
}

inline std::int16_t ScriptedBackend::do_request(const blkif::native::Request& req, SeenRequest& seen) {
  seen.operation = req.operation();
  std::uint8_t op = req.operation();
  std::uint64_t sector = 0;
  if (op == blkif::kOpFlushDiskcache || op == blkif::kOpDiscard) {
    seen.sector = op == blkif::kOpDiscard ? req.discard.sector_number : 0;
    if (op == blkif::kOpDiscard) {
      std::lock_guard lock(mutex_);
      if (req.discard.sector_number + req.discard.nr_sectors > config_.sectors) return blkif::kRspError;
      std::memset(disk_.data() + req.discard.sector_number * 512, 0, req.discard.nr_sectors * 512);
    }
    return blkif::kRspOkay;
  }
  if (op == blkif::kOpIndirect) {
    seen.indirect_op = req.indirect.indirect_op;
    seen.nr_segments = req.indirect.nr_segments;
    sector = req.indirect.sector_number;
    const unsigned pages = (seen.nr_segments + 511) / 512;
    if (seen.nr_segments == 0 || pages > blkif::kMaxIndirectPagesPerRequest) return blkif::kRspError;
    auto map = mapper_->map(fe_id_, std::span(req.indirect.indirect_grefs, pages), Access::ReadOnly);
    if (!map) return blkif::kRspError;
    seen.segs.resize(seen.nr_segments);
    std::memcpy(seen.segs.data(), map->data(), seen.nr_segments * sizeof(blkif::Segment));
    op = req.indirect.indirect_op;
  } else if (op == blkif::kOpRead || op == blkif::kOpWrite || op == blkif::kOpWriteBarrier) {
    seen.nr_segments = req.rw.nr_segments;
    sector = req.rw.sector_number;
    if (seen.nr_segments > blkif::kMaxSegmentsPerRequest) return blkif::kRspError;
    seen.segs.assign(req.rw.seg, req.rw.seg + seen.nr_segments);
    if (op == blkif::kOpWriteBarrier) op = blkif::kOpWrite;
  } else {
    return blkif::kRspEopnotsupp;
  }
  seen.sector = sector;
  std::uint64_t pos = sector * 512;
  for (const auto& seg : seen.segs) {
    if (seg.first_sect > seg.last_sect || seg.last_sect > 7) return blkif::kRspError;
    const std::size_t len = (seg.last_sect - seg.first_sect + 1) * 512u;
    if (pos + len > disk_.size()) return blkif::kRspError;
    const GrantRef ref = seg.gref;
    auto map = mapper_->map(fe_id_, std::span(&ref, 1), op == blkif::kOpRead ? Access::ReadWrite : Access::ReadOnly);
    if (!map) return blkif::kRspError;
    std::byte* page = static_cast<std::byte*>(map->data()) + seg.first_sect * 512u;
    std::lock_guard lock(mutex_);
    if (op == blkif::kOpRead)
      std::memcpy(page, disk_.data() + pos, len);
    else
      std::memcpy(disk_.data() + pos, page, len);
    pos += len;
  }
  return blkif::kRspOkay;
}

}  // namespace pvback::blkfront::testing
