// pvback-net as a whole device: the keys it advertises, the handshake with the netfront (one and
// several queues, split and shared event channels) with frames round-tripping through a net_ring
// exit, frontends it must refuse, the rate watch, hot unplug, SIGTERM and a XenStore server that
// dies under the backend.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>
#include <tuple>

#include "tests/netback/device/vif_fixture.hpp"

namespace {
// Orders frames by length, then content. std::sort's default (vector's operator<) makes GCC 12 at
// -O2 and above report a false -Wstringop-overread inside libstdc++'s memcmp.
bool by_bytes(const std::vector<std::byte>& x, const std::vector<std::byte>& y) {
  if (x.size() != y.size()) return x.size() < y.size();
  return !x.empty() && std::memcmp(x.data(), y.data(), x.size()) < 0;
}
}  // namespace

namespace pvback::test {
namespace {

using namespace std::chrono_literals;

TEST_F(VifTest, AdvertisesFeaturesAtInitWait) {
  add_vif_and_start([] {
    auto a = dpdk("net_null", 10);
    a.insert(a.end(), {"--max-queues", "3"});
    return a;
  }());
  EXPECT_EQ(backend_key("feature-sg"), "1");
  EXPECT_EQ(backend_key("feature-rx-copy"), "1");
  EXPECT_EQ(backend_key("feature-rx-flip"), "0");
  EXPECT_EQ(backend_key("feature-split-event-channels"), "1");
  EXPECT_EQ(backend_key("feature-ctrl-ring"), "1");
  EXPECT_EQ(backend_key("feature-multicast-control"), "1");
  EXPECT_EQ(backend_key("feature-dynamic-multicast-control"), "1");
  EXPECT_EQ(backend_key("feature-xdp-headroom"), "1");
  EXPECT_EQ(backend_key("feature-ipv6-csum-offload"), "1");
  EXPECT_EQ(backend_key("multi-queue-max-queues"), "3");
  // No --dpdk-tso: no GSO offered to the guest, whatever the port can do.
  EXPECT_EQ(backend_key("feature-gso-tcpv4"), "0");
  EXPECT_EQ(backend_key("feature-gso-tcpv6"), "0");
  EXPECT_EQ(backend_key("error"), "<missing>");
}

// The vif's hotplug script (vif-bridge puts the interface on its bridge) reports before the guest
// sees the backend Connected, as Linux's netback waits for "hotplug-status".
TEST_F(VifTest, HotplugScriptGatesConnected) {
  sim::VifSpec spec;
  spec.hotplug_status.clear();  // the script has not run yet
  backend_log_ = dir_ / "pvback-net.log";
  add_vif_and_start(dpdk("net_null", 12), spec);
  auto log_text = [&] {
    std::ifstream in(backend_log_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  ASSERT_TRUE(eventually([&] {
    return log_text().find("waiting for the hotplug script /etc/xen/scripts/vif-bridge") != std::string::npos;
  })) << log_text();
  std::atomic<bool> reported{false};
  std::thread script([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    reported = true;
    EXPECT_EQ(dom0_xs_.write(backend_path() + "/hotplug-status", "connected"), 0);
  });
  auto front = attach();
  script.join();
  ASSERT_NE(front, nullptr);
  EXPECT_TRUE(reported.load()) << "Connected before the hotplug script reported";
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

TEST_F(VifTest, OptionsTurnFeaturesOff) {
  add_vif_and_start([] {
    auto a = dpdk("net_null", 11);
    a.insert(a.end(), {"--max-queues", "1", "--no-split-event-channels", "--no-ctrl-ring", "--no-multicast-control",
                       "--no-xdp"});
    return a;
  }());
  EXPECT_EQ(backend_key("feature-split-event-channels"), "0");
  EXPECT_EQ(backend_key("feature-ctrl-ring"), "0");
  EXPECT_EQ(backend_key("feature-multicast-control"), "0");
  EXPECT_EQ(backend_key("feature-dynamic-multicast-control"), "0");
  EXPECT_EQ(backend_key("feature-xdp-headroom"), "0");
  EXPECT_EQ(backend_key("multi-queue-max-queues"), "1");
  // The netfront then uses one queue, one event channel and no control ring.
  netfront::Options opts;
  opts.max_queues = 4;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(front->negotiated().num_queues, 1u);
  EXPECT_FALSE(front->negotiated().split_event_channels);
  EXPECT_FALSE(front->negotiated().ctrl_ring);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

// (queues, split event channels, net_ring index)
class VifHandshakeTest : public VifTest, public ::testing::WithParamInterface<std::tuple<unsigned, bool, int>> {};

// A unicast frame to the guest with a payload unique to (queue, i).
std::vector<std::byte> make_frame(const netfront::Mac& dst, unsigned queue, unsigned i) {
  const std::size_t size = 60 + (queue * 311 + i * 97) % 1400;
  std::vector<std::byte> f(size);
  std::memcpy(f.data(), dst.data(), 6);
  const std::uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x01};
  std::memcpy(f.data() + 6, src, 6);
  f[12] = std::byte{0x88};  // IEEE 802 local experimental ethertype
  f[13] = std::byte{0xb5};
  for (std::size_t k = 14; k < size; ++k) f[k] = static_cast<std::byte>((k * 31 + queue * 7 + i * 13) & 0xff);
  f[14] = static_cast<std::byte>(queue);
  f[15] = static_cast<std::byte>(i);
  return f;
}

TEST_P(VifHandshakeTest, ConnectsAndFramesRoundTripThroughNetRing) {
  const auto [queues, split, ring] = GetParam();
  std::vector<std::string> args = dpdk("net_ring", ring);
  args.insert(args.end(), {"--max-queues", "4"});
  add_vif_and_start(args);

  netfront::Options opts;
  opts.max_queues = queues;
  opts.split_event_channels = split;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  EXPECT_TRUE(front->connected());
  EXPECT_EQ(front->state(), XenbusStateConnected);
  const auto& n = front->negotiated();
  EXPECT_EQ(n.num_queues, queues);
  EXPECT_EQ(n.split_event_channels, split);
  EXPECT_EQ(n.backend.max_queues, 4u);
  EXPECT_TRUE(n.backend.rx_copy);
  ASSERT_EQ(front->num_queues(), queues);
  for (unsigned q = 0; q < queues; ++q) EXPECT_EQ(front->queue(q).split(), split) << "queue " << q;
  // The backend's own view, from its statistics.
  const std::string want_neg = "\"queues\": " + std::to_string(queues) +
                               ", \"split_event_channels\": " + (split ? "true" : "false");
  ASSERT_TRUE(eventually([&] { return stats_text().find(want_neg) != std::string::npos; }, 30s)) << stats_text();

  constexpr unsigned kPerQueue = 40;
  std::vector<std::vector<std::byte>> sent;
  std::vector<std::vector<std::byte>> received;
  auto drain = [&] {
    for (unsigned q = 0; q < queues; ++q) {
      auto& queue = front->queue(q);
      queue.reap_tx();
      netfront::RxFrame f;
      while (queue.receive(f)) received.push_back(f.data);
    }
  };
  for (unsigned q = 0; q < queues; ++q) {
    for (unsigned i = 0; i < kPerQueue; ++i) {
      auto frame = make_frame(n.mac, q, i);
      int rc = EAGAIN;
      ASSERT_TRUE(eventually(
          [&] {
            rc = front->queue(q).send(frame);
            if (rc == EAGAIN) {
              front->queue(q).wait(5ms);
              drain();
            }
            return rc != EAGAIN;
          },
          30s));
      ASSERT_EQ(rc, 0) << "queue " << q << " frame " << i;
      sent.push_back(std::move(frame));
    }
  }
  const long long total = static_cast<long long>(sent.size());
  ASSERT_TRUE(eventually(
      [&] {
        for (unsigned q = 0; q < queues; ++q) front->queue(q).wait(2ms);
        drain();
        return static_cast<long long>(received.size()) >= total;
      },
      30s))
      << "received " << received.size() << " of " << total << "\n"
      << stats_text();
  // Counted on the way out (guest -> port) and on the way back in (port -> guest).
  ASSERT_TRUE(eventually([&] { return stat("tx_packets") >= total && stat("rx_packets") >= total; }, 30s))
      << stats_text();
  EXPECT_EQ(stat("tx_packets"), total);
  EXPECT_EQ(stat("rx_packets"), total);
  long long bytes = 0;
  for (const auto& f : sent) bytes += static_cast<long long>(f.size());
  EXPECT_EQ(stat("tx_bytes"), bytes);
  // Byte-exact: every frame came back once, unchanged (order across queues is not defined).
  EXPECT_EQ(received.size(), sent.size());
  std::sort(sent.begin(), sent.end(), by_bytes);
  std::sort(received.begin(), received.end(), by_bytes);
  EXPECT_TRUE(received == sent);
  for (unsigned q = 0; q < queues; ++q) {
    const auto& s = front->queue(q).stats();
    EXPECT_EQ(s.tx_error + s.tx_dropped + s.tx_bad_response, 0u) << "queue " << q;
    EXPECT_EQ(s.rx_dropped_frames, 0u) << "queue " << q;
  }
  // A clean goodbye: the backend goes Closed and keeps serving the vif.
  ASSERT_EQ(front->detach(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }, 30s));
  EXPECT_TRUE(backend_->running());
}

INSTANTIATE_TEST_SUITE_P(Queues, VifHandshakeTest,
                         ::testing::Values(std::make_tuple(1u, false, 20), std::make_tuple(1u, true, 21),
                                           std::make_tuple(3u, false, 22), std::make_tuple(3u, true, 23)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "q_" +
                                  (std::get<1>(info.param) ? "split" : "shared");
                         });

// A frontend value the backend must refuse, written by hand as the guest.
struct BadFrontend {
  const char* name;
  const char* key;    // the key to change
  const char* value;  // nullptr: leave the key out
  int error;          // the errno the error node starts with
};

class VifBadFrontendTest : public VifTest, public ::testing::WithParamInterface<BadFrontend> {};

TEST_P(VifBadFrontendTest, IsRefusedWithClosingAndAnErrorNode) {
  const BadFrontend bad = GetParam();
  add_vif_and_start([] {
    auto a = dpdk("net_null", 30);
    a.insert(a.end(), {"--max-queues", "2"});
    return a;
  }());
  auto gxs = xenbus::XenStore::open(hv_->platform(kGuest).xenstore_path());
  ASSERT_TRUE(gxs.has_value());
  const std::string fe = frontend_path();
  // Otherwise a well-formed frontend (the grant refs and ports are never reached: each refusal
  // happens before the rings are looked at).
  std::vector<std::pair<std::string, std::string>> keys = {
      {"request-rx-copy", "1"},        {"feature-rx-notify", "1"}, {"feature-sg", "1"},
      {"multi-queue-num-queues", "1"}, {"tx-ring-ref", "8"},       {"rx-ring-ref", "9"},
      {"event-channel", "5"},
  };
  bool replaced = false;
  for (auto& [k, v] : keys)
    if (k == bad.key) {
      replaced = true;
      if (bad.value != nullptr) v = bad.value;
    }
  if (!replaced && bad.value != nullptr) keys.emplace_back(bad.key, bad.value);
  if (bad.value == nullptr) std::erase_if(keys, [&](const auto& kv) { return kv.first == bad.key; });
  for (const auto& [k, v] : keys) ASSERT_EQ(gxs->write(fe + "/" + k, v), 0) << k;
  ASSERT_EQ(gxs->write(fe + "/state", std::to_string(XenbusStateConnected)), 0);

  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosing; }, 30s))
      << "backend state " << backend_state();
  const std::string error = backend_key("error");
  EXPECT_TRUE(error.starts_with(std::to_string(bad.error) + " ")) << error;
  // Only the device failed: the daemon keeps running, and stays Closing.
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(backend_->running());
  EXPECT_EQ(backend_state(), XenbusStateClosing);

