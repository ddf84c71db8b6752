#include <gtest/gtest.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/xenbus/sim_fixture.hpp"
#include "xenbus/backend_device.hpp"
#include "xenbus/xenstore.hpp"

extern "C" {
#include <xenstore.h>
}

namespace pvback::xenbus {
namespace {

constexpr const char* kBackend = "/local/domain/0/backend/vbd/5/768";
constexpr const char* kFrontend = "/local/domain/5/device/vbd/768";

// Records what the state machine asked of it; connect() can be told to fail.
struct FakeDriver : BackendDriver {
  int advertise(XenStore& xs, const std::string& backend_path) override {
    ++advertised;
    state_when_advertising = xs.read(backend_path + "/state").value_or("");
    return advertise_result != 0 ? advertise_result : xs.write(backend_path + "/feature-test", "1");
  }
  int prepare(XenStore& xs, const std::string& backend_path) override {
    ++prepares;
    state_when_preparing = xs.read(backend_path + "/state").value_or("");
    return prepare_result;
  }
  int connect(XenStore& xs, const std::string& frontend_path) override {
    ++connects;
    connected_to = frontend_path;
    ring_ref_seen = xs.read(frontend_path + "/ring-ref").value_or("");
    return connect_result;
  }
  void disconnect() override {
    ++disconnects;
    if (on_disconnect) std::exchange(on_disconnect, nullptr)();  // once
  }
  int reconfigure(XenStore& xs, const std::string& frontend_path) override {
    ++reconfigures;
    xdp_seen = xs.read(frontend_path + "/xdp-headroom").value_or("");
    return reconfigure_result;
  }

  int reconfigure_result = 0;
  int reconfigures = 0;
  std::string xdp_seen;
  int advertise_result = 0;
  int prepare_result = 0;
  int prepares = 0;
  std::string state_when_preparing;
  int connect_result = 0;
  int advertised = 0;
  int connects = 0;
  int disconnects = 0;
  std::string state_when_advertising;
  std::string connected_to;
  std::string ring_ref_seen;
  // Runs inside the next disconnect(), on the thread that handles the watch events.
  std::function<void()> on_disconnect;
};

class BackendDeviceSim : public testing::SimXenStoreTest {
 protected:
  void SetUp() override {
    SimXenStoreTest::SetUp();
    backend_xs_ = connect();
    frontend_ = connect();      // the scripted frontend (and toolstack)
    ASSERT_TRUE(backend_xs_ && frontend_);
  }

  // What the toolstack writes before it starts a backend.
  void create_device(const std::string& frontend_id = "5", const std::string& frontend_path = kFrontend) {
    const std::string be = kBackend;
    ASSERT_EQ(frontend_.write(be + "/frontend", frontend_path), 0);
    ASSERT_EQ(frontend_.write(be + "/frontend-id", frontend_id), 0);
    ASSERT_EQ(frontend_.write(be + "/online", "1"), 0);
    ASSERT_EQ(frontend_.write(be + "/state", "1"), 0);
    const std::string fe = kFrontend;
    ASSERT_EQ(frontend_.write(fe + "/backend", be), 0);
    ASSERT_EQ(frontend_.write(fe + "/backend-id", "0"), 0);
    ASSERT_EQ(frontend_.write(fe + "/state", "1"), 0);
  }

  // create_device() for domain 5 as a guest: introduced, with the permissions libxl gives the two
  // directories.
  void create_guest_device() {
    ASSERT_TRUE(xs_introduce_domain(frontend_.native(), 5, 0, 0)) << std::strerror(errno);
    create_device();
    const std::vector<Permission> backend_perms{{0, PermAccess::None}, {5, PermAccess::Read}};
    const std::vector<Permission> frontend_perms{{5, PermAccess::None}, {0, PermAccess::Read}};
    for (const char* key : {"", "/frontend", "/frontend-id", "/online", "/state"})
      ASSERT_EQ(frontend_.set_permissions(std::string(kBackend) + key, backend_perms), 0);
    for (const char* key : {"", "/backend", "/backend-id", "/state"})
      ASSERT_EQ(frontend_.set_permissions(std::string(kFrontend) + key, frontend_perms), 0);
  }

