// A netback Queue (domain 0) on its own thread against a raw netif frontend (domain 1) on the
// simulated hypervisor, with a MemoryPort as the exit.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "netback/queue.hpp"
#include "ring/netif.hpp"
#include "tests/grant/sim_fixture.hpp"
#include "tests/netback/queue/frames.hpp"
#include "tests/netback/queue/memory_port.hpp"
#include "tests/support/eventually.hpp"

namespace pvback::test {

using netif::ExtraInfo;
using netif::RxRequest;
using netif::RxResponse;
using netif::TxRequest;
using netif::TxResponse;

struct RxPacket {
  Bytes bytes;
  std::uint16_t flags = 0;       // first data response's flags
  std::uint16_t offset = 0;      // first data response's offset
  std::vector<ExtraInfo> extras;
  bool error = false;            // a data response had a negative status
  unsigned slots = 0;            // responses (data + extras)
};

// The frontend's end of one queue: TX and RX rings, their event channel(s), data pages.
struct NetFrontend {
  NetFrontend(const grant::Platform& platform, bool split = false, std::uint32_t tx_pages = 64)
      : sharer(platform.open_sharer()), channels(platform.open_event_channels()) {
    tx_ring_page = share(1);
    rx_ring_page = share(1);
    auto t = netif::TxRing::Front::initialise(tx_ring_page.data(), 1);
    auto r = netif::RxRing::Front::initialise(rx_ring_page.data(), 1);
    if (!t || !r) throw std::runtime_error("ring init");
    tx = *t;
    rx = *r;
    auto p = channels->alloc_unbound(0);
    if (!p) throw std::runtime_error("alloc_unbound");
    tx_port = rx_port = *p;
    if (split) {
      auto q = channels->alloc_unbound(0);
      if (!q) throw std::runtime_error("alloc_unbound");
      rx_port = *q;
    }
    tx_data = share(tx_pages);
    rx_data = share(netif::kRxRingSize);
  }

  grant::SharedPages share(std::uint32_t count, Access access = Access::ReadWrite) {
    auto pages = sharer->share(0, count, access);
    if (!pages) throw std::runtime_error("share");
    return std::move(*pages);
  }

  // ---- TX ----
  // Next TX data page (round robin over tx_data).
  std::uint32_t next_page() { return tx_cursor++ % tx_data.pages(); }

  // Writes `frame` as one packet: the first slot at `first_offset`, then slots of `slot_bytes`.
  // `extras` go right after the first slot. Returns the id of the first slot.
  std::uint16_t put_packet(const Bytes& frame, std::uint16_t flags = 0, const std::vector<ExtraInfo>& extras = {},
                           std::uint32_t slot_bytes = kXenPageSize, std::uint16_t first_offset = 0) {
    std::vector<TxRequest> slots;
    std::size_t off = 0;
    do {
      const std::uint32_t page = next_page();
      const std::uint16_t o = slots.empty() ? first_offset : 0;
      const std::size_t n = std::min<std::size_t>(frame.size() - off, std::min<std::uint32_t>(slot_bytes, kXenPageSize - o));
      if (n != 0) std::memcpy(tx_data.page(page) + o, frame.data() + off, n);
      slots.push_back(TxRequest{tx_data.refs()[page], o, 0, next_id++, static_cast<std::uint16_t>(n)});
      off += n;
    } while (off < frame.size());
    slots[0].size = static_cast<std::uint16_t>(frame.size());
    slots[0].flags = flags | (extras.empty() ? 0 : netif::kTxfExtraInfo);
    for (std::size_t i = 0; i + 1 < slots.size(); ++i) slots[i].flags |= netif::kTxfMoreData;
    tx.put_request(slots[0]);
    for (std::size_t e = 0; e < extras.size(); ++e) {
      ExtraInfo x = extras[e];
      if (e + 1 < extras.size()) x.flags |= netif::kExtraFlagMore;
      tx.put_request(x);
    }
    for (std::size_t i = 1; i < slots.size(); ++i) tx.put_request(slots[i]);
    return slots[0].id;
  }
  void put(const TxRequest& r) { tx.put_request(r); }
  void put(const ExtraInfo& e) { tx.put_request(e); }
  void push_tx() {
    if (tx.push_requests_and_check_notify()) channels->notify(tx_port);
  }

