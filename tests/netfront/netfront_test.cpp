// NetFront against a scripted netback thread on an in-process simulated hypervisor: the keys it
// writes for every negotiation outcome, TX slot layout (byte-exact reassembly, GSO extras,
// statuses), RX reassembly of multi-slot frames with extras, malformed backend responses, the
// control ring, multicast requests and closing in both directions.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include "grant/sim_control.hpp"
#include "grant/sim_layout.hpp"
#include "netfront/guest.hpp"
#include "netfront/netfront.hpp"
#include "sim/hypervisor.hpp"
#include "sim/toolstack/nodes.hpp"
#include "tests/netfront/scripted_backend.hpp"

namespace pvback::netfront {
namespace {

using testing::BackendConfig;
using testing::RxSlot;
using testing::ScriptedNetback;
using namespace std::chrono_literals;

constexpr DomId kGuest = 1;
constexpr std::uint32_t kHandle = 0;
constexpr const char* kMac = "00:16:3e:12:34:56";

std::vector<std::byte> pattern(std::size_t len, unsigned seed) {
  std::vector<std::byte> v(len);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return cond();
}

class NetFrontSim : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvback-netfront-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    hv_ = std::make_unique<sim::SimHypervisor>(dir_);
    auto ctl = grant::SimControl::connect(dir_, 0);
    ASSERT_TRUE(ctl.has_value());
    sim_protocol::Request req;
    req.op = sim_protocol::Op::CreateDomain;
    req.domid = kGuest;
    ASSERT_TRUE(ctl->call(req).has_value());
    auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(dir_).string());
    ASSERT_TRUE(xs.has_value());
    dom0_ = std::move(*xs);
    backend_path_ = "/local/domain/0/backend/vif/" + std::to_string(kGuest) + "/" + std::to_string(kHandle);
    frontend_path_ = NetFront::frontend_path_for(kGuest, kHandle);
    ASSERT_EQ(add_vif(kMac), 0);
  }
  void TearDown() override {
    backend_.reset();
    hv_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // What libxl writes for a vif (both nodes, in one transaction).
  int add_vif(const std::string& mac) {
    return dom0_.transact([&](xenbus::Txn t) -> int {
      const std::pair<const char*, std::string> be_keys[] = {
          {"frontend", frontend_path_}, {"frontend-id", std::to_string(kGuest)}, {"online", "1"},
          {"state", "1"}, {"handle", std::to_string(kHandle)}, {"mac", mac}, {"type", "vif"}};
      if (int e = sim::write_node(dom0_, backend_path_, "", 0, kGuest, false, t)) return e;
      for (const auto& [k, v] : be_keys)
        if (int e = sim::write_node(dom0_, backend_path_ + "/" + k, v, 0, kGuest, false, t)) return e;
      std::vector<std::pair<const char*, std::string>> fe_keys = {
          {"backend", backend_path_}, {"backend-id", "0"}, {"state", "1"}, {"handle", std::to_string(kHandle)}};
      if (!mac.empty()) fe_keys.push_back({"mac", mac});
      if (int e = sim::write_node(dom0_, frontend_path_, "", kGuest, 0, false, t)) return e;
      for (const auto& [k, v] : fe_keys)
        if (int e = sim::write_node(dom0_, frontend_path_ + "/" + k, v, kGuest, 0, false, t)) return e;
      return 0;
    });
  }

  void start_backend(BackendConfig config = {}) {
    backend_ = std::make_unique<ScriptedNetback>(hv_->platform(0), backend_path_, frontend_path_, kGuest, config);
  }

  std::unique_ptr<NetFront> attach(Options options = {}) {
    options.connect_timeout = 5000ms;
    options.close_timeout = 3000ms;
    options.ctrl_timeout = 3000ms;
    grant::Platform platform(hv_->platform(kGuest));
    auto front = NetFront::attach(platform, frontend_path_, options);
    EXPECT_TRUE(front.has_value()) << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  // Waits until `count` TX data responses were reaped on `q`.
  static bool reap_until(Queue& q, std::uint64_t responses) {
    return eventually([&] {
      q.wait(5ms);
      q.reap_tx();
      const auto& s = q.stats();
      return s.tx_okay + s.tx_error + s.tx_dropped >= responses;
    });
  }
  static bool receive_one(Queue& q, RxFrame& f) {
    return eventually([&] {
      q.wait(5ms);
      return q.receive(f);
    });
  }

  std::string fe(const std::string& key) { return dom0_.read(frontend_path_ + "/" + key).value_or("<missing>"); }

  std::filesystem::path dir_;
  std::unique_ptr<sim::SimHypervisor> hv_;
  xenbus::XenStore dom0_;
  std::string backend_path_, frontend_path_;
  std::unique_ptr<ScriptedNetback> backend_;
};

// ---------------------------------------------------------------------------------------------
// Negotiation

struct NegCase {
  const char* name;
  BackendConfig backend;
  Options options;
};

NegCase make_case(const char* name, std::function<void(BackendConfig&, Options&)> f) {
  NegCase c{name, {}, {}};
  f(c.backend, c.options);
  return c;
}

const NegCase kNegCases[] = {
    make_case("one_queue_split_ctrl", [](BackendConfig&, Options& o) { o.max_queues = 1; }),
    make_case("four_queues_split", [](BackendConfig&, Options& o) { o.max_queues = 4; }),
    make_case("three_of_four_single_evtchn",
              [](BackendConfig& b, Options& o) { b.split = false; b.max_queues = 3; o.max_queues = 8; }),
    make_case("split_declined", [](BackendConfig&, Options& o) { o.split_event_channels = false; o.max_queues = 2; }),
    make_case("no_multi_queue_key", [](BackendConfig& b, Options&) { b.max_queues = 0; }),
    make_case("offloads_off",
              [](BackendConfig&, Options& o) {
                o.sg = o.gso_tcpv4 = o.gso_tcpv6 = o.ipv6_csum_offload = o.csum_offload = false;
                o.max_queues = 1;
              }),
    make_case("ctrl_not_offered", [](BackendConfig& b, Options&) { b.ctrl_ring = false; }),
    make_case("ctrl_declined", [](BackendConfig&, Options& o) { o.ctrl_ring = false; }),
    make_case("multicast_requested", [](BackendConfig&, Options& o) { o.multicast_control = true; }),
    make_case("multicast_not_offered",
              [](BackendConfig& b, Options& o) { b.multicast_control = false; o.multicast_control = true; }),
    make_case("xdp_on", [](BackendConfig& b, Options& o) { b.xdp_headroom = true; o.xdp = true; }),
    make_case("xdp_offered_off", [](BackendConfig& b, Options&) { b.xdp_headroom = true; }),
    make_case("xdp_not_offered", [](BackendConfig&, Options& o) { o.xdp = true; }),
};

class NetFrontNegotiation : public NetFrontSim, public ::testing::WithParamInterface<NegCase> {};

TEST_P(NetFrontNegotiation, WritesExactlyTheKeysLinuxWrites) {
  const NegCase& c = GetParam();
  start_backend(c.backend);
  auto front = attach(c.options);
  ASSERT_TRUE(front);
  const Negotiated& n = front->negotiated();
  const unsigned backend_max = std::max(c.backend.max_queues, 1u);
  const unsigned nq = std::min(c.options.max_queues, backend_max);
  const bool split = c.backend.split && c.options.split_event_channels;
  const bool ctrl = c.backend.ctrl_ring && c.options.ctrl_ring;
  EXPECT_EQ(n.num_queues, nq);
  EXPECT_EQ(front->num_queues(), nq);
  EXPECT_EQ(n.split_event_channels, split);
  EXPECT_EQ(n.ctrl_ring, ctrl);
  EXPECT_EQ(format_mac(n.mac), kMac);

  std::map<std::string, std::string> want = {
      {"backend", backend_path_}, {"backend-id", "0"}, {"handle", "0"}, {"mac", kMac}, {"state", "4"},
      {"request-rx-copy", "1"}, {"feature-rx-notify", "1"},
      {"feature-sg", c.options.sg ? "1" : "0"},
      {"feature-gso-tcpv4", c.options.gso_tcpv4 ? "1" : "0"},
      {"feature-gso-tcpv6", c.options.gso_tcpv6 ? "1" : "0"},
      {"feature-ipv6-csum-offload", c.options.ipv6_csum_offload ? "1" : "0"},
  };
  if (!c.options.csum_offload) want["feature-no-csum-offload"] = "1";
  if (c.backend.max_queues > 0) want["multi-queue-num-queues"] = std::to_string(nq);
  for (unsigned i = 0; i < nq; ++i) {
    const std::string p = nq > 1 ? "queue-" + std::to_string(i) + "/" : "";
    Queue& q = front->queue(i);
    want[p + "tx-ring-ref"] = std::to_string(q.tx_ring_ref());
    want[p + "rx-ring-ref"] = std::to_string(q.rx_ring_ref());
    EXPECT_EQ(q.split(), split);
    if (split) {
      want[p + "event-channel-tx"] = std::to_string(q.tx_port());
      want[p + "event-channel-rx"] = std::to_string(q.rx_port());
      EXPECT_NE(q.tx_port(), q.rx_port());
    } else {
      want[p + "event-channel"] = std::to_string(q.tx_port());
    }
  }
  if (ctrl) {
    want["ctrl-ring-ref"] = std::to_string(front->ctrl_ring_ref());
    want["event-channel-ctrl"] = std::to_string(front->ctrl_port());
  }
  if (c.options.multicast_control && c.backend.multicast_control) want["request-multicast-control"] = "1";
  if (c.backend.xdp_headroom) want["xdp-headroom"] = c.options.xdp ? "256" : "0";

  // What the backend saw when it connected (state then was Connected: Linux skips Initialised).
  auto seen = backend_->frontend_keys();
  EXPECT_EQ(seen, want);
  EXPECT_TRUE(backend_->error().empty()) << backend_->error();
  // The RX rings are full (Linux posts every slot at connect).
  for (unsigned i = 0; i < nq; ++i) EXPECT_EQ(front->queue(i).rx_posted(), netif::kRxRingSize);
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(fe("state"), "6");
}

INSTANTIATE_TEST_SUITE_P(Matrix, NetFrontNegotiation, ::testing::ValuesIn(kNegCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(NetFrontSim, RefusesBackendWithoutRxCopy) {
  BackendConfig c;
  c.rx_copy = false;
  start_backend(c);
  Options o;
  o.connect_timeout = 2000ms;
  grant::Platform platform(hv_->platform(kGuest));
  auto front = NetFront::attach(platform, frontend_path_, o);
  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error(), ENODEV);
  EXPECT_FALSE(dom0_.exists(frontend_path_ + "/tx-ring-ref").value_or(true)) << "nothing published";
}

TEST_F(NetFrontSim, TimesOutWhenBackendNeverReachesInitWait) {
  BackendConfig c;
  c.reach_init_wait = false;
  start_backend(c);
  Options o;
  o.connect_timeout = 300ms;
  grant::Platform platform(hv_->platform(kGuest));
  auto front = NetFront::attach(platform, frontend_path_, o);
  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error(), ETIMEDOUT);
}

TEST_F(NetFrontSim, RefusesMissingOrMalformedMac) {
  ASSERT_EQ(dom0_.write(frontend_path_ + "/mac", "00:16:3e:12:34"), 0);
  start_backend();
  grant::Platform platform(hv_->platform(kGuest));
  auto front = NetFront::attach(platform, frontend_path_, Options{});
  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error(), EINVAL);
  EXPECT_FALSE(parse_mac("00:16:3e:12:34:5g"));
  EXPECT_EQ(format_mac(*parse_mac("00:16:3E:AB:cd:ef")), "00:16:3e:ab:cd:ef");
}

