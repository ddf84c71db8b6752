// pvback-blk as a whole device: what it advertises, read-only and cdrom devices, flush/barrier/
// discard semantics, statistics, online resize, hot unplug, reconnect, a frontend that vanishes
// mid-I/O, one that overflows the ring, and a XenStore server that dies under the backend.
#include <fcntl.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/blkback/device/vbd_fixture.hpp"

namespace pvback::test {
namespace {


TEST_F(VbdTest, AdvertisesFeaturesAndGeometryAtInitWait) {
  make_disk(8 << 20);
  add_vbd_and_start({"--max-queues", "3", "--max-indirect-segments", "512"});
  const std::string be = backend_path();
  EXPECT_EQ(read_key(dom0_xs_, be + "/feature-persistent"), "1");
  EXPECT_EQ(read_key(dom0_xs_, be + "/feature-max-indirect-segments"), "512");
  EXPECT_EQ(read_key(dom0_xs_, be + "/max-ring-page-order"), "4");
  EXPECT_EQ(read_key(dom0_xs_, be + "/multi-queue-max-queues"), "3");
  EXPECT_EQ(read_key(dom0_xs_, be + "/feature-flush-cache"), "1");
  EXPECT_EQ(read_key(dom0_xs_, be + "/feature-barrier"), "1");
  EXPECT_EQ(read_key(dom0_xs_, be + "/sectors"), std::to_string((8 << 20) / 512));
  EXPECT_EQ(read_key(dom0_xs_, be + "/info"), "0");
  const std::string sector_size = read_key(dom0_xs_, be + "/sector-size");
  EXPECT_TRUE(sector_size == "512" || sector_size == "4096") << sector_size;
  EXPECT_EQ(read_key(dom0_xs_, be + "/feature-discard"), "1");  // ext4/tmpfs punch holes
  EXPECT_NE(read_key(dom0_xs_, be + "/discard-granularity"), "<missing>");

  auto front = attach();
  ASSERT_NE(front, nullptr);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
  EXPECT_EQ(front->negotiated().num_queues, 3u);
  EXPECT_EQ(front->negotiated().backend_max_indirect_segments, 512u);
  ASSERT_TRUE(eventually([&] { return stats_text().find("\"queues\": 3") != std::string::npos; })) << stats_text();
}

// The toolstack's hotplug script (libxl's "script" node) decides whether the disk is served: its
// storage is not even opened before the script reported "connected" (here it does not exist
// until then), and a refusal leaves the device at InitWait with nothing opened.
TEST_F(VbdTest, HotplugScriptGatesTheStorage) {
  sim::VbdSpec spec;
  spec.script = "/etc/xen/scripts/block";
  backend_log_ = dir_ / "pvback-blk.log";
  add_vbd_and_start({}, spec);
  const std::string be = backend_path();
  ASSERT_TRUE(eventually([&] { return log_contains("waiting for the hotplug script /etc/xen/scripts/block"); }))
      << log_text();
  EXPECT_EQ(read_key(dom0_xs_, be + "/sectors"), "<missing>");
  make_disk(4 << 20);
  ASSERT_EQ(dom0_xs_.write(be + "/physical-device", "fe:0"), 0);
  ASSERT_EQ(dom0_xs_.write(be + "/physical-device-path", disk_.string()), 0);
  ASSERT_EQ(dom0_xs_.write(be + "/hotplug-status", "connected"), 0);
  ASSERT_TRUE(eventually([&] { return read_key(dom0_xs_, be + "/sectors") == std::to_string((4 << 20) / 512); }));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(4096, std::byte{0x5a}), back(4096);
  ASSERT_EQ(front->write(8, data), 0);
  ASSERT_EQ(front->read(8, back), 0);
  EXPECT_EQ(back, data);
}

TEST_F(VbdTest, HotplugScriptRefusalOpensNothing) {
  sim::VbdSpec spec;
  spec.script = "/etc/xen/scripts/block";
  spec.params = (dir_ / "no-such-disk").string();  // opening it would fail the device with an error node
  backend_log_ = dir_ / "pvback-blk.log";
  add_vbd_and_start({}, spec);
  const std::string be = backend_path();
  ASSERT_EQ(dom0_xs_.write(be + "/hotplug-error", "File is already used by domain 7"), 0);
  ASSERT_EQ(dom0_xs_.write(be + "/hotplug-status", "busy"), 0);
  ASSERT_TRUE(eventually([&] { return log_contains("refused the device (File is already used by domain 7)"); }))
      << log_text();
  EXPECT_EQ(backend_state(), XenbusStateInitWait);
  EXPECT_EQ(read_key(dom0_xs_, be + "/error"), "<missing>") << "the storage was opened";
  EXPECT_EQ(read_key(dom0_xs_, be + "/sectors"), "<missing>");
  // The toolstack removes the refused device: the backend closes and exits.
  ASSERT_EQ(sim::remove_vbd(dom0_xs_, 0, kGuest, kDevid), 0);
  EXPECT_TRUE(eventually([&] { return !backend_->running(); })) << log_text();
}

TEST_F(VbdTest, OptionsTurnFeaturesOff) {
  make_disk(1 << 20);
  add_vbd_and_start({"--no-persistent-grants", "--max-indirect-segments", "0", "--max-ring-page-order", "0",
                     "--max-queues", "1", "--no-flush", "--no-barrier"});
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const auto& n = front->negotiated();
  EXPECT_FALSE(n.persistent);
  EXPECT_FALSE(n.indirect);
  EXPECT_EQ(n.ring_page_order, 0u);
  EXPECT_EQ(n.num_queues, 1u);
  EXPECT_FALSE(n.flush);
  EXPECT_FALSE(n.barrier);
  // A frontend that flushes anyway is told the operation is not supported.
  blkfront::Options raw;
  raw.enforce_features = false;
  ASSERT_EQ(front->detach(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }));
  auto again = attach(raw);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->flush(), EOPNOTSUPP);
  std::vector<std::byte> page(4096, std::byte{7});
  EXPECT_EQ(again->write(0, page), 0);
  EXPECT_TRUE(eventually([&] { return stat("unsupported") >= 1; }));
}