  // Waits for events until `ready` holds (with short polls, so no notification subtlety can hang
  // a test; the timeout is a failure guard).
  bool wait(const std::function<bool()>& ready, int timeout_ms = 20000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!ready()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      wait_readable(channels->fd(), 20);
      while (auto p = channels->pending()) channels->unmask(*p);
    }
    return true;
  }

  std::vector<TxResponse> collect_tx(std::size_t n, int timeout_ms = 20000) {
    std::vector<TxResponse> out;
    wait([&] {
      auto more = tx.unconsumed_responses();
      if (!more) return true;
      for (ring::RingIdx i = 0; i < *more; ++i) out.push_back(tx.next_response());
      if (out.size() >= n) return true;
      (void)tx.final_check_for_responses();
      return false;
    }, timeout_ms);
    return out;
  }

  // ---- RX ----
  // Posts `n` buffers (page i of rx_data for id i).
  void post_rx(unsigned n) {
    for (unsigned i = 0; i < n && !rx.full(); ++i) {
      const std::uint16_t id = static_cast<std::uint16_t>(rx_cursor++ % netif::kRxRingSize);
      rx.put_request(RxRequest{id, 0, rx_data.refs()[id]});
    }
    if (rx.push_requests_and_check_notify()) channels->notify(rx_port);
  }

  bool rx_available(ring::RingIdx n) {
    auto more = rx.unconsumed_responses();
    if (more && *more >= n) return true;
    (void)rx.final_check_for_responses();
    return false;
  }

  // Reads one packet's responses (waiting for each).
  std::optional<RxPacket> next_rx(int timeout_ms = 20000) {
    RxPacket pkt;
    auto next = [&]() -> bool { return wait([&] { return rx_available(1); }, timeout_ms); };
    if (!next()) return std::nullopt;
    RxResponse first = rx.next_response();
    ++pkt.slots;
    pkt.flags = first.flags;
    pkt.offset = first.offset;
    auto take = [&](const RxResponse& r) {
      if (r.status < 0) {
        pkt.error = true;
        return;
      }
      const std::byte* page = rx_data.page(r.id % netif::kRxRingSize);
      pkt.bytes.insert(pkt.bytes.end(), reinterpret_cast<const std::uint8_t*>(page + r.offset),
                       reinterpret_cast<const std::uint8_t*>(page + r.offset) + r.status);
    };
    take(first);
    if (first.flags & netif::kRxfExtraInfo) {
      for (;;) {
        if (!next()) return std::nullopt;
        ExtraInfo e = rx.next_response<ExtraInfo>();
        ++pkt.slots;
        pkt.extras.push_back(e);
        if (!(e.flags & netif::kExtraFlagMore)) break;
      }
    }
    std::uint16_t flags = first.flags;
    while (flags & netif::kRxfMoreData) {
      if (!next()) return std::nullopt;
      RxResponse r = rx.next_response();
      ++pkt.slots;
      take(r);
      flags = r.flags;
    }
    return pkt;
  }

  std::unique_ptr<grant::GrantSharer> sharer;
  std::unique_ptr<grant::EventChannels> channels;
  grant::SharedPages tx_ring_page, rx_ring_page, tx_data, rx_data;
  netif::TxRing::Front tx;
  netif::RxRing::Front rx;
  EvtchnPort tx_port = 0, rx_port = 0;
  std::uint32_t tx_cursor = 0, rx_cursor = 0;
  std::uint16_t next_id = 0;
};

inline ExtraInfo gso_extra(std::uint8_t type, std::uint16_t mss) {
  ExtraInfo e{};
  e.type = netif::kExtraTypeGso;
  e.u.gso.type = type;
  e.u.gso.size = mss;
  return e;
}