// ---------------------------------------------------------------------------------------------
// TX

TEST_F(NetFrontSim, SendSplitsFramesIntoPageSlotsAndBackendReassemblesThem) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  const std::size_t sizes[] = {60, 64, 1514, 4095, 4096, 4097, 8192, 9000, 32768, 60000, 65535};
  std::vector<std::vector<std::byte>> frames;
  std::uint64_t slots = 0;
  for (std::size_t i = 0; i < std::size(sizes); ++i) {
    frames.push_back(pattern(sizes[i], static_cast<unsigned>(i)));
    int e;
    ASSERT_TRUE(eventually([&] {
      q.reap_tx();
      e = q.send(frames.back());
      return e != EAGAIN;
    }));
    ASSERT_EQ(e, 0) << sizes[i];
    slots += (sizes[i] + 4095) / 4096;
  }
  ASSERT_TRUE(reap_until(q, slots));
  EXPECT_EQ(q.stats().tx_okay, slots);
  EXPECT_EQ(q.tx_in_flight(), 0u);
  auto seen = backend_->tx_frames();
  ASSERT_EQ(seen.size(), frames.size());
  for (std::size_t i = 0; i < frames.size(); ++i) {
    SCOPED_TRACE(sizes[i]);
    const auto& f = seen[i];
    EXPECT_FALSE(f.size_mismatch);
    EXPECT_EQ(f.data, frames[i]);
    EXPECT_TRUE(f.extras.empty());
    ASSERT_EQ(f.slots.size(), (sizes[i] + 4095) / 4096);
    EXPECT_EQ(f.slots[0].size, sizes[i]) << "first slot carries the frame size";
    std::set<std::uint16_t> ids;
    for (std::size_t s = 0; s < f.slots.size(); ++s) {
      const bool last = s + 1 == f.slots.size();
      EXPECT_EQ(bool(f.slots[s].flags & netif::kTxfMoreData), !last);
      EXPECT_EQ(f.slots[s].offset, 0);
      if (s > 0) {
        EXPECT_LE(f.slots[s].size, 4096);
      }
      EXPECT_EQ(f.slots[s].gref, q.tx_pool().refs()[f.slots[s].id]) << "pre-granted pool page of the id";
      ids.insert(f.slots[s].id);
    }
    EXPECT_EQ(ids.size(), f.slots.size()) << "distinct ids";
  }
  EXPECT_TRUE(backend_->error().empty()) << backend_->error();
}