// --direct decides how the storage is opened; the statistics say which it got. On the simulated
// hypervisor mapped grants may take O_DIRECT, so auto means on wherever the file system allows it.
class VbdDirectTest : public VbdTest {
 protected:
  void check(const std::string& mode) {
    make_disk(1 << 20);
    const int probe = ::open(disk_.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    const bool fs_allows_direct = probe >= 0;
    if (probe >= 0) ::close(probe);
    add_vbd_and_start({"--direct", mode});
    auto front = attach();
    ASSERT_NE(front, nullptr);
    std::vector<std::byte> page(4096, std::byte{0x5a}), back(4096);
    ASSERT_EQ(front->write(8, page), 0);
    ASSERT_EQ(front->read(8, back), 0);
    EXPECT_EQ(back, page);
    const bool want_direct = mode != "off" && fs_allows_direct;
    const std::string expected = want_direct ? "\"direct\": true" : "\"direct\": false";
    EXPECT_TRUE(eventually([&] { return stats_text().find(expected) != std::string::npos; })) << stats_text();
  }
};
TEST_F(VbdDirectTest, AutoUsesODirectOnTheSimulatedHypervisor) { check("auto"); }
TEST_F(VbdDirectTest, OnUsesODirect) { check("on"); }
TEST_F(VbdDirectTest, OffServesBuffered) { check("off"); }

TEST_F(VbdTest, ReadOnlyDeviceRefusesWritesAndServesReads) {
  make_disk(1 << 20);
  {
    std::vector<char> data(4096, 'R');
    int fd = ::open(disk_.c_str(), O_WRONLY);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 8192), 4096);
    ::close(fd);
  }
  sim::VbdSpec spec;
  spec.mode = "r";
  add_vbd_and_start({}, spec);
  EXPECT_EQ(read_key(dom0_xs_, backend_path() + "/info"), std::to_string(blkif::kVdiskReadonly));
  EXPECT_EQ(dom0_xs_.exists(backend_path() + "/feature-discard").value_or(true), false);
  blkfront::Options opts;
  opts.enforce_features = false;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  EXPECT_TRUE(front->negotiated().readonly());
  std::vector<std::byte> buf(4096);
  ASSERT_EQ(front->read(16, buf), 0);
  EXPECT_EQ(buf[0], std::byte{'R'});
  std::vector<std::byte> data(4096, std::byte{1});
  EXPECT_EQ(front->write(0, data), EIO);
  EXPECT_TRUE(eventually([&] { return stat("bad_requests") >= 1; }));
  // The file is untouched.
  char c = 0;
  int fd = ::open(disk_.c_str(), O_RDONLY);
  ASSERT_EQ(::pread(fd, &c, 1, 0), 1);
  ::close(fd);
  EXPECT_EQ(c, 0);
}