  void start_device(const std::string& script = {}) {
    create_device();
    if (!script.empty()) {
      ASSERT_EQ(frontend_.write(std::string(kBackend) + "/script", script), 0);
    }
    device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
    device_->set_on_removed([this] { ++removed_callbacks_; });
    ASSERT_EQ(device_->start(), 0);
  }

  bool wait_for(const std::function<bool()>& done) {
    return pump_until(device_->fd(), [this] { device_->handle_events(); }, done);
  }
  bool wait_for_state(State state) {
    return wait_for([&] { return device_->state() == state; });
  }

  void set_frontend_state(State state) {
    ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/state", std::to_string(static_cast<int>(state))), 0);
  }
  std::string backend_node(const std::string& key) {
    return frontend_.read(std::string(kBackend) + "/" + key).value_or("<missing>");
  }

  void connect_frontend() {
    ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/ring-ref", "8"), 0);
    set_frontend_state(XenbusStateInitialised);
    ASSERT_TRUE(wait_for_state(XenbusStateConnected));
    set_frontend_state(XenbusStateConnected);
  }

  // Makes sure every event caused so far has been handled: the marker write is ordered after them.
  void settle() {
    const std::string marker = std::string(kBackend) + "/test-marker";
    const std::string value = std::to_string(++marker_count_);
    ASSERT_EQ(frontend_.write(marker, value), 0);
    ASSERT_TRUE(wait_for([&] { return backend_xs_.read(marker).value_or("") == value && drain_once(); }));
  }
  bool drain_once() {
    device_->handle_events();
    return backend_xs_.read_watch().error() == EAGAIN;
  }