  // A full close by the frontend gets the device out of it; a proper netfront then connects and
  // the stale error goes.
  for (const auto& [k, v] : keys) gxs->rm(fe + "/" + k);
  gxs->rm(fe + "/" + std::string(bad.key));
  ASSERT_EQ(gxs->write(fe + "/state", std::to_string(XenbusStateClosed)), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }, 30s))
      << "backend state " << backend_state();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  EXPECT_EQ(backend_key("error"), "<missing>");
  EXPECT_TRUE(backend_->running());
}

INSTANTIATE_TEST_SUITE_P(
    Values, VifBadFrontendTest,
    ::testing::Values(BadFrontend{"ZeroQueues", "multi-queue-num-queues", "0", EINVAL},
                      BadFrontend{"MoreQueuesThanMax", "multi-queue-num-queues", "3", EINVAL},
                      BadFrontend{"QueuesNotANumber", "multi-queue-num-queues", "two", EINVAL},
                      BadFrontend{"NoRequestRxCopy", "request-rx-copy", nullptr, EOPNOTSUPP},
                      BadFrontend{"RequestRxCopyZero", "request-rx-copy", "0", EOPNOTSUPP},
                      BadFrontend{"NoFeatureRxNotify", "feature-rx-notify", nullptr, EINVAL},
                      BadFrontend{"XdpHeadroom4000", "xdp-headroom", "4000", EINVAL}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(VifTest, RateChangesAtRunTimeAppearInTheStatistics) {
  sim::VifSpec spec;
  spec.rate = "1000000,50000";
  add_vif_and_start(dpdk("net_null", 40), spec);
  auto rate_is = [&](const std::string& bytes, const std::string& usec) {
    const std::string want = "\"rate\": {\"bytes\": " + bytes + ", \"usec\": " + usec + "}";
    return eventually([&] { return stats_text().find(want) != std::string::npos; }, 30s);
  };
  EXPECT_TRUE(rate_is("1000000", "50000")) << stats_text();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  // Changed while connected.
  ASSERT_EQ(dom0_xs_.write(backend_path() + "/rate", "125000,20000"), 0);
  EXPECT_TRUE(rate_is("125000", "20000")) << stats_text();
  // Malformed: unlimited.
  ASSERT_EQ(dom0_xs_.write(backend_path() + "/rate", "fast"), 0);
  EXPECT_TRUE(rate_is("0", "0")) << stats_text();
  ASSERT_EQ(dom0_xs_.write(backend_path() + "/rate", "5000,100"), 0);
  EXPECT_TRUE(rate_is("5000", "100")) << stats_text();
  // Removed: unlimited.
  ASSERT_EQ(dom0_xs_.rm(backend_path() + "/rate"), 0);
  EXPECT_TRUE(rate_is("0", "0")) << stats_text();
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

TEST_F(VifTest, HotUnplugWhileConnectedExitsZero) {
  add_vif_and_start(dpdk("net_ring", 50));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->queue(0).send(make_frame(front->negotiated().mac, 0, 0)), 0);
  ASSERT_TRUE(eventually([&] { return stat("tx_packets") >= 1; }, 30s)) << stats_text();
  int unplug_rc = -1;
  // libxl's unplug: online = 0, backend state Closing, then wait (long here) for the backend to
  // close before removing the nodes. The backend must get there by following the frontend, not
  // by the toolstack giving up: it has to exit well before that timeout.
  std::thread toolstack([&] {
    auto xs = xenbus::XenStore::open(hv_->platform(0).xenstore_path());
    if (xs) unplug_rc = sim::remove_vif(*xs, 0, kGuest, kHandle, 90000);
  });
  EXPECT_TRUE(eventually(
      [&] {
        front->process_xenstore();
        return !front->connected();
      },
      30s));
  // The guest closes its end (Closing, Closed), as Linux netfront does on the backend's Closing.
  front->detach();
  auto status = backend_->wait_exit(std::chrono::seconds(30));
  toolstack.join();
  ASSERT_TRUE(status.has_value()) << "pvback-net did not exit after hot unplug";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_EQ(unplug_rc, 0);
  EXPECT_EQ(dom0_xs_.exists(backend_path()).value_or(true), false);
}

TEST_F(VifTest, SigtermWhileConnectedExitsZero) {
  add_vif_and_start([] {
    auto a = dpdk("net_ring", 60);
    a.insert(a.end(), {"--max-queues", "2"});
    return a;
  }());
  netfront::Options opts;
  opts.close_timeout = 200ms;  // nobody answers the frontend's goodbye afterwards
  opts.max_queues = 2;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->queue(1).send(make_frame(front->negotiated().mac, 1, 0)), 0);
  ASSERT_TRUE(eventually([&] { return stat("tx_packets") >= 1; }, 30s)) << stats_text();
  backend_->terminate();
  auto status = backend_->wait_exit();
  ASSERT_TRUE(status.has_value()) << "pvback-net did not exit on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
}

// As for pvback-blk (the main loop is the same, xenbus/backend_daemon.cpp): a XenStore server that
// dies is noticed, logged naming the device, and ends the process with status 1 for a restart.
TEST_F(VifTest, LostXenStoreConnectionEndsTheBackendWithStatus1) {
  backend_log_ = dir_ / "pvback-net.log";
  add_vif_and_start(dpdk("net_null", 62));
  // Idle in its main loop (which writes the statistics) when the server goes.
  ASSERT_TRUE(eventually([&] { return stats_text().find("InitWait") != std::string::npos; })) << stats_text();
  hv_->stop_xenstore();
  auto status = backend_->wait_exit(10s);
  std::ifstream in(backend_log_);
  std::stringstream log;
  log << in.rdbuf();
  ASSERT_TRUE(status.has_value()) << "pvback-net still runs 10 s after the XenStore server died\n" << log.str();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status << "\n" << log.str();
  EXPECT_NE(log.str().find("vif 1/0: lost the XenStore connection"), std::string::npos) << log.str();
}

TEST_F(VifTest, SigtermBeforeAnyFrontendExitsZero) {
  add_vif_and_start(dpdk("net_null", 61));
  backend_->terminate();
  auto status = backend_->wait_exit();
  ASSERT_TRUE(status.has_value()) << "pvback-net did not exit on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
}

// pvback-net restarted under a connected guest: the new process attaches the TX and RX rings
// where their responses stand, so the guest's posted RX buffers and a frame it sent while no
// backend ran are served, and traffic goes on without the guest reconnecting.
TEST_F(VifTest, RestartedBackendResumesUnderAConnectedFrontend) {
  const std::vector<std::string> args = [] {
    auto a = dpdk("net_ring", 70);
    a.insert(a.end(), {"--max-queues", "2"});
    return a;
  }();
  add_vif_and_start(args);
  netfront::Options opts;
  opts.max_queues = 2;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->num_queues(), 2u);
  const auto mac = front->negotiated().mac;

  std::vector<std::vector<std::byte>> sent, received;
  auto drain = [&] {
    for (unsigned q = 0; q < front->num_queues(); ++q) {
      front->queue(q).reap_tx();
      netfront::RxFrame f;
      while (front->queue(q).receive(f)) received.push_back(f.data);
    }
  };
  auto send = [&](unsigned q, unsigned i) {
    auto frame = make_frame(mac, q, i);
    int rc = EAGAIN;
    EXPECT_TRUE(eventually(
        [&] {
          rc = front->queue(q).send(frame);
          if (rc == EAGAIN) {
            front->queue(q).wait(5ms);
            drain();
          }
          return rc != EAGAIN;
        },
        30s));
    EXPECT_EQ(rc, 0) << "queue " << q << " frame " << i;
    sent.push_back(std::move(frame));
  };
  auto all_back = [&] {
    return eventually(
        [&] {
          for (unsigned q = 0; q < front->num_queues(); ++q) front->queue(q).wait(2ms);
          drain();
          return received.size() >= sent.size();
        },
        30s);
  };
  unsigned next = 0;
  for (; next < 50; ++next) send(next % 2, next);
  ASSERT_TRUE(all_back()) << received.size() << " of " << sent.size() << "\n" << stats_text();

  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE(restart);
    backend_->terminate();
    auto status = backend_->wait_exit();
    ASSERT_TRUE(status.has_value()) << "pvback-net did not exit on SIGTERM";
    ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
    EXPECT_EQ(backend_state(), XenbusStateConnected);
    std::filesystem::remove(stats_);
    send(1, next++);  // published while no backend serves the ring

    backend_ = std::make_unique<BackendProcess>(PVBACK_NET, std::chrono::seconds(30));
    backend_->start(hv_->run_dir(), backend_path(), args, stats_.string());
    ASSERT_TRUE(eventually([&] { return stats_text().find("\"state\": \"Connected\"") != std::string::npos; }, 30s))
        << stats_text();
    EXPECT_EQ(backend_state(), XenbusStateConnected);
    for (unsigned k = 0; k < 40; ++k, ++next) send(next % 2, next);
    ASSERT_TRUE(all_back()) << received.size() << " of " << sent.size() << "\n" << stats_text();
    EXPECT_TRUE(front->connected());
  }
  EXPECT_EQ(received.size(), sent.size());
  std::sort(sent.begin(), sent.end(), by_bytes);
  std::sort(received.begin(), received.end(), by_bytes);
  EXPECT_TRUE(received == sent);
  for (unsigned q = 0; q < front->num_queues(); ++q) {
    const auto& s = front->queue(q).stats();
    EXPECT_EQ(s.tx_error + s.tx_dropped + s.tx_bad_response, 0u) << "queue " << q;
  }
}