TEST_F(VbdTest, CdromIsReadOnlyRemovableMedia) {
  make_disk(2 << 20);
  sim::VbdSpec spec;
  spec.mode = "r";
  spec.device_type = "cdrom";
  spec.dev_name = "xvdc";
  add_vbd_and_start({}, spec);
  auto front = attach();
  ASSERT_NE(front, nullptr);
  const std::uint32_t info = front->negotiated().info;
  EXPECT_TRUE(info & blkif::kVdiskCdrom);
  EXPECT_TRUE(info & blkif::kVdiskReadonly);
  EXPECT_TRUE(info & blkif::kVdiskRemovable);
  std::vector<std::byte> buf(2048);
  EXPECT_EQ(front->read(0, buf), 0);
}

TEST_F(VbdTest, FlushBarrierAndDiscardReachTheFile) {
  make_disk(4 << 20);
  add_vbd_and_start();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_TRUE(front->negotiated().discard);
  std::vector<std::byte> data(1 << 20);
  fill_pattern(data, 0, 42);
  ASSERT_EQ(front->write(0, data), 0);
  ASSERT_EQ(front->flush(), 0);

  auto& q = front->queue(0);
  std::vector<std::byte> barrier_data(8192);
  fill_pattern(barrier_data, 4096, 43);
  ASSERT_EQ(q.submit_barrier_write(4096, barrier_data, 1), 0);
  ASSERT_EQ(q.kick(), 0);
  ASSERT_EQ(q.wait_for(1, std::chrono::seconds(10)), 0);

  struct stat before {};
  ASSERT_EQ(::stat(disk_.c_str(), &before), 0);
  // Discard 256 KiB in the middle of the written MiB (aligned to the granularity).
  const std::uint64_t first = 512, count = 512;
  ASSERT_EQ(front->discard(first, count), 0);
  std::vector<std::byte> readback(data.size());
  ASSERT_EQ(front->read(0, readback), 0);
  for (std::uint64_t i = 0; i < data.size(); ++i) {
    const bool discarded = i >= first * 512 && i < (first + count) * 512;
    ASSERT_EQ(readback[i], discarded ? std::byte{0} : data[i]) << "byte " << i;
  }
  std::vector<std::byte> barrier_back(8192);
  ASSERT_EQ(front->read(4096, barrier_back), 0);
  EXPECT_TRUE(barrier_back == barrier_data);
  struct stat after {};
  ASSERT_EQ(::stat(disk_.c_str(), &after), 0);
  EXPECT_LT(after.st_blocks, before.st_blocks) << "punch hole freed no blocks";
  ASSERT_TRUE(eventually([&] { return stat("flushes") >= 1 && stat("barriers") >= 1 && stat("discards") >= 1; }))
      << stats_text();
  EXPECT_EQ(stat("sectors_discarded"), static_cast<long long>(count));
}

TEST_F(VbdTest, OnlineResizeIsPublished) {
  make_disk(1 << 20);
  add_vbd_and_start();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(::truncate(disk_.c_str(), 3 << 20), 0);
  EXPECT_TRUE(eventually([&] { return read_key(dom0_xs_, backend_path() + "/sectors") == std::to_string(6144); }));
  // The frontend learns it from the state rewrite, as Linux blkfront does; requests beyond the
  // old end then succeed.
  EXPECT_TRUE(eventually([&] {
    front->process_xenstore();
    return front->negotiated().sectors == 6144;
  }));
  std::vector<std::byte> data(4096, std::byte{9});
  ASSERT_EQ(front->write(4096, data), 0);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

TEST_F(VbdTest, HotUnplugClosesBothEndsAndTheBackendExits) {
  make_disk(1 << 20);
  add_vbd_and_start();
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_NO_FATAL_FAILURE(unplug(*front));
  auto status = backend_->wait_exit();
  ASSERT_TRUE(status.has_value()) << "pvback-blk did not exit after hot unplug";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_EQ(dom0_xs_.exists(backend_path()).value_or(true), false);
}

TEST_F(VbdTest, FrontendReconnectsAndFindsItsData) {
  make_disk(1 << 20);
  add_vbd_and_start();
  std::vector<std::byte> data(64 << 10);
  fill_pattern(data, 100, 7);
  for (int round = 0; round < 3; ++round) {
    auto front = attach();
    ASSERT_NE(front, nullptr) << "round " << round;
    std::vector<std::byte> back(data.size());
    if (round > 0) {
      ASSERT_EQ(front->read(100, back), 0);
      EXPECT_TRUE(back == data) << "round " << round;
    }
    ASSERT_EQ(front->write(100, data), 0);
    ASSERT_EQ(front->detach(), 0);
    ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }));
  }
  EXPECT_TRUE(backend_->running());
}