TEST_F(NetFrontSim, SendLayoutKnobsKeepSlotsInsideTheirPage) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  auto frame = pattern(9000, 5);
  TxMeta m;
  m.first_offset = 4000;  // only 96 bytes fit in the first page
  ASSERT_EQ(q.send(frame, m), 0);
  TxMeta head;
  head.first_slot_bytes = 128;  // Linux-like: a small linear head, then page fragments
  head.first_offset = 64;
  ASSERT_EQ(q.send(frame, head), 0);
  ASSERT_TRUE(reap_until(q, 4 + 4));
  auto seen = backend_->tx_frames();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].data, frame);
  EXPECT_EQ(seen[1].data, frame);
  ASSERT_EQ(seen[0].slots.size(), 4u);  // 96 + 4096 + 4096 + 712
  EXPECT_EQ(seen[0].slots[0].offset, 4000);
  EXPECT_EQ(seen[0].slots[1].size, 4096);
  EXPECT_EQ(seen[0].slots[3].size, 712);
  ASSERT_EQ(seen[1].slots.size(), 4u);  // 128 + 4096 + 4096 + 680
  EXPECT_EQ(seen[1].slots[0].offset, 64);
  EXPECT_EQ(seen[1].slots[3].size, 9000 - 128 - 8192);
  EXPECT_EQ(q.send(frame, TxMeta{.first_offset = 4096}), EINVAL);
}

TEST_F(NetFrontSim, GsoFramesCarryAnExtraInfoSlot) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  auto big = pattern(65535, 9);
  TxMeta m{.csum_blank = true, .data_validated = true, .gso_type = netif::kGsoTypeTcpv4, .gso_size = 1448};
  ASSERT_EQ(q.send(big, m), 0);
  m.gso_type = netif::kGsoTypeTcpv6;
  m.gso_size = 1428;
  ASSERT_EQ(q.send(big, m), 0);
  ASSERT_TRUE(reap_until(q, 32));
  EXPECT_EQ(q.stats().tx_null, 2u) << "one NULL response per extra slot";
  auto seen = backend_->tx_frames();
  ASSERT_EQ(seen.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    const auto& f = seen[i];
    EXPECT_EQ(f.data, big);
    ASSERT_EQ(f.extras.size(), 1u);
    EXPECT_EQ(f.extras[0].type, netif::kExtraTypeGso);
    EXPECT_EQ(f.extras[0].flags, 0);
    EXPECT_EQ(f.extras[0].u.gso.type, i == 0 ? netif::kGsoTypeTcpv4 : netif::kGsoTypeTcpv6);
    EXPECT_EQ(f.extras[0].u.gso.size, i == 0 ? 1448 : 1428);
    EXPECT_EQ(f.slots[0].flags & (netif::kTxfCsumBlank | netif::kTxfDataValidated | netif::kTxfExtraInfo),
              netif::kTxfCsumBlank | netif::kTxfDataValidated | netif::kTxfExtraInfo);
  }
  EXPECT_EQ(q.send(big, TxMeta{.gso_type = netif::kGsoTypeTcpv4, .gso_size = 0}), EINVAL);
  EXPECT_EQ(q.send(big, TxMeta{.gso_type = 7, .gso_size = 100}), EOPNOTSUPP);
}