struct NetQueueOptions {
  netback::GuestOffloads guest{.csum = true, .ipv6_csum = true, .sg = true, .gso_tcpv4 = true, .gso_tcpv6 = true};
  netback::ExitCapabilities exit{.tx_csum = true, .tx_tso4 = true, .tx_tso6 = true, .rx_gso = true, .poll_mode = false};
  bool multicast_control = false;
  std::uint16_t xdp_headroom = 0;
  std::chrono::milliseconds stall{60'000};
  bool poll_mode = false;
  std::uint32_t chunk_size = 1000;
  bool split = false;
  std::function<void(netback::QueueConfig&)> tweak;
};

class NetQueueTest : public SimHypervisorTest {
 protected:
  using Options = NetQueueOptions;
  static Options opt(const std::function<void(Options&)>& f) {
    Options o;
    f(o);
    return o;
  }

  struct Runner {
    std::unique_ptr<MemoryPort> port;
    netback::QueueStats stats;
    std::unique_ptr<netback::Queue> queue;
    std::thread thread;
    std::atomic<int> fatal_calls{0};
    std::atomic<int> fatal_error{0};
    std::atomic<bool> returned{false};
  };

  // Creates the vif state for `queues` queues (before the first start()).
  void make_vif(unsigned queues) {
    shared = std::make_unique<netback::VifShared>(queues);
    group = std::make_unique<netback::QueueGroup>(queues);
  }

  // Starts queue `index` for frontend `fe`. `before_run` runs between create() and the thread.
  Runner& start(NetFrontend& fe, const Options& o = {}, unsigned index = 0,
                const std::function<void(Runner&)>& before_run = {}) {
    if (!shared) make_vif(1);
    auto r = std::make_unique<Runner>();
    r->port = std::make_unique<MemoryPort>(o.poll_mode, o.chunk_size);
    netback::QueueConfig c;
    c.name = "vif 1/0 q" + std::to_string(index);
    c.index = index;
    c.frontend_domid = 1;
    c.tx_ring_ref = fe.tx_ring_page.refs()[0];
    c.rx_ring_ref = fe.rx_ring_page.refs()[0];
    c.tx_event_channel = fe.tx_port;
    c.rx_event_channel = fe.rx_port;
    c.split_event_channels = o.split;
    c.guest = o.guest;
    c.exit = o.exit;
    c.multicast_control = o.multicast_control;
    c.xdp_headroom = o.xdp_headroom;
    c.rx_stall_timeout = o.stall;
    c.group = group.get();
    if (o.tweak) o.tweak(c);
    Runner* raw = r.get();
    auto q = netback::Queue::create(platform(0), c, *r->port, *shared, r->stats, [raw](int err, const std::string&) {
      raw->fatal_error = err;
      raw->fatal_calls.fetch_add(1);
    });
    if (!q) {
      ADD_FAILURE() << "Queue::create: " << std::strerror(q.error());
      throw std::runtime_error("create");
    }
    r->queue = std::move(*q);
    if (int e = r->queue->attach()) {
      ADD_FAILURE() << "Queue::attach: " << std::strerror(e);
      throw std::runtime_error("attach");
    }
    if (before_run) before_run(*r);
    r->thread = std::thread([raw] {
      raw->queue->run();
      raw->returned = true;
    });
    runners.push_back(std::move(r));
    return *runners.back();
  }

  void stop_all() {
    for (auto& r : runners) r->queue->stop();
    for (auto& r : runners)
      if (r->thread.joinable()) r->thread.join();
    for (auto& r : runners) r->queue.reset();
  }

  void TearDown() override {
    stop_all();
    runners.clear();
    group.reset();
    shared.reset();
    SimHypervisorTest::TearDown();
  }

  std::unique_ptr<netback::VifShared> shared;
  std::unique_ptr<netback::QueueGroup> group;
  std::vector<std::unique_ptr<Runner>> runners;
};

}  // namespace pvback::test