TEST_F(VbdTest, RingOverflowDisconnectsTheDeviceOnly) {
  make_disk(1 << 20);
  add_vbd_and_start();
  blkfront::Options opts;
  opts.max_ring_page_order = 0;
  opts.max_queues = 1;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  auto& q = front->queue(0);
  // req_prod far beyond what the ring can hold (XSA-39 style).
  auto* req_prod = reinterpret_cast<std::uint32_t*>(q.shared_ring());
  std::atomic_ref<std::uint32_t>(*req_prod).store(100000, std::memory_order_release);
  ASSERT_EQ(q.notify(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosing; }));
  EXPECT_NE(read_key(dom0_xs_, backend_path() + "/error"), "<missing>");
  EXPECT_TRUE(backend_->running());
  ASSERT_TRUE(eventually([&] { return stat("in_flight") <= 0; }));
}

TEST_F(VbdTest, FrontendVanishingMidIoReleasesEverything) {
  make_disk(4 << 20);
  add_vbd_and_start();
  // A guest process hammering the disk, killed without any goodbye.
  pid_t guest = 0;
  std::string run_dir = hv_->run_dir().string();
  std::vector<std::string> args = {PVBACK_BLKFRONT, "--run-dir", run_dir, "--domid", std::to_string(kGuest),
                                   "--devid", std::to_string(kDevid), "randread", "--seconds", "60"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ASSERT_EQ(::posix_spawn(&guest, PVBACK_BLKFRONT, nullptr, nullptr, argv.data(), environ), 0);
  ASSERT_TRUE(eventually([&] { return stat("reads") > 100; })) << stats_text();
  ::kill(guest, SIGKILL);
  ::waitpid(guest, nullptr, 0);
  EXPECT_EQ(backend_state(), XenbusStateConnected);  // nothing told the backend yet
  // The toolstack destroys the dead guest: its XenStore subtree goes, and with it the frontend.
  auto ctl = grant::SimControl::connect(hv_->run_dir(), 0);
  ASSERT_TRUE(ctl.has_value());
  sim_protocol::Request req;
  req.op = sim_protocol::Op::DestroyDomain;
  req.domid = kGuest;
  ASSERT_TRUE(ctl->call(req).has_value());
  auto status = backend_->wait_exit();
  ASSERT_TRUE(status.has_value()) << "pvback-blk did not exit after its frontend vanished";
  // Under ASan/LSan a leaked mapping or buffer makes the exit status non-zero.
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
  EXPECT_EQ(stat("in_flight"), 0);
  EXPECT_EQ(stat("persistent_grants"), 0);
}

TEST_F(VbdTest, BackendStopsCleanlyOnSigterm) {
  make_disk(1 << 20);
  add_vbd_and_start();
  blkfront::Options opts;
  opts.close_timeout = std::chrono::milliseconds(200);  // nobody answers the frontend's goodbye
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(8192, std::byte{3});
  ASSERT_EQ(front->write(0, data), 0);
  backend_->terminate();
  auto status = backend_->wait_exit();
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
}

// pvback-blk restarted under a connected guest (an upgrade, a crash, systemd restarting it): SIGTERM
// leaves XenStore alone, the new process finds the frontend Connected, attaches the rings where
// their responses stand and carries on, including requests the guest queued while no backend ran.
TEST_F(VbdTest, RestartedBackendResumesUnderAConnectedFrontend) {
  make_disk(4 << 20);
  add_vbd_and_start({"--max-queues", "2"});
  blkfront::Options opts;
  opts.max_queues = 2;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->num_queues(), 2u);
  std::vector<std::byte> first(256 << 10), second(64 << 10), back(256 << 10);
  fill_pattern(first, 0, 11);
  fill_pattern(second, 2048, 12);
  // Enough I/O that the ring indices are well away from 0 on both queues.
  for (int round = 0; round < 5; ++round) ASSERT_EQ(front->write(0, first), 0);
  for (unsigned qi = 0; qi < 2; ++qi) {
    auto& q = front->queue(qi);
    ASSERT_EQ(q.submit_read(0, std::span(back).first(4096), 100 + qi), 0);
    ASSERT_EQ(q.kick(), 0);
    ASSERT_EQ(q.wait_for(100 + qi, std::chrono::seconds(10)), 0);
  }

  for (int restart = 0; restart < 2; ++restart) {
    SCOPED_TRACE(restart);
    backend_->terminate();
    auto status = backend_->wait_exit();
    ASSERT_TRUE(status.has_value());
    ASSERT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status;
    EXPECT_EQ(backend_state(), XenbusStateConnected);  // SIGTERM leaves the device to its successor
    std::filesystem::remove(stats_);

    // The guest keeps going: a write on queue 1 published while nobody serves the ring.
    auto& q1 = front->queue(1);
    const std::uint64_t tag = 200 + restart;
    ASSERT_EQ(q1.submit_write(2048, second, tag), 0);
    q1.kick();  // no backend bound: the notification may go nowhere, the request stays queued

    backend_ = std::make_unique<BackendProcess>(PVBACK_BLK, std::chrono::seconds(20));
    backend_->start(hv_->run_dir(), backend_path(), {"--max-queues", "2"}, stats_.string());
    ASSERT_TRUE(eventually([&] { return stats_text().find("\"state\": \"Connected\"") != std::string::npos; }))
        << stats_text();
    EXPECT_EQ(backend_state(), XenbusStateConnected);
    ASSERT_EQ(q1.wait_for(tag, std::chrono::seconds(10)), 0);
    EXPECT_TRUE(front->connected());

    std::vector<std::byte> got(second.size());
    ASSERT_EQ(front->read(2048, got), 0);
    EXPECT_TRUE(got == second);
    ASSERT_EQ(front->read(0, back), 0);
    EXPECT_TRUE(back == first);
    ASSERT_EQ(front->write(0, first), 0);
    auto& q0 = front->queue(0);
    std::vector<std::byte> page(4096);
    ASSERT_EQ(q0.submit_read(0, page, 300 + restart), 0);
    ASSERT_EQ(q0.kick(), 0);
    ASSERT_EQ(q0.wait_for(300 + restart, std::chrono::seconds(10)), 0);
    EXPECT_TRUE(std::equal(page.begin(), page.end(), first.begin()));
  }
  EXPECT_EQ(stat("bad_requests"), 0) << stats_text();
  ASSERT_EQ(front->detach(), 0);
  EXPECT_EQ(backend_state(), XenbusStateClosed);
}