TEST_F(NetFrontSim, WithoutSgFramesMustFitOneSlotAndGsoIsRefused) {
  BackendConfig c;
  c.sg = false;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_FALSE(front->negotiated().tx_sg);
  EXPECT_FALSE(front->negotiated().tx_gso_tcpv4);
  Queue& q = front->queue(0);
  EXPECT_EQ(q.send(pattern(4097, 1)), EMSGSIZE);
  EXPECT_EQ(q.send(pattern(4096, 1), TxMeta{.gso_type = netif::kGsoTypeTcpv4, .gso_size = 1448}), EOPNOTSUPP);
  EXPECT_EQ(q.send(pattern(4096, 1)), 0);
  EXPECT_EQ(q.send({}), EMSGSIZE);
  EXPECT_EQ(q.send(pattern(65536, 1)), EMSGSIZE);
  ASSERT_TRUE(reap_until(q, 1));
}

TEST_F(NetFrontSim, TxStatusesAreCounted) {
  BackendConfig c;
  c.tx_status = netif::kRspError;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  ASSERT_EQ(q.send(pattern(100, 1)), 0);
  ASSERT_EQ(q.send(pattern(5000, 1)), 0);
  ASSERT_TRUE(reap_until(q, 3));
  EXPECT_EQ(q.stats().tx_error, 3u);
  EXPECT_EQ(q.stats().tx_okay, 0u);
  EXPECT_EQ(q.tx_in_flight(), 0u) << "errors free the slots too";
}

TEST_F(NetFrontSim, DroppedStatusIsCounted) {
  BackendConfig c;
  c.tx_status = netif::kRspDropped;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  ASSERT_EQ(q.send(pattern(60, 1)), 0);
  ASSERT_TRUE(reap_until(q, 1));
  EXPECT_EQ(q.stats().tx_dropped, 1u);
}

TEST_F(NetFrontSim, FullTxRingReturnsEagainWithoutNotifyingEachFrame) {
  BackendConfig c;
  c.serve_tx = false;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  unsigned sent = 0;
  while (q.send(pattern(60, sent)) == 0) ++sent;
  EXPECT_EQ(sent, netif::kTxRingSize);
  EXPECT_EQ(q.send(pattern(60, 0)), EAGAIN);
  EXPECT_EQ(q.tx_free_slots(), 0u);
  // The backend never consumed, so it never re-armed req_event: one notification only.
  EXPECT_EQ(q.stats().tx_notifies, 1u);
}

TEST_F(NetFrontSim, MulticastAddAndDelAreDummyRequestsWithAnExtra) {
  BackendConfig c;
  c.dynamic_multicast_control = true;
  start_backend(c);
  Options o;
  o.multicast_control = true;
  auto front = attach(o);
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  const Mac group{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb};
  ASSERT_EQ(q.add_multicast(group), 0);
  ASSERT_EQ(q.del_multicast(group), 0);
  ASSERT_TRUE(reap_until(q, 2));
  EXPECT_EQ(q.stats().tx_okay, 2u);
  auto seen = backend_->tx_frames();
  ASSERT_EQ(seen.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(seen[i].slots.size(), 1u);
    EXPECT_EQ(seen[i].slots[0].size, 0);
    EXPECT_EQ(seen[i].slots[0].flags, netif::kTxfExtraInfo);
    ASSERT_EQ(seen[i].extras.size(), 1u);
    EXPECT_EQ(seen[i].extras[0].type, i == 0 ? netif::kExtraTypeMcastAdd : netif::kExtraTypeMcastDel);
    EXPECT_EQ(std::memcmp(seen[i].extras[0].u.mcast.addr, group.data(), 6), 0);
  }
  EXPECT_EQ(front->set_multicast_control(false), 0);
  EXPECT_EQ(fe("request-multicast-control"), "0");
}

// ---------------------------------------------------------------------------------------------
// RX

std::vector<RxSlot> frame_slots(const std::vector<std::byte>& frame, std::size_t chunk, std::uint16_t first_flags,
                                std::vector<netif::ExtraInfo> extras = {}, std::uint16_t offset = 0) {
  std::vector<RxSlot> out;
  std::size_t done = 0;
  bool first = true;
  while (done < frame.size() || first) {
    RxSlot s;
    s.offset = first ? offset : 0;
    const std::size_t n = std::min(chunk - (first ? offset : 0), frame.size() - done);
    s.data.assign(frame.begin() + done, frame.begin() + done + n);
    done += n;
    if (first) s.flags = first_flags | (extras.empty() ? 0 : netif::kRxfExtraInfo);
    if (done < frame.size()) s.flags |= netif::kRxfMoreData;
    out.push_back(s);
    if (first) {
      for (std::size_t e = 0; e < extras.size(); ++e) {
        RxSlot x;
        x.is_extra = true;
        x.extra = extras[e];
        if (e + 1 < extras.size()) x.extra.flags |= netif::kExtraFlagMore;
        out.push_back(x);
      }
    }
    first = false;
  }
  return out;
}

netif::ExtraInfo gso_extra(std::uint8_t type, std::uint16_t size) {
  netif::ExtraInfo e{};
  e.type = netif::kExtraTypeGso;
  e.u.gso.type = type;
  e.u.gso.size = size;
  return e;
}

