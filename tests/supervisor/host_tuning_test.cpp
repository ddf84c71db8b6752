// The devices' tunables in the host daemon (issue 16 item 6): the config file's sections reach
// each device by the guest's name and the disk's vdev, `set` changes a running device (the
// persistent-grant bound at once, in its data plane; a negotiated key advertised again), a whole
// kind, refuses what does not apply, and what was set outlives the host daemon; SIGHUP reads the
// file again for the devices started after it, and a mistake in the file stops the start.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>

#include "ctl/json.hpp"
#include "tests/supervisor/host_fixture.hpp"

namespace pvback::test {
namespace {

const ctl::Json& at(const ctl::Json& v, std::string_view key) {
  static const ctl::Json null;
  const ctl::Json* m = v.find(key);
  return m != nullptr ? *m : null;
}

class HostTuningTest : public HostTest {
 protected:
  void write_config(const std::string& text) { std::ofstream(dir_ / "pvback.conf") << text; }

  std::string node(const std::string& backend_path, const std::string& key) {
    // (A backend's or a frontend's directory.)
    return dom0_xs_.read(backend_path + "/" + key).value_or("?");
  }

  // The value `info` shows for a device's tunable (-1: not shown).
  std::int64_t tunable(const std::string& device, const std::string& name) {
    const auto doc = ctl::parse_json(control("1 info " + device));
    if (!doc) return -1;
    for (const auto& t : at(at(*doc, "info"), "tunables").items)
      if (at(t, "name").text == name) return at(t, "value").integer().value_or(-1);
    return -1;
  }

  std::int64_t persistent_grants(const std::string& device) {
    const auto doc = ctl::parse_json(control("1 stats " + device));
    if (!doc) return -1;
    return at(at(at(*doc, "stats"), "total"), "persistent_grants").integer().value_or(-1);
  }

  static std::string vbd2_path() { return sim::vbd_backend_path(0, kGuest2, kDevid); }
};

TEST_F(HostTuningTest, TheConfigFileReachesEachDeviceAndSetChangesThemAtRunTime) {
  write_config(R"(# the test's pvback.conf
[vbd]
max_persistent_grants = 64
[vbd domain=domain-1 device=xvda]
indirect_threshold = 32
[vbd domain=domain-2]
indirect_threshold = 16
)");
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  add_guest2_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd2_path()) == XenbusStateInitWait; })) << log_text();
  EXPECT_EQ(node(vbd_path(), "feature-max-indirect-segments"), "32");
  EXPECT_EQ(node(vbd2_path(), "feature-max-indirect-segments"), "16");
  EXPECT_EQ(tunable("vbd-1-51712", "max_persistent_grants"), 64);
  EXPECT_EQ(tunable("vbd-2-51712", "max_persistent_grants"), 64);

  auto front = attach();
  ASSERT_NE(front, nullptr);
  write_and_verify(*front, 1);
  ASSERT_GT(persistent_grants("vbd-1-51712"), 2) << control("1 stats vbd-1-51712");

  // A key the frontend negotiates: the connected frontend read the old one, which holds until it
  // connects again (a disconnected device's is advertised at once: guest 2's below).
  std::string answer = control("1 set vbd-1-51712 max_ring_page_order=1");
  EXPECT_NE(answer.find("\"when\": \"next-connect\""), std::string::npos) << answer;
  EXPECT_EQ(node(vbd_path(), "max-ring-page-order"), "4");
  answer = control("1 set vbd-2-51712 max_ring_page_order=2");
  EXPECT_EQ(node(vbd2_path(), "max-ring-page-order"), "2") << answer;
  // The persistent-grant bound: in the running data plane at once.
  const pid_t plane = listed_data_plane_pid();
  answer = control("1 set vbd-1-51712 max_persistent_grants=2");
  EXPECT_NE(answer.find("\"old\": 64, \"value\": 2, \"when\": \"now\""), std::string::npos) << answer;
  EXPECT_TRUE(eventually([&] { return persistent_grants("vbd-1-51712") == 2; }))
      << control("1 stats vbd-1-51712") << log_text();
  EXPECT_EQ(listed_data_plane_pid(), plane) << "told, not restarted";
  write_and_verify(*front, 2);
  EXPECT_LE(persistent_grants("vbd-1-51712"), 2);

  // Refused, saying why, and nothing changed.
  answer = control("1 set vbd-1-51712 max_buffer_pages=8");
  EXPECT_NE(answer.find("max_buffer_pages does not apply to pvback"), std::string::npos) << answer;
  answer = control("1 set vbd nope=1");
  EXPECT_NE(answer.find("a vbd has no tunable 'nope'"), std::string::npos) << answer;
  answer = control("1 set vbd-1-51712 max_queues=1000");
  EXPECT_NE(answer.find("max_queues is a number from 0 to 256"), std::string::npos) << answer;
  answer = control("1 set all max_persistent_grants=-1");
  EXPECT_NE(answer.find("\"ok\": false"), std::string::npos) << answer;
  EXPECT_EQ(tunable("vbd-2-51712", "max_persistent_grants"), 64);

  // Every vbd at once, and the devices started later.
  answer = control("1 set vbd persistent_grant_unused_seconds=30");
  EXPECT_NE(answer.find("\"device\": \"vbd-1-51712\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"device\": \"vbd-2-51712\""), std::string::npos) << answer;
  EXPECT_NE(answer.find("\"new_devices\": true"), std::string::npos) << answer;
  EXPECT_EQ(tunable("vbd-2-51712", "persistent_grant_unused_seconds"), 30);

  // Kept across the host daemon's death: the successor adopts the data plane, with the values set.
  const std::string kept = read_text(hv_->run_dir() / "stats" / "tunables.conf");
  EXPECT_NE(kept.find("[vbd domid=1 domain=domain-1 device=51712]\nmax_persistent_grants = 2"), std::string::npos)
      << kept;
  ASSERT_EQ(::kill(supervisor_pid(), SIGKILL), 0);
  ASSERT_TRUE(wait_supervisor_exit().has_value());
  start_supervisor();
  ASSERT_TRUE(eventually([&] { return listed_data_plane_pid() == plane; })) << control("1 list") << log_text();
  EXPECT_EQ(tunable("vbd-1-51712", "max_persistent_grants"), 2);
  EXPECT_EQ(tunable("vbd-1-51712", "max_ring_page_order"), 1);
  EXPECT_EQ(tunable("vbd-1-51712", "persistent_grant_unused_seconds"), 30);
  EXPECT_EQ(tunable("vbd-2-51712", "max_persistent_grants"), 64);
  EXPECT_EQ(log_count("the adopted data plane's persistent-grant limits differ"), 0u) << log_text();
  write_and_verify(*front, 3);
  EXPECT_LE(persistent_grants("vbd-1-51712"), 2);

  // The frontend's next connection: the limit set meanwhile is advertised before it reads it.
  front.reset();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateClosed; })) << log_text();
  front = attach();
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(node(vbd_path(), "max-ring-page-order"), "1");
  write_and_verify(*front, 4);
  EXPECT_EQ(node(sim::vbd_frontend_path(kGuest, kDevid), "ring-page-order"), "1");
}