// The restarted backend takes its starting index from shared memory the guest writes: a hostile
// rsp_prod must end in the usual ring-overflow failure of that device, not in a loop over 2^32.
TEST_F(VbdTest, RestartedBackendRefusesAHostileRspProd) {
  make_disk(1 << 20);
  add_vbd_and_start({"--max-queues", "1"});
  blkfront::Options opts;
  opts.max_queues = 1;
  opts.max_ring_page_order = 0;
  opts.close_timeout = std::chrono::milliseconds(200);
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(8192, std::byte{5});
  ASSERT_EQ(front->write(0, data), 0);
  backend_->terminate();
  ASSERT_TRUE(backend_->wait_exit().has_value());
  auto* header = reinterpret_cast<ring::SharedRingHeader*>(front->queue(0).shared_ring());
  const auto req_prod = std::atomic_ref<std::uint32_t>(header->req_prod).load();
  std::atomic_ref<std::uint32_t>(header->rsp_prod).store(req_prod + 1000, std::memory_order_release);

  backend_ = std::make_unique<BackendProcess>(PVBACK_BLK, std::chrono::seconds(20));
  backend_->start(hv_->run_dir(), backend_path(), {"--max-queues", "1"}, stats_.string());
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosing; })) << stats_text();
  EXPECT_NE(read_key(dom0_xs_, backend_path() + "/error"), "<missing>");
  EXPECT_TRUE(backend_->running());
}

// The XenStore server dies under a connected, idle backend (issue 14). libxenstore's pollable fd is
// its watch pipe, which never reports that; the backend must notice by itself within seconds, say
// why naming the device, and exit non-zero so that its service manager restarts it, instead of
// running on unable to follow the device.
TEST_F(VbdTest, LostXenStoreConnectionEndsTheBackendWithStatus1) {
  make_disk(1 << 20);
  backend_log_ = dir_ / "pvback-blk.log";
  add_vbd_and_start({"--max-queues", "1"});
  blkfront::Options opts;
  opts.max_queues = 1;
  opts.close_timeout = std::chrono::milliseconds(200);  // nobody answers the frontend's goodbye
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(8192, std::byte{3});
  ASSERT_EQ(front->write(0, data), 0);

  hv_->stop_xenstore();
  auto status = backend_->wait_exit(std::chrono::seconds(10));
  std::ifstream in(backend_log_);
  std::stringstream log;
  log << in.rdbuf();
  ASSERT_TRUE(status.has_value()) << "pvback-blk still runs 10 s after the XenStore server died\n" << log.str();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status << "\n" << log.str();
  EXPECT_NE(log.str().find("vbd 1/51712: lost the XenStore connection"), std::string::npos) << log.str();
}

}  // namespace
}  // namespace pvback::test