netif::ExtraInfo hash_extra(std::uint32_t value, std::uint8_t type) {
  netif::ExtraInfo e{};
  e.type = netif::kExtraTypeHash;
  e.u.hash.type = type;
  e.u.hash.algorithm = netif::kHashAlgorithmToeplitz;
  for (int i = 0; i < 4; ++i) e.u.hash.value[i] = static_cast<std::uint8_t>(value >> (8 * i));
  return e;
}

TEST_F(NetFrontSim, ReceivesSingleAndMultiSlotFramesWithExtras) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  ASSERT_TRUE(eventually([&] { return backend_->rx_requests_pending(0) == netif::kRxRingSize; }));

  auto small = pattern(60, 1);
  ASSERT_TRUE(backend_->inject(0, frame_slots(small, 4096, netif::kRxfDataValidated, {}, 2)));
  RxFrame f;
  ASSERT_TRUE(receive_one(q, f));
  EXPECT_EQ(f.data, small);
  EXPECT_TRUE(f.meta.data_validated);
  EXPECT_FALSE(f.meta.csum_blank);
  EXPECT_EQ(f.meta.gso_type, netif::kGsoTypeNone);
  EXPECT_FALSE(f.meta.has_hash);
  EXPECT_EQ(f.meta.slots, 1u);

  auto big = pattern(65535 + 4000, 2);  // RX frames may exceed 64 KiB (18 slots)
  auto slots = frame_slots(big, 4096, netif::kRxfCsumBlank | netif::kRxfDataValidated,
                           {gso_extra(netif::kGsoTypeTcpv6, 1440), hash_extra(0xdeadbeef, netif::kHashTypeBitIpv6Tcp)});
  ASSERT_EQ(slots.size(), 17u + 2u);
  ASSERT_TRUE(backend_->inject(0, slots));
  ASSERT_TRUE(receive_one(q, f));
  EXPECT_EQ(f.data, big);
  EXPECT_TRUE(f.meta.csum_blank);
  EXPECT_TRUE(f.meta.data_validated);
  EXPECT_EQ(f.meta.gso_type, netif::kGsoTypeTcpv6);
  EXPECT_EQ(f.meta.gso_size, 1440);
  EXPECT_TRUE(f.meta.has_hash);
  EXPECT_EQ(f.meta.hash, 0xdeadbeefu);
  EXPECT_EQ(f.meta.hash_type, netif::kHashTypeBitIpv6Tcp);
  EXPECT_EQ(f.meta.slots, 19u);

  // Uneven chunks (Linux netback fills slots with whatever the copy produced).
  auto odd = pattern(3000, 3);
  std::vector<RxSlot> uneven(3);
  uneven[0].offset = 100;
  uneven[0].data.assign(odd.begin(), odd.begin() + 10);
  uneven[0].flags = netif::kRxfMoreData;
  uneven[1].offset = 4000;
  uneven[1].data.assign(odd.begin() + 10, odd.begin() + 106);
  uneven[1].flags = netif::kRxfMoreData;
  uneven[2].data.assign(odd.begin() + 106, odd.end());
  ASSERT_TRUE(backend_->inject(0, uneven));
  ASSERT_TRUE(receive_one(q, f));
  EXPECT_EQ(f.data, odd);
  EXPECT_EQ(q.stats().rx_frames, 3u);
  EXPECT_EQ(q.stats().rx_dropped_frames, 0u);
  // Every consumed slot was re-posted.
  EXPECT_TRUE(eventually([&] { return backend_->rx_requests_pending(0) == netif::kRxRingSize; }));
}

TEST_F(NetFrontSim, KeepsTheRxRingFilledAcrossManyFrames) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  RxFrame f;
  for (unsigned i = 0; i < 3 * netif::kRxRingSize; ++i) {
    auto frame = pattern(60 + i, i);
    ASSERT_TRUE(eventually([&] { return backend_->inject(0, frame_slots(frame, 4096, 0)); })) << i;
    ASSERT_TRUE(receive_one(q, f)) << i;
    ASSERT_EQ(f.data, frame);
  }
  EXPECT_EQ(q.rx_posted(), netif::kRxRingSize);
}

TEST_F(NetFrontSim, RxPostingKnobStallsTheRing) {
  start_backend();
  Options o;
  o.post_rx_buffers = false;
  auto front = attach(o);
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  EXPECT_EQ(q.rx_posted(), 0u);
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(backend_->rx_requests_pending(0), 0u);
  EXPECT_FALSE(backend_->inject(0, frame_slots(pattern(60, 1), 4096, 0)));
  q.set_rx_posting(true);
  EXPECT_EQ(q.rx_posted(), netif::kRxRingSize);
  EXPECT_TRUE(eventually([&] { return backend_->rx_requests_pending(0) == netif::kRxRingSize; }));
}

