// A scripted netback for the netfront tests: a thread acting as Dom0 that advertises chosen
// features, records the keys the frontend wrote, maps its rings, reassembles and records every TX
// frame (answering each request with a chosen status), answers control-ring requests, and lets the
// test inject hand-made RX responses (well formed or not) from its own thread.
#pragma once
#include <poll.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grant/platform.hpp"
#include "ring/netif.hpp"
#include "sim/toolstack/nodes.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::netfront::testing {

struct BackendConfig {
  bool reach_init_wait = true;
  unsigned max_queues = 4;   // 0: no multi-queue-max-queues key
  bool split = true;
  bool ctrl_ring = true;
  bool rx_copy = true;
  bool sg = true;
  bool gso_tcpv4 = true;
  bool gso_tcpv6 = true;
  bool ipv6_csum = true;
  bool multicast_control = true;
  bool dynamic_multicast_control = false;
  bool xdp_headroom = false;
  std::int16_t tx_status = netif::kRspOkay;  // answer to every TX data request
  std::uint32_t ctrl_status = netif::kCtrlStatusSuccess;
  std::uint32_t ctrl_data = 0;               // data of every control response
  bool ctrl_bad_id = false;
  bool serve_tx = true;                      // false: never consume TX requests (ring fills up)
};

struct SeenTxFrame {
  unsigned queue = 0;
  std::vector<netif::TxRequest> slots;     // data slots, as read
  std::vector<netif::ExtraInfo> extras;
  std::vector<std::byte> data;             // reassembled
  bool size_mismatch = false;              // first slot's size != sum of slot sizes
};

struct SeenCtrl {
  netif::CtrlRequest req{};
  std::vector<std::uint8_t> payload;       // key / mapping bytes read through data[0]
};

// One RX ring slot to inject: data (written at `offset` of the posted page, if it fits) and a
// response, or an extra-info segment.
struct RxSlot {
  bool is_extra = false;
  netif::ExtraInfo extra{};
  std::uint16_t offset = 0;
  std::uint16_t flags = 0;
  std::optional<std::int16_t> status;      // default: data.size()
  std::vector<std::byte> data;
};

class ScriptedNetback {
 public:
  ScriptedNetback(grant::PlatformConfig dom0, std::string backend_path, std::string frontend_path, DomId frontend_id,
                  BackendConfig config)
      : platform_(std::move(dom0)),
        be_(std::move(backend_path)),
        fe_(std::move(frontend_path)),
        fe_id_(frontend_id),
        config_(config) {
    thread_ = std::thread([this] { run(); });
  }
  ~ScriptedNetback() { stop(); }

  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  void go_closing() { request_closing_ = true; }

  std::map<std::string, std::string> frontend_keys() {
    std::lock_guard lock(mutex_);
    return keys_;
  }
  std::vector<SeenTxFrame> tx_frames() {
    std::lock_guard lock(mutex_);
    return tx_;
  }
  std::vector<SeenCtrl> ctrl_requests() {
    std::lock_guard lock(mutex_);
    return ctrl_;
  }
  std::uint32_t tx_requests_seen() const { return tx_requests_; }
  bool connected() const { return connected_; }
  bool finished() const { return finished_; }
  std::string error() {
    std::lock_guard lock(mutex_);
    return error_;
  }
  // RX requests the frontend posted and we have not used yet.
  std::uint32_t rx_requests_pending(unsigned queue) {
    std::lock_guard lock(mutex_);
    if (queue >= queues_.size()) return 0;
    return queues_[queue].rx.unconsumed_requests().value_or(0);
  }

  // Writes `slots` as consecutive RX responses on `queue` and notifies. False if the frontend has
  // not posted enough requests (nothing is written then).
  bool inject(unsigned queue, const std::vector<RxSlot>& slots);
  // Sets the RX ring's shared rsp_prod (raw), e.g. to claim more responses than the ring holds.
  void set_rx_rsp_prod(unsigned queue, std::uint32_t value);
  std::uint32_t rx_rsp_prod_pvt(unsigned queue) {
    std::lock_guard lock(mutex_);
    return queues_.at(queue).rx.rsp_prod_pvt();
  }

 private:
  struct Q {
    grant::Mapping tx_map, rx_map;
    netif::TxRing::Back tx;
    netif::RxRing::Back rx;
    std::unique_ptr<grant::EventChannels> events;
    grant::BoundPort tx_port, rx_port;  // rx_port unset when not split
    grant::BoundPort& rx_notify_port() { return rx_port ? rx_port : tx_port; }
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
  bool setup();
  void serve_tx(unsigned qi);
  void serve_ctrl();