// A successor whose exit has fewer queues than the connected frontend uses (started with other
// options after a SIGKILL): it advertises no more than it has, so it refuses that connection with
// the reason, and serves on (it used to take the frontend's 4 queues from the directory and index
// its exit's ports past their end); the directory says 2 before the frontend's next connection,
// which gets 2.
TEST_F(VifTest, ASuccessorWithFewerQueuesThanTheFrontendUsesRefusesItAndServesOn) {
  backend_log_ = dir_ / "net.log";
  add_vif_and_start([] {
    auto a = dpdk("net_null", 60);
    a.insert(a.end(), {"--max-queues", "4"});
    return a;
  }());
  netfront::Options o;
  o.max_queues = 4;
  auto front = attach(o);
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->negotiated().num_queues, 4u);
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());

  auto args = dpdk("net_null", 61);
  args.insert(args.end(), {"--max-queues", "2"});
  restart_backend(std::move(args));
  const auto log = [&] { return log_text(); };
  ASSERT_TRUE(eventually([&] { return log().find("multi-queue-num-queues: 4 queues (1..2") != std::string::npos; }))
      << log();
  EXPECT_TRUE(backend_->running()) << log();
  EXPECT_EQ(backend_key("multi-queue-max-queues"), "4");  // the frontend's connection's, untouched
  front.reset();
  auto again = attach(o);
  ASSERT_NE(again, nullptr) << log();
  EXPECT_EQ(again->negotiated().num_queues, 2u);
  EXPECT_EQ(backend_key("multi-queue-max-queues"), "2");
  EXPECT_TRUE(backend_->running()) << log();
}