TEST_F(NetFrontSim, MalformedRxResponsesAreCountedAndDropped) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  auto good = pattern(200, 7);
  RxFrame f;
  auto expect_good_after = [&](const char* what) {
    SCOPED_TRACE(what);
    ASSERT_TRUE(eventually([&] { return backend_->inject(0, frame_slots(good, 4096, 0)); }));
    ASSERT_TRUE(receive_one(q, f));
    EXPECT_EQ(f.data, good);
  };

  {  // offset + size beyond the page
    RxSlot s;
    s.offset = 4000;
    s.status = 200;
    ASSERT_TRUE(backend_->inject(0, {s}));
    expect_good_after("beyond page");
    EXPECT_EQ(q.stats().rx_bad_slot, 1u);
  }
  {  // error status in the middle of a multi-slot frame
    auto slots = frame_slots(pattern(9000, 1), 4096, 0);
    slots[1].status = netif::kRspError;
    ASSERT_TRUE(backend_->inject(0, slots));
    expect_good_after("error status");
    EXPECT_EQ(q.stats().rx_bad_slot, 2u);
  }
  {  // unknown extra type
    netif::ExtraInfo bad{};
    bad.type = 9;
    ASSERT_TRUE(backend_->inject(0, frame_slots(pattern(100, 1), 4096, 0, {bad})));
    expect_good_after("bad extra");
    EXPECT_EQ(q.stats().rx_bad_extra, 1u);
  }
  {  // GSO with size 0, GSO with a bad type
    ASSERT_TRUE(backend_->inject(0, frame_slots(pattern(100, 1), 4096, 0, {gso_extra(netif::kGsoTypeTcpv4, 0)})));
    ASSERT_TRUE(backend_->inject(0, frame_slots(pattern(100, 1), 4096, 0, {gso_extra(5, 1400)})));
    expect_good_after("bad gso");
    EXPECT_EQ(q.stats().rx_bad_gso, 2u);
  }
  {  // more slots than a frame may have
    auto slots = frame_slots(pattern(20 * 10, 1), 10, 0);
    ASSERT_EQ(slots.size(), 20u);
    ASSERT_TRUE(backend_->inject(0, slots));
    expect_good_after("too many slots");
    EXPECT_EQ(q.stats().rx_too_many_slots, 1u);
  }
  {  // more_data on the last published slot
    RxSlot s;
    s.data = pattern(100, 1);
    s.flags = netif::kRxfMoreData;
    ASSERT_TRUE(backend_->inject(0, {s}));
    ASSERT_FALSE(eventually([&] { return q.receive(f); }, 100ms));
    EXPECT_EQ(q.stats().rx_need_more_slots, 1u);
    expect_good_after("need more slots");
  }
  {  // extras chain never ends
    netif::ExtraInfo more = gso_extra(netif::kGsoTypeTcpv4, 1000);
    RxSlot s;
    s.data = pattern(100, 1);
    s.flags = netif::kRxfExtraInfo;
    RxSlot x;
    x.is_extra = true;
    x.extra = more;
    x.extra.flags = netif::kExtraFlagMore;
    ASSERT_TRUE(backend_->inject(0, {s, x, x}));
    ASSERT_FALSE(eventually([&] { return q.receive(f); }, 100ms));
    expect_good_after("endless extras");
    EXPECT_EQ(q.stats().rx_need_more_slots, 2u);
  }
  EXPECT_EQ(q.stats().rx_dropped_frames, 8u);
  EXPECT_EQ(q.stats().protocol_errors, 0u);
  EXPECT_EQ(q.error(), 0);
  EXPECT_EQ(q.rx_posted(), netif::kRxRingSize);
}

TEST_F(NetFrontSim, RxProducerOverflowBreaksTheQueueOnly) {
  start_backend();
  Options o;
  o.max_queues = 2;
  auto front = attach(o);
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  backend_->set_rx_rsp_prod(0, backend_->rx_rsp_prod_pvt(0) + 1000);
  RxFrame f;
  q.wait(100ms);
  EXPECT_FALSE(q.receive(f));
  EXPECT_EQ(q.stats().protocol_errors, 1u);
  EXPECT_EQ(q.error(), EPROTO);
  EXPECT_EQ(q.send(pattern(60, 1)), EPROTO);
  // Queue 1 still works.
  auto frame = pattern(60, 2);
  ASSERT_TRUE(backend_->inject(1, frame_slots(frame, 4096, 0)));
  ASSERT_TRUE(receive_one(front->queue(1), f));
  EXPECT_EQ(f.data, frame);
}

TEST_F(NetFrontSim, TrafficOnEveryQueueWithSingleAndSplitChannels) {
  for (bool split : {true, false}) {
    SCOPED_TRACE(split);
    BackendConfig c;
    c.split = split;
    start_backend(c);
    Options o;
    o.max_queues = 4;
    auto front = attach(o);
    ASSERT_TRUE(front);
    ASSERT_EQ(front->num_queues(), 4u);
    for (unsigned i = 0; i < 4; ++i) {
      Queue& q = front->queue(i);
      auto tx = pattern(1000 + i, i);
      ASSERT_EQ(q.send(tx), 0);
      ASSERT_TRUE(reap_until(q, 1));
      auto rx = pattern(2000 + i, 10 + i);
      ASSERT_TRUE(eventually([&] { return backend_->inject(i, frame_slots(rx, 4096, 0)); }));
      RxFrame f;
      ASSERT_TRUE(receive_one(q, f));
      EXPECT_EQ(f.data, rx);
    }
    auto seen = backend_->tx_frames();
    ASSERT_EQ(seen.size(), 4u);
    for (const auto& f : seen) EXPECT_EQ(f.data, pattern(1000 + f.queue, f.queue));
    EXPECT_EQ(front->detach(), 0);
    front.reset();
    backend_.reset();
    ASSERT_EQ(dom0_.write(backend_path_ + "/state", "1"), 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Control ring

TEST_F(NetFrontSim, ControlRingRequestsAreWellFormed) {
  BackendConfig c;
  c.ctrl_data = 128;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  ASSERT_TRUE(front->negotiated().ctrl_ring);
  auto r = front->set_hash_algorithm(netif::kHashAlgorithmToeplitz);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, netif::kCtrlStatusSuccess);
  auto flags = front->get_hash_flags();
  ASSERT_TRUE(flags.has_value());
  EXPECT_EQ(flags->data, 128u);
  ASSERT_TRUE(front->set_hash_flags(netif::kHashTypeIpv4 | netif::kHashTypeIpv4Tcp).has_value());
  std::vector<std::uint8_t> key(40);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(0x6d + i);
  ASSERT_TRUE(front->set_hash_key(key).has_value());
  ASSERT_TRUE(front->get_hash_mapping_size().has_value());
  ASSERT_TRUE(front->set_hash_mapping_size(64).has_value());
  std::vector<std::uint32_t> table(32);
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = static_cast<std::uint32_t>(i % 4);
  ASSERT_TRUE(front->set_hash_mapping(table, 32).has_value());

  auto seen = backend_->ctrl_requests();
  ASSERT_EQ(seen.size(), 7u);
  const std::uint16_t types[] = {netif::kCtrlTypeSetHashAlgorithm,     netif::kCtrlTypeGetHashFlags,
                                 netif::kCtrlTypeSetHashFlags,         netif::kCtrlTypeSetHashKey,
                                 netif::kCtrlTypeGetHashMappingSize,   netif::kCtrlTypeSetHashMappingSize,
                                 netif::kCtrlTypeSetHashMapping};
  std::set<std::uint16_t> ids;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].req.type, types[i]);
    ids.insert(seen[i].req.id);
  }
  EXPECT_EQ(ids.size(), seen.size()) << "fresh id per request";
  EXPECT_EQ(seen[0].req.data[0], netif::kHashAlgorithmToeplitz);
  EXPECT_EQ(seen[1].req.data[0], 0u);
  EXPECT_EQ(seen[2].req.data[0], netif::kHashTypeIpv4 | netif::kHashTypeIpv4Tcp);
  EXPECT_EQ(seen[3].req.data[0], front->ctrl_data_ref());
  EXPECT_EQ(seen[3].req.data[1], 40u);
  EXPECT_EQ(seen[3].req.data[2], 0u);
  EXPECT_EQ(seen[3].payload, key);
  EXPECT_EQ(seen[5].req.data[0], 64u);
  EXPECT_EQ(seen[6].req.data[1], 32u);
  EXPECT_EQ(seen[6].req.data[2], 32u);
  ASSERT_EQ(seen[6].payload.size(), 128u);
  EXPECT_EQ(std::memcmp(seen[6].payload.data(), table.data(), 128), 0);
  EXPECT_EQ(front->set_hash_key(std::vector<std::uint8_t>(4097)).error(), EINVAL);
}