  grant::Platform platform_;
  std::string be_, fe_;
  DomId fe_id_;
  BackendConfig config_;
  std::unique_ptr<grant::GrantMapper> mapper_;
  std::vector<Q> queues_;
  grant::Mapping ctrl_map_;
  netif::CtrlRing::Back ctrl_ring_;
  std::unique_ptr<grant::EventChannels> ctrl_events_;
  grant::BoundPort ctrl_port_;
  std::mutex mutex_;
  std::map<std::string, std::string> keys_;
  std::vector<SeenTxFrame> tx_;
  std::vector<SeenCtrl> ctrl_;
  std::string error_;
  std::atomic<std::uint32_t> tx_requests_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> request_closing_{false};
  std::atomic<bool> connected_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

inline void ScriptedNetback::run() {
  auto xso = xenbus::XenStore::open(platform_.config().xenstore_path());
  if (!xso) return fail("backend: open XenStore");
  auto& xs = *xso;
  auto w = [&](const std::string& key, const std::string& value) { xs.write(be_ + "/" + key, value); };
  auto b = [](bool on) { return std::string(on ? "1" : "0"); };
  if (config_.max_queues > 0) w("multi-queue-max-queues", std::to_string(config_.max_queues));
  w("feature-split-event-channels", b(config_.split));
  w("feature-ctrl-ring", b(config_.ctrl_ring));
  w("feature-rx-copy", b(config_.rx_copy));
  w("feature-sg", b(config_.sg));
  w("feature-gso-tcpv4", b(config_.gso_tcpv4));
  w("feature-gso-tcpv6", b(config_.gso_tcpv6));
  w("feature-ipv6-csum-offload", b(config_.ipv6_csum));
  w("feature-multicast-control", b(config_.multicast_control));
  w("feature-dynamic-multicast-control", b(config_.dynamic_multicast_control));
  if (config_.xdp_headroom) w("feature-xdp-headroom", "1");
  xs.watch(fe_ + "/state", "fe");
  if (!config_.reach_init_wait) {
    while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return;
  }
  w("state", "2");
  for (;;) {
    if (stop_) return;
    const std::string s = state_of(xs, fe_);
    if (s == "3" || s == "4") break;
    pollfd p{xs.fd(), POLLIN, 0};
    ::poll(&p, 1, 50);
    while (xs.read_watch()) {
    }
  }
  {
    std::map<std::string, std::string> keys;
    dump(xs, fe_, "", keys);
    std::lock_guard lock(mutex_);
    keys_ = std::move(keys);
  }
  if (!setup()) return;
  w("state", "4");
  connected_ = true;
  bool closing = false;
  while (!stop_) {
    std::vector<pollfd> fds;
    fds.push_back({xs.fd(), POLLIN, 0});
    {
      std::lock_guard lock(mutex_);
      for (auto& q : queues_) fds.push_back({q.events->fd(), POLLIN, 0});
      if (ctrl_events_) fds.push_back({ctrl_events_->fd(), POLLIN, 0});
    }
    ::poll(fds.data(), fds.size(), 20);
    if (request_closing_.exchange(false)) {
      w("state", "5");
      closing = true;
    }
    while (xs.read_watch()) {
    }
    const std::string fs = state_of(xs, fe_);
    if (fs == "5" || fs == "6" || fs.empty()) {
      {
        std::lock_guard lock(mutex_);
        queues_.clear();
        ctrl_port_.reset();
        ctrl_events_.reset();
        ctrl_map_.reset();
      }
      connected_ = false;
      if (!closing) w("state", "5");
      closing = true;
      if (fs != "5") {
        w("state", "6");
        break;
      }
      continue;
    }
    if (closing) continue;
    std::lock_guard lock(mutex_);
    for (unsigned i = 0; i < queues_.size(); ++i) {
      while (auto port = queues_[i].events->pending()) queues_[i].events->unmask(*port);
      if (config_.serve_tx) serve_tx(i);
    }
    if (ctrl_events_) {
      while (auto port = ctrl_events_->pending()) ctrl_events_->unmask(*port);
      serve_ctrl();
    }
  }
  connected_ = false;
  finished_ = true;
}

inline bool ScriptedNetback::setup() {
  mapper_ = platform_.open_mapper();
  auto keys = frontend_keys();
  auto num = [&](const std::string& k) -> std::uint32_t {
    auto it = keys.find(k);
    return it == keys.end() ? 0 : static_cast<std::uint32_t>(std::stoul(it->second));
  };
  const unsigned nq = keys.contains("multi-queue-num-queues") ? num("multi-queue-num-queues") : 1;
  std::lock_guard lock(mutex_);
  queues_.resize(nq);
  for (unsigned i = 0; i < nq; ++i) {
    const std::string p = nq > 1 ? "queue-" + std::to_string(i) + "/" : "";
    Q& q = queues_[i];
    GrantRef txr = num(p + "tx-ring-ref"), rxr = num(p + "rx-ring-ref");
    auto tm = mapper_->map(fe_id_, std::span(&txr, 1), Access::ReadWrite);
    auto rm = mapper_->map(fe_id_, std::span(&rxr, 1), Access::ReadWrite);
    if (!tm || !rm) {
      error_ = "backend: map rings";
      return false;
    }
    q.tx_map = std::move(*tm);
    q.rx_map = std::move(*rm);
    q.tx = *netif::TxRing::Back::attach(q.tx_map.data(), 1);
    q.rx = *netif::RxRing::Back::attach(q.rx_map.data(), 1);
    q.events = platform_.open_event_channels();
    if (keys.contains(p + "event-channel-tx")) {
      auto t = q.events->bind_interdomain(fe_id_, num(p + "event-channel-tx"));
      auto r = q.events->bind_interdomain(fe_id_, num(p + "event-channel-rx"));
      if (!t || !r) {
        error_ = "backend: bind split";
        return false;
      }
      q.tx_port = grant::BoundPort(*q.events, *t);
      q.rx_port = grant::BoundPort(*q.events, *r);
    } else {
      auto t = q.events->bind_interdomain(fe_id_, num(p + "event-channel"));
      if (!t) {
        error_ = "backend: bind";
        return false;
      }
      q.tx_port = grant::BoundPort(*q.events, *t);
    }
  }
  if (keys.contains("ctrl-ring-ref")) {
    GrantRef cr = num("ctrl-ring-ref");
    auto cm = mapper_->map(fe_id_, std::span(&cr, 1), Access::ReadWrite);
    if (!cm) {
      error_ = "backend: map ctrl ring";
      return false;
    }
    ctrl_map_ = std::move(*cm);
    ctrl_ring_ = *netif::CtrlRing::Back::attach(ctrl_map_.data(), 1);
    ctrl_events_ = platform_.open_event_channels();
    auto port = ctrl_events_->bind_interdomain(fe_id_, num("event-channel-ctrl"));
    if (!port) {
      error_ = "backend: bind ctrl";
      return false;
    }
    ctrl_port_ = grant::BoundPort(*ctrl_events_, *port);
  }
  return true;
}

// Called with mutex_ held.
inline void ScriptedNetback::serve_tx(unsigned qi) {
  Q& q = queues_[qi];
  for (;;) {
    auto more = q.tx.final_check_for_requests();
    if (!more) {
      if (error_.empty()) error_ = "backend: tx overflow";
      return;
    }
    if (!*more) return;
    while (*q.tx.unconsumed_requests() > 0) {
      SeenTxFrame f;
      f.queue = qi;
      netif::TxRequest first = q.tx.next_request();
      ++tx_requests_;
      f.slots.push_back(first);
      std::uint32_t extra_count = 0;
      if (first.flags & netif::kTxfExtraInfo) {
        bool more_extra = true;
        while (more_extra && *q.tx.unconsumed_requests() > 0) {
          auto ex = q.tx.next_request<netif::ExtraInfo>();
          ++tx_requests_;
          f.extras.push_back(ex);
          ++extra_count;
          more_extra = ex.flags & netif::kExtraFlagMore;
        }
      }
      netif::TxRequest cur = first;
      while ((cur.flags & netif::kTxfMoreData) && *q.tx.unconsumed_requests() > 0) {
        cur = q.tx.next_request();
        ++tx_requests_;
        f.slots.push_back(cur);
      }
      // Reassemble: the first slot's bytes are its size minus the later slots' sizes.
      std::uint32_t later = 0;
      for (std::size_t i = 1; i < f.slots.size(); ++i) later += f.slots[i].size;
      if (later > first.size) f.size_mismatch = true;
      for (std::size_t i = 0; i < f.slots.size() && !f.size_mismatch; ++i) {
        const auto& s = f.slots[i];
        const std::uint32_t n = i == 0 ? first.size - later : s.size;
        if (n == 0) continue;
        if (s.offset + n > kXenPageSize) {
          f.size_mismatch = true;
          break;
        }
        GrantRef ref = s.gref;
        auto m = mapper_->map(fe_id_, std::span(&ref, 1), Access::ReadOnly);
        if (!m) {
          f.size_mismatch = true;
          break;
        }
        const std::byte* src = static_cast<const std::byte*>(m->data()) + s.offset;
        f.data.insert(f.data.end(), src, src + n);
      }
      // One response per data slot, NULL responses for the extras (after the first, as netback).
      const std::int16_t status = f.extras.empty() || first.size != 0 ? config_.tx_status : netif::kRspOkay;
      for (std::size_t i = 0; i < f.slots.size(); ++i) {
        netif::TxResponse r{};
        r.id = f.slots[i].id;
        r.status = status;
        q.tx.put_response(r);
        if (i == 0)
          for (std::uint32_t e = 0; e < extra_count; ++e) q.tx.put_response(netif::TxResponse{0, netif::kRspNull});
      }
      tx_.push_back(std::move(f));
    }
    if (q.tx.push_responses_and_check_notify()) q.tx_port.notify();
  }
}

inline void ScriptedNetback::serve_ctrl() {
  for (;;) {
    auto more = ctrl_ring_.final_check_for_requests();
    if (!more || !*more) return;
    while (*ctrl_ring_.unconsumed_requests() > 0) {
      SeenCtrl c;
      c.req = ctrl_ring_.next_request();
      if (c.req.type == netif::kCtrlTypeSetHashKey || c.req.type == netif::kCtrlTypeSetHashMapping) {
        GrantRef ref = c.req.data[0];
        const std::size_t bytes = c.req.type == netif::kCtrlTypeSetHashKey ? c.req.data[1] : c.req.data[1] * 4u;
        auto m = mapper_->map(fe_id_, std::span(&ref, 1), Access::ReadOnly);
        if (m && bytes <= kXenPageSize) {
          auto* p = static_cast<const std::uint8_t*>(m->data());
          c.payload.assign(p, p + bytes);
        }
      }
      netif::CtrlResponse r{};
      r.id = config_.ctrl_bad_id ? static_cast<std::uint16_t>(c.req.id + 1) : c.req.id;
      r.type = c.req.type;
      r.status = config_.ctrl_status;
      r.data = config_.ctrl_data;
      ctrl_ring_.put_response(r);
      ctrl_.push_back(std::move(c));
    }
    if (ctrl_ring_.push_responses_and_check_notify()) ctrl_port_.notify();
  }
}

inline bool ScriptedNetback::inject(unsigned queue, const std::vector<RxSlot>& slots) {
  std::lock_guard lock(mutex_);
  if (queue >= queues_.size()) return false;
  Q& q = queues_[queue];
  auto avail = q.rx.unconsumed_requests();
  if (!avail || *avail < slots.size()) return false;
  for (const auto& s : slots) {
    const netif::RxRequest req = q.rx.next_request();
    if (s.is_extra) {
      q.rx.put_response(s.extra);
      continue;
    }
    if (!s.data.empty() && s.offset + s.data.size() <= kXenPageSize) {
      GrantRef ref = req.gref;
      auto m = mapper_->map(fe_id_, std::span(&ref, 1), Access::ReadWrite);
      if (!m) {
        if (error_.empty()) error_ = "backend: map rx page";
        return false;
      }
      std::memcpy(static_cast<std::byte*>(m->data()) + s.offset, s.data.data(), s.data.size());
    }
    netif::RxResponse r{};
    r.id = req.id;
    r.offset = s.offset;
    r.flags = s.flags;
    r.status = s.status.value_or(static_cast<std::int16_t>(s.data.size()));
    q.rx.put_response(r);
  }
  if (q.rx.push_responses_and_check_notify()) q.rx_notify_port().notify();
  return true;
}

inline void ScriptedNetback::set_rx_rsp_prod(unsigned queue, std::uint32_t value) {
  std::lock_guard lock(mutex_);
  Q& q = queues_.at(queue);
  std::atomic_ref<std::uint32_t>(reinterpret_cast<ring::SharedRingHeader*>(q.rx_map.data())->rsp_prod)
      .store(value, std::memory_order_release);
  q.rx_notify_port().notify();
}

}  // namespace pvback::netfront::testing