// A vif: netback's names, its negotiated keys advertised at once while no frontend is connected,
// and its section in the file by the guest's name and the handle.
TEST_F(HostTuningTest, AVifTakesNetbacksNamesFromTheFileAndFromSet) {
  write_config("[vif domain=domain-1 device=0]\nmax_queues = 3\nfatal_skb_slots = 25\n");
  start_supervisor();
  sim::VifSpec spec;
  spec.frontend_domid = kGuest;
  ASSERT_EQ(sim::add_vif(dom0_xs_, spec), 0);
  ASSERT_TRUE(eventually([&] { return state(vif_path()) == XenbusStateInitWait; }, 30s)) << log_text();
  EXPECT_EQ(node(vif_path(), "multi-queue-max-queues"), "3");
  EXPECT_EQ(tunable("vif-1-0", "fatal_skb_slots"), 25);
  std::string answer = control("1 set vif-1-0 separate_tx_rx_irq=0");
  EXPECT_NE(answer.find("\"when\": \"next-connect\""), std::string::npos) << answer;
  EXPECT_EQ(node(vif_path(), "feature-split-event-channels"), "0");
  answer = control("1 set all max_queues=1");
  EXPECT_NE(answer.find("\"device\": \"vif-1-0\", \"name\": \"max_queues\", \"old\": 3, \"value\": 1"),
            std::string::npos)
      << answer;
  EXPECT_EQ(node(vif_path(), "multi-queue-max-queues"), "1");
  answer = control("1 set vif-1-0 max_persistent_grants=8");
  EXPECT_NE(answer.find("a vif has no tunable 'max_persistent_grants'"), std::string::npos) << answer;
  answer = control("1 set vif-1-0 rx_drain_timeout_msecs=8");
  EXPECT_NE(answer.find("rx_drain_timeout_msecs does not apply to pvback"), std::string::npos) << answer;
}

TEST_F(HostTuningTest, SighupReadsTheFileAgainForDevicesStartedAfterIt) {
  start_supervisor();
  add_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd_path()) == XenbusStateInitWait; })) << log_text();
  EXPECT_EQ(node(vbd_path(), "feature-max-indirect-segments"), "256");
  write_config("[vbd]\nindirect_threshold = 8\n");
  ASSERT_EQ(::kill(supervisor_pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] { return log_text().find("read again") != std::string::npos; })) << log_text();
  add_guest2_vbd();
  ASSERT_TRUE(eventually([&] { return state(vbd2_path()) == XenbusStateInitWait; })) << log_text();
  EXPECT_EQ(node(vbd2_path(), "feature-max-indirect-segments"), "8");
  EXPECT_EQ(node(vbd_path(), "feature-max-indirect-segments"), "256") << "a running device keeps its value";
  // A broken file on SIGHUP: logged, the values before it stay.
  write_config("[vbd]\nindirect_threshold = lots\n");
  ASSERT_EQ(::kill(supervisor_pid(), SIGHUP), 0);
  ASSERT_TRUE(eventually([&] {
    return log_text().find("pvback.conf:2: indirect_threshold is a number from 0 to 4096, not 'lots': the previous "
                           "values stay") != std::string::npos;
  })) << log_text();
  EXPECT_TRUE(supervisor_running());
}

TEST_F(HostTuningTest, AMistakeInTheFileStopsTheStartNamingTheLine) {
  write_config("[vbd]\nmax_persistent_grants = 64\n[vif domain=web]\nmax_queue = 2\n");
  supervisor_.emplace(PVBACK_SUPERVISOR, 30s);
  supervisor_->spawn(hv_->run_dir(), {"--config", (dir_ / "pvback.conf").string()}, log_);
  const auto status = supervisor_->wait_exit(10s);
  ASSERT_TRUE(status.has_value()) << log_text();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << *status;
  EXPECT_NE(log_text().find("pvback.conf:4: a vif has no tunable 'max_queue' (it has max_queues, "), std::string::npos)
      << log_text();
}

}  // namespace
}  // namespace pvback::test