TEST_F(NetFrontSim, ControlRingStatusesAndBadResponses) {
  BackendConfig c;
  c.ctrl_status = netif::kCtrlStatusNotSupported;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  auto r = front->set_hash_flags(netif::kHashTypeAll);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->status, netif::kCtrlStatusNotSupported);
  front->detach();
  front.reset();
  backend_.reset();
  ASSERT_EQ(dom0_.write(backend_path_ + "/state", "1"), 0);
  c.ctrl_status = 0;
  c.ctrl_bad_id = true;
  start_backend(c);
  front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->get_hash_flags().error(), EPROTO);
}

TEST_F(NetFrontSim, ControlRingCallsFailWithoutTheRing) {
  BackendConfig c;
  c.ctrl_ring = false;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->ctrl_ring(), nullptr);
  EXPECT_EQ(front->set_hash_algorithm(1).error(), EOPNOTSUPP);
  EXPECT_EQ(front->set_hash_key(std::vector<std::uint8_t>(4)).error(), EOPNOTSUPP);
}

// ---------------------------------------------------------------------------------------------
// Closing

TEST_F(NetFrontSim, DetachClosesBothEnds) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(fe("state"), "6");
  EXPECT_TRUE(eventually([&] { return backend_->finished(); }));
  EXPECT_EQ(front->queue(0).send(pattern(60, 1)), ENODEV);
  EXPECT_EQ(front->detach(), 0) << "idempotent";
}

TEST_F(NetFrontSim, FollowsBackendClosing) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->process_xenstore(), 0);
  backend_->go_closing();
  ASSERT_TRUE(eventually([&] { return front->process_xenstore() == ENODEV; }));
  EXPECT_FALSE(front->connected());
  EXPECT_EQ(front->backend_state(), XenbusStateClosing);
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(fe("state"), "6");
  EXPECT_TRUE(eventually([&] { return backend_->finished(); }));
}

TEST_F(NetFrontSim, ReattachAfterDetach) {
  start_backend();
  Options o;
  o.max_queues = 4;
  auto front = attach(o);
  ASSERT_TRUE(front);
  front->detach();
  front.reset();
  backend_.reset();
  ASSERT_EQ(dom0_.write(backend_path_ + "/state", "1"), 0);
  BackendConfig c;
  c.max_queues = 1;
  c.split = false;
  start_backend(c);
  o.max_queues = 1;
  front = attach(o);
  ASSERT_TRUE(front);
  auto keys = backend_->frontend_keys();
  EXPECT_FALSE(keys.contains("queue-0/tx-ring-ref")) << "stale per-queue keys removed";
  EXPECT_FALSE(keys.contains("event-channel-tx"));
  EXPECT_TRUE(keys.contains("event-channel"));
  EXPECT_EQ(keys["multi-queue-num-queues"], "1");
}

// ---------------------------------------------------------------------------------------------
// Guest mode: the TAP plumbing in a network namespace (root, /dev/net/tun and `ip netns`).

class GuestTap : public NetFrontSim {
 protected:
  void TearDown() override {
    if (!ns_.empty() && std::system(("ip netns del " + ns_ + " 2>/dev/null").c_str()) != 0)
      std::fprintf(stderr, "cannot delete network namespace %s\n", ns_.c_str());
    NetFrontSim::TearDown();
  }
  // An AF_PACKET socket on `ifname` inside the namespace.
  int packet_socket(const std::string& ifname) {
    int self = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = ::open(("/var/run/netns/" + ns_).c_str(), O_RDONLY | O_CLOEXEC);
    if (self < 0 || target < 0 || ::setns(target, CLONE_NEWNET) != 0) return -1;
    int s = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x0003 /* ETH_P_ALL */));
    sockaddr_ll sll{};
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(0x0003);
    sll.sll_ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
    if (s >= 0 && ::bind(s, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
      ::close(s);
      s = -1;
    }
    EXPECT_EQ(::setns(self, CLONE_NEWNET), 0);
    ::close(self);
    ::close(target);
    return s;
  }
  std::string ns_;
};

