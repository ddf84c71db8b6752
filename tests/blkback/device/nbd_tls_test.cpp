// An NBD server over TLS (nbdkit requiring TLS, a pre-shared key) served by a confined data plane:
// the data plane makes its connections, handshakes included, while it may still read the key, and
// serves them confined; a killed one is replaced by another that connects again; a key the server
// does not know leaves the device unserved, with the reason logged and nothing connected.
#include <csignal>

#include "tests/blkback/device/test_disks.hpp"
#include "tests/blkback/device/vbd_fixture.hpp"
#include "tests/support/confinement.hpp"

namespace pvback::test {
namespace {

constexpr std::uint64_t kBytes = 8ull << 20;

TEST_F(VbdTest, AnNbdServerOverTlsIsServedByAConfinedDataPlaneAndAKilledOneIsReplaced) {
  TestDisk disk;
  ASSERT_NO_FATAL_FAILURE(make_nbdkit_tls(dir_, kBytes, disk));
  sim::VbdSpec spec;
  spec.params = disk.params;
  backend_log_ = dir_ / "blk.log";
  ASSERT_NO_FATAL_FAILURE(add_vbd_and_start({"--max-queues", "2", "--stats-interval-ms", "20"}, spec));
  blkfront::Options opts;
  opts.max_queues = 2;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->negotiated().sectors, kBytes / 512);
  std::vector<std::byte> written(256 * 1024);
  fill_pattern(written, 64, 71);
  ASSERT_EQ(front->write(64, written), 0);

  const pid_t plane = data_plane_pid();
  ASSERT_GT(plane, 0) << "not served by a data-plane process: " << stats_text();
  if (::geteuid() == 0) {
    ASSERT_NO_FATAL_FAILURE(expect_confined(plane, kGuest));
  }

  ASSERT_EQ(::kill(plane, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    const pid_t now = data_plane_pid();
    return now > 0 && now != plane;
  })) << stats_text();
  std::vector<std::byte> back(written.size());
  ASSERT_EQ(front->read(64, back), 0);
  EXPECT_TRUE(back == written) << "the data read back through the replacement differs";
  if (::geteuid() == 0) {
    ASSERT_NO_FATAL_FAILURE(expect_confined(data_plane_pid(), kGuest));
  }
  EXPECT_EQ(stat("io_errors"), 0);
}

TEST_F(VbdTest, AnNbdServerOverTlsThatRefusesTheKeyLeavesTheDeviceUnservedWithTheReason) {
  TestDisk disk;
  ASSERT_NO_FATAL_FAILURE(make_nbdkit_tls(dir_, kBytes, disk));
  // Another key under the same user name: the handshake fails.
  const auto wrong = dir_ / "wrong.psk";
  ASSERT_EQ(write_psk_file(wrong), 0);
  sim::VbdSpec spec;
  spec.params = disk.params.substr(0, disk.params.find("?tls-psk-file=")) + "?tls-psk-file=" + wrong.string();
  backend_log_ = dir_ / "blk.log";
  ASSERT_NO_FATAL_FAILURE(add_vbd_and_launch({}, spec));
  ASSERT_TRUE(backend_->wait_exit().has_value()) << "pvback-blk kept running without its storage";
  EXPECT_TRUE(log_contains("nbd: cannot connect to " + spec.params + ": nbd_connect_uri: gnutls_handshake"))
      << log_text();
  EXPECT_TRUE(log_contains("vbd " + std::to_string(kGuest) + "/" + std::to_string(kDevid) + ": cannot start"))
      << log_text();
  EXPECT_TRUE(data_planes().empty());
}

}  // namespace
}  // namespace pvback::test