// A successor whose exit cannot send the GSO its predecessor offered (another exit, or started
// with --no-dpdk-soft-gso): it says so, and the directory offers no GSO before the frontend's next
// connection (the guest would otherwise keep sending GSO frames the exit drops).
TEST_F(VifTest, ASuccessorThatCannotSendTheOfferedGsoWithdrawsItBeforeTheNextConnection) {
  backend_log_ = dir_ / "net.log";
  add_vif_and_start(dpdk("net_null", 62));
  EXPECT_EQ(backend_key("feature-gso-tcpv4"), "0");  // net_null computes no checksums
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(::kill(backend_->pid(), SIGKILL), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value());
  // What a predecessor with GSO left in the directory the frontend read.
  ASSERT_EQ(dom0_xs_.write(backend_path() + "/feature-gso-tcpv4", "1"), 0);
  restart_backend(dpdk("net_null", 63));
  const auto log = [&] { return log_text(); };
  ASSERT_TRUE(eventually([&] { return log().find("was offered GSO that net_null63 cannot send") != std::string::npos; }))
      << log();
  front.reset();
  auto again = attach();
  ASSERT_NE(again, nullptr) << log();
  EXPECT_EQ(backend_key("feature-gso-tcpv4"), "0");
  EXPECT_TRUE(backend_->running()) << log();
}

}  // namespace
}  // namespace pvback::test