TEST_F(GuestTap, FramesCrossTheTapInBothDirections) {
  if (::access("/dev/net/tun", R_OK | W_OK) != 0 || ::geteuid() != 0) GTEST_SKIP() << "needs root and /dev/net/tun";
  ns_ = "pvnf-test-" + std::to_string(::getpid());
  if (std::system(("ip netns add " + ns_).c_str()) != 0) GTEST_SKIP() << "ip netns add failed";
  start_backend();
  Options o;
  o.max_queues = 2;
  auto front = attach(o);
  ASSERT_TRUE(front);
  GuestConfig cfg;
  cfg.netns = ns_;
  cfg.tap = "eth0";
  cfg.address = "10.99.0.2/24";
  auto fds = create_guest_tap(cfg, front->negotiated(), front->num_queues());
  ASSERT_TRUE(fds.has_value()) << std::strerror(fds.error());
  ASSERT_EQ(fds->size(), 2u);
  std::atomic<bool> stop{false};
  std::vector<ForwardStats> stats(2);
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 2; ++i)
    threads.emplace_back([&, i] { forward_queue(front->queue(i), (*fds)[i], front->negotiated(), stop, stats[i]); });
  auto cleanup = [&] {
    stop = true;
    for (auto& t : threads) t.join();
    threads.clear();
    for (int fd : *fds) ::close(fd);
    fds->clear();
  };
  // The interface got the toolstack's MAC and the address.
  std::string out;
  if (FILE* p = ::popen(("ip -n " + ns_ + " -o link show eth0; ip -n " + ns_ + " -o addr show eth0").c_str(), "r")) {
    char line[512];
    while (std::fgets(line, sizeof line, p)) out += line;
    ::pclose(p);
  }
  EXPECT_NE(out.find(kMac), std::string::npos) << out;
  EXPECT_NE(out.find("10.99.0.2/24"), std::string::npos) << out;
  EXPECT_NE(out.find("UP"), std::string::npos) << out;

  int sock = packet_socket("eth0");
  ASSERT_GE(sock, 0);
  // Namespace → backend: a frame sent on eth0 reaches the scripted backend byte-exact.
  std::vector<std::byte> frame = pattern(300, 42);
  const std::uint8_t hdr[14] = {0x02, 0, 0, 0, 0, 0x09, 0x00, 0x16, 0x3e, 0x12, 0x34, 0x56, 0x88, 0xb5};
  std::memcpy(frame.data(), hdr, 14);
  ASSERT_EQ(::send(sock, frame.data(), frame.size(), 0), static_cast<ssize_t>(frame.size()));
  EXPECT_TRUE(eventually([&] {
    for (const auto& f : backend_->tx_frames())
      if (f.data == frame) return true;
    return false;
  }));
  // Backend → namespace: an injected frame appears on eth0.
  std::vector<std::byte> in = pattern(500, 43);
  const std::uint8_t hdr2[14] = {0x00, 0x16, 0x3e, 0x12, 0x34, 0x56, 0x02, 0, 0, 0, 0, 0x09, 0x88, 0xb5};
  std::memcpy(in.data(), hdr2, 14);
  bool injected = false;
  RxSlot slot;
  slot.data = in;
  for (unsigned q = 0; q < 2 && !injected; ++q) injected = backend_->inject(q, {slot});
  ASSERT_TRUE(injected);
  bool seen = false;
  std::vector<std::byte> buf(2048);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!seen && std::chrono::steady_clock::now() < deadline) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n == static_cast<ssize_t>(in.size()) && std::memcmp(buf.data(), in.data(), in.size()) == 0) seen = true;
  }
  EXPECT_TRUE(seen);
  ::close(sock);
  cleanup();
  EXPECT_GE(stats[0].to_backend + stats[1].to_backend, 1u);
  EXPECT_GE(stats[0].from_backend + stats[1].from_backend, 1u);
  EXPECT_EQ(front->detach(), 0);
}

TEST(FrameHeaders, ParsesVlanIpv4TcpAndIpv6ExtensionHeaders) {
  std::vector<std::byte> f(200, std::byte{0});
  auto put = [&](std::size_t at, std::initializer_list<int> bytes) {
    for (int b : bytes) f[at++] = static_cast<std::byte>(b);
  };
  put(12, {0x81, 0x00, 0, 5, 0x08, 0x00});  // VLAN then IPv4
  put(18, {0x46});                          // IPv4, ihl 6 (24 bytes)
  put(18 + 9, {6});                         // TCP
  put(18 + 24 + 12, {0x80});                // doff 8 (32 bytes)
  auto h = parse_frame_headers(f);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->l2_len, 18);
  EXPECT_EQ(h->l3_len, 24);
  EXPECT_EQ(h->l4_proto, 6);
  EXPECT_EQ(h->l4_len, 32);
  std::vector<std::byte> g(200, std::byte{0});
  f.swap(g);
  put(12, {0x86, 0xdd, 0x60});
  put(14 + 6, {0});          // hop-by-hop
  put(14 + 40, {17, 0});     // next UDP, 8 bytes
  h = parse_frame_headers(f);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->ipv6);
  EXPECT_EQ(h->l3_len, 48);
  EXPECT_EQ(h->l4_proto, 17);
  EXPECT_EQ(h->l4_len, 8);
  EXPECT_FALSE(parse_frame_headers(std::span(f).first(30)));
}

}  // namespace
}  // namespace pvback::netfront