  XenStore backend_xs_;
  XenStore frontend_;
  FakeDriver driver_;
  std::unique_ptr<BackendDevice> device_;
  int removed_callbacks_ = 0;
  int marker_count_ = 0;
};

TEST_F(BackendDeviceSim, AdvertisesThenWaitsForFrontend) {
  start_device();
  EXPECT_EQ(driver_.advertised, 1);
  EXPECT_EQ(driver_.state_when_advertising, "1") << "features must be written before InitWait";
  EXPECT_EQ(backend_node("feature-test"), "1");
  EXPECT_EQ(device_->state(), XenbusStateInitWait);
  EXPECT_EQ(backend_node("state"), "2");
  EXPECT_EQ(device_->frontend_path(), kFrontend);
  EXPECT_EQ(device_->name(), "vbd 5/768");
  settle();
  EXPECT_EQ(driver_.connects, 0) << "frontend is still Initialising";
}

TEST_F(BackendDeviceSim, WithoutAHotplugScriptPreparesBeforeInitWait) {
  start_device();
  EXPECT_EQ(driver_.prepares, 1);
  EXPECT_EQ(driver_.state_when_preparing, "1") << "what the frontend reads of the storage comes before InitWait";
  connect_frontend();
  settle();
  EXPECT_EQ(driver_.prepares, 1) << "prepared once";
}

// libxl runs the script once the backend is at InitWait; the device is served only once the script
// reported "connected" (xenbus/hotplug.hpp).
TEST_F(BackendDeviceSim, HotplugScriptGatesPrepareAndConnect) {
  start_device("/etc/xen/scripts/block");
  EXPECT_EQ(backend_node("state"), "2");
  EXPECT_EQ(driver_.prepares, 0) << "nothing is opened before the script reported";
  ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/ring-ref", "8"), 0);
  set_frontend_state(XenbusStateInitialised);
  settle();
  EXPECT_EQ(driver_.prepares, 0);
  EXPECT_EQ(driver_.connects, 0) << "connected before the hotplug script reported";
  EXPECT_EQ(device_->state(), XenbusStateInitWait);
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/hotplug-status", "connected"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateConnected));
  EXPECT_EQ(driver_.prepares, 1);
  EXPECT_EQ(driver_.state_when_preparing, "2");
  EXPECT_EQ(driver_.connects, 1);
}

// A script that refused the device (block's sharing check: "busy"; any failure: "error") leaves it
// at InitWait with nothing opened, as Linux's backends do; the toolstack reports and removes it.
TEST_F(BackendDeviceSim, HotplugScriptRefusalServesNothing) {
  start_device("/etc/xen/scripts/block");
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/hotplug-error", "in use by domain 3"), 0);
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/hotplug-status", "busy"), 0);
  ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/ring-ref", "8"), 0);
  set_frontend_state(XenbusStateInitialised);
  settle();
  EXPECT_EQ(driver_.prepares, 0);
  EXPECT_EQ(driver_.connects, 0);
  EXPECT_EQ(device_->state(), XenbusStateInitWait);
  // libxl's teardown: online=0, Closing, then the nodes go.
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/online", "0"), 0);
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_EQ(driver_.connects, 0);
}

// Linux's blkback waits for "physical-device", which block writes before its status.
TEST_F(BackendDeviceSim, PhysicalDeviceOpensTheHotplugGate) {
  start_device("/etc/xen/scripts/block");
  EXPECT_EQ(driver_.prepares, 0);
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/physical-device", "fe:0"), 0);
  ASSERT_TRUE(wait_for([&] { return driver_.prepares == 1; }));
  connect_frontend();
  EXPECT_EQ(driver_.connects, 1);
}

// A backend restarted under a connected device finds the script's report there already.
TEST_F(BackendDeviceSim, HotplugStatusAlreadyThereAtStart) {
  create_device();
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/script", "/etc/xen/scripts/vif-bridge"), 0);
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/hotplug-status", "connected"), 0);
  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  ASSERT_EQ(device_->start(), 0);
  EXPECT_EQ(driver_.prepares, 1);
  EXPECT_EQ(driver_.state_when_preparing, "1");
}

TEST_F(BackendDeviceSim, PrepareFailureCloses) {
  create_device();
  driver_.prepare_result = ENOENT;
  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  EXPECT_EQ(device_->start(), ENOENT);
  EXPECT_EQ(device_->state(), XenbusStateClosing);
  EXPECT_NE(backend_node("error"), "<missing>");
}

TEST_F(BackendDeviceSim, PrepareFailureAfterTheScriptCloses) {
  start_device("/etc/xen/scripts/block");
  driver_.prepare_result = ENOENT;
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/hotplug-status", "connected"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  EXPECT_EQ(backend_node("state"), "5");
  EXPECT_EQ(backend_node("error").rfind(std::to_string(ENOENT) + " ", 0), 0u) << backend_node("error");
}

// Unplugged and plugged back before the backend looked (the soak's clean shutdown and next life
// of a guest): the new directory is a new device. The old one ends without writing into it; had it
// carried on ("frontend reinitialising"), the new directory would have had no features at all.
TEST_F(BackendDeviceSim, DirectoryWrittenAnewEndsTheOldDevice) {
  start_device();
  connect_frontend();
  settle();
  ASSERT_EQ(frontend_.rm(kBackend), 0);
  ASSERT_EQ(frontend_.rm(kFrontend), 0);
  create_device();  // state 1 in both, as libxl writes them
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_EQ(removed_callbacks_, 1);
  EXPECT_FALSE(device_->driver_connected());
  EXPECT_EQ(backend_node("state"), "1") << "the old device wrote into the new directory";
  EXPECT_EQ(backend_node("feature-test"), "<missing>");
}

TEST_F(BackendDeviceSim, FullHandshakeReachesConnected) {
  start_device();
  connect_frontend();
  EXPECT_EQ(driver_.connects, 1);
  EXPECT_EQ(driver_.connected_to, kFrontend);
  EXPECT_EQ(driver_.ring_ref_seen, "8");
  EXPECT_EQ(backend_node("state"), "4");
  EXPECT_TRUE(device_->driver_connected());
  settle();
  EXPECT_EQ(driver_.connects, 1) << "frontend Connected after backend Connected must not reconnect";
  EXPECT_EQ(device_->state(), XenbusStateConnected);
  EXPECT_FALSE(device_->removed());
}

TEST_F(BackendDeviceSim, ReconfiguringRoundTrip) {
  start_device();
  connect_frontend();
  ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/xdp-headroom", "256"), 0);
  set_frontend_state(XenbusStateReconfiguring);
  ASSERT_TRUE(wait_for_state(XenbusStateReconfigured));
  EXPECT_EQ(driver_.reconfigures, 1);
  EXPECT_EQ(driver_.xdp_seen, "256") << "the driver re-reads the frontend's keys";
  EXPECT_EQ(backend_node("state"), "8");
  set_frontend_state(XenbusStateConnected);
  ASSERT_TRUE(wait_for_state(XenbusStateConnected));
  EXPECT_EQ(driver_.connects, 1) << "reconfiguring is not a reconnect";
  EXPECT_EQ(driver_.disconnects, 0);
}

TEST_F(BackendDeviceSim, ReconfigureFailureCloses) {
  start_device();
  connect_frontend();
  driver_.reconfigure_result = EINVAL;
  set_frontend_state(XenbusStateReconfiguring);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  EXPECT_NE(backend_node("error"), "<missing>");
  EXPECT_EQ(driver_.disconnects, 1);
}

TEST_F(BackendDeviceSim, ReconfiguringBeforeConnectIsIgnored) {
  start_device();
  set_frontend_state(XenbusStateReconfiguring);
  settle();
  EXPECT_EQ(driver_.reconfigures, 0);
  EXPECT_EQ(device_->state(), XenbusStateInitWait);
}

TEST_F(BackendDeviceSim, FrontendAlreadyConnectedWhenBackendStarts) {
  create_device();
  ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/state", "3"), 0);
  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  ASSERT_EQ(device_->start(), 0);
  EXPECT_EQ(device_->state(), XenbusStateConnected);
  EXPECT_EQ(driver_.connects, 1);
}

TEST_F(BackendDeviceSim, ConnectFailureWritesErrorAndCloses) {
  driver_.connect_result = ENOMEM;
  start_device();
  set_frontend_state(XenbusStateInitialised);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  EXPECT_EQ(backend_node("state"), "5");
  EXPECT_EQ(backend_node("error").rfind(std::to_string(ENOMEM) + " ", 0), 0u) << backend_node("error");
  EXPECT_GE(driver_.disconnects, 1) << "a partial connect must be undone";
  EXPECT_FALSE(device_->driver_connected());
  settle();
  EXPECT_EQ(driver_.connects, 1) << "no retry loop on our own state writes";

  // The frontend acknowledges by closing; once it comes back, connecting works again.
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  driver_.connect_result = 0;
  set_frontend_state(XenbusStateInitialising);
  ASSERT_TRUE(wait_for_state(XenbusStateInitWait));
  connect_frontend();
  EXPECT_EQ(driver_.connects, 2);
  EXPECT_EQ(backend_node("error"), "<missing>") << "a successful connect clears the stale error";
}

TEST_F(BackendDeviceSim, FrontendCloseClosesBackend) {
  start_device();
  connect_frontend();
  const int disconnects_before = driver_.disconnects;
  set_frontend_state(XenbusStateClosing);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  EXPECT_EQ(backend_node("state"), "5");
  EXPECT_GT(driver_.disconnects, disconnects_before);
  EXPECT_FALSE(device_->driver_connected());
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  EXPECT_EQ(backend_node("state"), "6");
  settle();
  EXPECT_FALSE(device_->removed()) << "online=1: the frontend may come back";
  EXPECT_EQ(removed_callbacks_, 0);
}

TEST_F(BackendDeviceSim, ReconnectAfterFrontendClosed) {
  start_device();
  connect_frontend();
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  EXPECT_GE(driver_.disconnects, 1);
  set_frontend_state(XenbusStateInitialising);
  ASSERT_TRUE(wait_for_state(XenbusStateInitWait));
  EXPECT_EQ(backend_node("state"), "2");
  connect_frontend();
  EXPECT_EQ(driver_.connects, 2);
  EXPECT_EQ(backend_node("state"), "4");
  EXPECT_EQ(driver_.advertised, 1);
}

TEST_F(BackendDeviceSim, HotUnplugRemovesDevice) {
  start_device();
  connect_frontend();
  ASSERT_EQ(frontend_.rm(kBackend), 0);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_EQ(removed_callbacks_, 1);
  EXPECT_GE(driver_.disconnects, 1);
  EXPECT_FALSE(device_->driver_connected());
  EXPECT_FALSE(frontend_.exists(kBackend).value()) << "the backend must not recreate its removed node";
}

TEST_F(BackendDeviceSim, FrontendVanishingRemovesDevice) {
  start_device();
  connect_frontend();
  ASSERT_EQ(frontend_.rm(kFrontend), 0);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_EQ(removed_callbacks_, 1);
  EXPECT_FALSE(device_->driver_connected());
  EXPECT_EQ(backend_node("state"), "6");
}

TEST_F(BackendDeviceSim, FrontendDomainVanishingRemovesDevice) {
  start_device();
  connect_frontend();
  ASSERT_EQ(frontend_.rm("/local/domain/5"), 0);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_FALSE(device_->driver_connected());
  EXPECT_EQ(removed_callbacks_, 1);
}

TEST_F(BackendDeviceSim, ClosedWhileOfflineRemovesDevice) {
  start_device();
  connect_frontend();
  // libxl's detach: online=0 and backend state Closing in one transaction; the frontend sees the
  // backend closing and closes itself.
  ASSERT_EQ(frontend_.transact([&](Txn txn) {
    if (int rc = frontend_.write(std::string(kBackend) + "/online", "0", txn); rc != 0) return rc;
    return frontend_.write(std::string(kBackend) + "/state", "5", txn);
  }), 0);
  settle();
  EXPECT_FALSE(device_->removed()) << "still connected";
  set_frontend_state(XenbusStateClosing);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_EQ(backend_node("state"), "6");
  EXPECT_EQ(removed_callbacks_, 1);
}

TEST_F(BackendDeviceSim, OfflineAfterCloseRemovesDevice) {
  start_device();
  connect_frontend();
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  settle();
  EXPECT_FALSE(device_->removed());
  ASSERT_EQ(frontend_.write(std::string(kBackend) + "/online", "0"), 0);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
}

class BogusFrontendState : public BackendDeviceSim, public ::testing::WithParamInterface<std::string> {};

TEST_P(BogusFrontendState, IsAnErrorNotACrash) {
  start_device();
  connect_frontend();
  ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/state", GetParam()), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  EXPECT_FALSE(device_->driver_connected());
  EXPECT_NE(backend_node("error"), "<missing>");
  EXPECT_FALSE(device_->removed());
  settle();
  EXPECT_EQ(driver_.connects, 1);
  // A frontend that recovers goes through Closed and can connect again.
  set_frontend_state(XenbusStateClosed);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  set_frontend_state(XenbusStateInitialising);
  ASSERT_TRUE(wait_for_state(XenbusStateInitWait));
  connect_frontend();
  EXPECT_EQ(driver_.connects, 2);
}

INSTANTIATE_TEST_SUITE_P(Values, BogusFrontendState,
                         ::testing::Values("abc", "9", "-1", "", "04", " 4", "4\n", "99999999999999999999999999",
                                           std::string(4000, '7'), std::string("4\0", 2)));

TEST_F(BackendDeviceSim, UnknownFrontendStateRemovesDevice) {
  start_device();
  connect_frontend();
  set_frontend_state(XenbusStateUnknown);
  ASSERT_TRUE(wait_for([&] { return device_->removed(); }));
  EXPECT_FALSE(device_->driver_connected());
}

TEST_F(BackendDeviceSim, StartRejectsBogusToolstackValues) {
  struct Case {
    std::string frontend_id;
    std::string frontend_path;
  };
  const std::vector<Case> cases{
      {"abc", kFrontend},
      {"6", kFrontend},  // does not match the domid in the backend path
      {"99999999999999999999", kFrontend},
      {"-5", kFrontend},
      {"5", "/local/domain/6/device/vbd/768"},
      {"5", "/local/domain/5/device/../../0/backend"},
      {"5", "/local/domain/5"},
      {"5", "relative/path"},
  };
  for (const auto& c : cases) {
    create_device(c.frontend_id, c.frontend_path);
    FakeDriver driver;
    BackendDevice device(backend_xs_, kBackend, driver);
    EXPECT_EQ(device.start(), EINVAL) << c.frontend_id << " " << c.frontend_path;
    EXPECT_EQ(driver.advertised, 0);
    EXPECT_EQ(backend_node("state"), "1");
  }
  FakeDriver driver;
  BackendDevice not_a_backend(backend_xs_, "/local/domain/0/backend/vbd", driver);
  EXPECT_EQ(not_a_backend.start(), EINVAL);
  BackendDevice missing(backend_xs_, "/local/domain/0/backend/vbd/9/51712", driver);
  EXPECT_EQ(missing.start(), ENOENT);
}

TEST_F(BackendDeviceSim, AdvertiseFailureCloses) {
  create_device();
  driver_.advertise_result = EIO;
  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  EXPECT_EQ(device_->start(), EIO);
  EXPECT_EQ(device_->state(), XenbusStateClosing);
  EXPECT_EQ(backend_node("state"), "5");
  EXPECT_NE(backend_node("error"), "<missing>");
}

TEST_F(BackendDeviceSim, WatchFloodIsCoalesced) {
  start_device();
  connect_frontend();
  for (int i = 0; i < 500; ++i)
    ASSERT_EQ(frontend_.write(std::string(kFrontend) + "/state", "4"), 0);
  settle();
  EXPECT_EQ(driver_.connects, 1);
  EXPECT_EQ(device_->state(), XenbusStateConnected);
}

// XSA-349: the guest floods the backend's watch on its `state` node with writes to children of it
// (as many as its node quota allows, rewritten in a tight loop) while the backend's main thread
// is blocked in a disconnect that waits for I/O to drain. Watch events must not pile up in the
// backend's memory meanwhile, and the backend must act on the frontend's next state change after.
// The heap of this process (backend, guest writers and the simulated XenStore server alike) is
// measured with mallinfo2() while the disconnect blocks.
TEST_F(BackendDeviceSim, ChildrenOfStateFloodWhileBlockedStaysBounded) {
  create_guest_device();
  auto open_guest = [&] {
    auto guest = XenStore::open(sim_layout::guest_xenstore_socket(run_dir_, 5).string());
    EXPECT_TRUE(guest.has_value());
    return guest ? std::move(*guest) : XenStore();
  };
  XenStore guest = open_guest();
  ASSERT_TRUE(guest);

  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  ASSERT_EQ(device_->start(), 0);
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/ring-ref", "9"), 0);
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/state", "3"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateConnected));
  settle();

  constexpr int kWriters = 2;
  constexpr int kChildrenPerWriter = 450;  // together just under the guest's node quota (1000)
  // The flood lasts until this many writes (a few seconds here), or kFloodAtMost.
  constexpr long kFloodWrites = 60000;
  constexpr auto kFloodAtMost = std::chrono::seconds(20);
  // What the flood may add to the heap: the server's copy of the children, buffers in flight.
  // One event queued by libxenstore costs about 160 bytes of heap: an unbounded queue passes this
  // after some 26000 events, and reached 11.8 MiB with 72900 writes in 3 s before the fix.
  constexpr std::size_t kMaxGrowth = 4u << 20;

  auto heap = [] {
    const struct mallinfo2 info = ::mallinfo2();
    return info.uordblks + info.hblkhd;
  };
  std::atomic<long> writes{0};
  std::atomic<bool> flood_done{false};
  std::chrono::steady_clock::duration flood_took{};
  std::size_t before = 0;
  std::size_t peak = 0;
  driver_.on_disconnect = [&] {
    // The backend's main thread is in here until the flood is over: it reads no watch event.
    before = heap();
    peak = before;
    const auto flood_start = std::chrono::steady_clock::now();
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w)
      writers.emplace_back([&, w] {
        XenStore xs = open_guest();
        const auto end = std::chrono::steady_clock::now() + kFloodAtMost;
        const std::string base = std::string(kFrontend) + "/state/w" + std::to_string(w) + "-";
        for (long round = 0; writes.load() < kFloodWrites && std::chrono::steady_clock::now() < end; ++round)
          for (int c = 0; c < kChildrenPerWriter; ++c)
            if (xs.write(base + std::to_string(c), std::to_string(round)) == 0) writes.fetch_add(1);
      });
    std::thread sampler([&] {
      while (!flood_done.load()) {
        peak = std::max(peak, heap());
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
    for (auto& t : writers) t.join();
    flood_took = std::chrono::steady_clock::now() - flood_start;
    // Give libxenstore's reader thread time to take in what the server still sends.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    flood_done = true;
    sampler.join();
    peak = std::max(peak, heap());
  };
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/state", "5"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateClosing));
  ASSERT_TRUE(flood_done.load()) << "the disconnect did not run";

  const std::size_t growth = peak > before ? peak - before : 0;
  const WatchQueueStats stats = backend_xs_.watch_stats();
  std::printf("XSA-349 flood: %ld writes to children of state in %lld ms, heap %zu KiB before, peak growth %zu KiB; "
              "watch events received %llu, coalesced %llu\n",
              writes.load(), static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(flood_took).count()),
              before >> 10, growth >> 10, static_cast<unsigned long long>(stats.received),
              static_cast<unsigned long long>(stats.coalesced));
  RecordProperty("flood_writes", std::to_string(writes.load()));
  RecordProperty("heap_growth_kib", std::to_string(growth >> 10));
  EXPECT_GE(writes.load(), kFloodWrites) << "the flood was too slow to show anything";
  EXPECT_GE(stats.received, static_cast<std::uint64_t>(kFloodWrites)) << "the backend saw the flood's events";
  EXPECT_LT(growth, kMaxGrowth) << "watch events piled up while the main thread was blocked";

  // The backend still follows the frontend: close, then a reconnect.
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/state", "6"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
  EXPECT_FALSE(device_->removed()) << "still online";
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/state", "1"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateInitWait));
  ASSERT_EQ(guest.write(std::string(kFrontend) + "/state", "3"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateConnected));
  EXPECT_EQ(driver_.connects, 2);
}

// The frontend as the guest sees it: an unprivileged connection of domain 5, with the
// permissions libxl gives the two directories.
TEST_F(BackendDeviceSim, HandshakeWithUnprivilegedGuestFrontend) {
  create_guest_device();

  auto guest = XenStore::open(sim_layout::guest_xenstore_socket(run_dir_, 5).string());
  ASSERT_TRUE(guest.has_value());
  device_ = std::make_unique<BackendDevice>(backend_xs_, kBackend, driver_);
  ASSERT_EQ(device_->start(), 0);
  EXPECT_EQ(guest->read(std::string(kBackend) + "/state").value_or(""), "2");
  EXPECT_EQ(guest->read(std::string(kBackend) + "/feature-test").value_or(""), "1")
      << "new backend nodes inherit the parent's permissions, so the guest can read features";
  EXPECT_EQ(guest->write(std::string(kBackend) + "/state", "4"), EACCES);

  ASSERT_EQ(guest->write(std::string(kFrontend) + "/ring-ref", "9"), 0);
  ASSERT_EQ(guest->write(std::string(kFrontend) + "/state", "3"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateConnected));
  EXPECT_EQ(driver_.ring_ref_seen, "9");
  EXPECT_EQ(guest->read(std::string(kBackend) + "/state").value_or(""), "4");
  ASSERT_EQ(guest->write(std::string(kFrontend) + "/state", "6"), 0);
  ASSERT_TRUE(wait_for_state(XenbusStateClosed));
}

TEST_F(BackendDeviceSim, DestructorDisconnectsConnectedDriver) {
  start_device();
  connect_frontend();
  const int before = driver_.disconnects;
  device_.reset();
  EXPECT_EQ(driver_.disconnects, before + 1);
}

}  // namespace
}  // namespace pvback::xenbus
