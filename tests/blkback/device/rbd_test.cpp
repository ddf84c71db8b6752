// pvback-blk serving a disk that is an image in a real Ceph cluster (the fixture "ceph"), named
// as an xl disk line names it: "rbd:pool/image:conf=..." (a target of its own) or libxl's qdisk
// form "aio:rbd:...". What the guest writes is in the cluster; a resize with the rbd tool reaches
// the guest; a guest's discard frees the cluster's objects; a missing image fails the device
// with an error node that names it.
#include <signal.h>

#include <deque>
#include <filesystem>

#include "sandbox/sandbox.hpp"

#include "tests/blkback/device/vbd_fixture.hpp"
#include "tests/support/ceph_cluster.hpp"

namespace pvback::test {
namespace {

const auto* const g_cluster = ::testing::AddGlobalTestEnvironment(new CephCluster);

class VbdRbdTest : public VbdTest {
 protected:
  // Starts pvback-blk on `image` named with `prefix` ("rbd:" or "aio:rbd:").
  void start_on(const RbdImage& image, const std::string& prefix = "rbd:", std::vector<std::string> args = {}) {
    sim::VbdSpec spec;
    spec.params = prefix + "rbd/" + image.name + ":conf=" + CephCluster::conf();
    ASSERT_NO_FATAL_FAILURE(add_vbd_and_start(std::move(args), spec));
  }
};

class VbdRbdForms : public VbdRbdTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(VbdRbdForms, TheGuestsWritesOnEveryQueueAreInTheCluster) {
  RbdImage image("32M");
  backend_log_ = dir_ / "blk.log";
  ASSERT_NO_FATAL_FAILURE(start_on(image, GetParam(), {"--max-queues", "4"}));
  blkfront::Options opts;
  opts.max_queues = 4;
  opts.persistent = true;
  opts.max_indirect_segments = 64;
  std::vector<std::byte> data(4 << 20);
  fill_pattern(data, 4096, 11);
  {
    auto front = attach(opts);
    ASSERT_NE(front, nullptr);
    EXPECT_EQ(front->negotiated().sectors, (32u << 20) / 512);
    EXPECT_EQ(front->negotiated().num_queues, 4u);
    // 256 KiB per request, spread over the queues, as many in flight as the frontend has room for.
    constexpr std::uint32_t kPiece = 256 * 1024;
    std::vector<std::deque<std::uint64_t>> pending(4);
    for (std::uint32_t i = 0; i < data.size() / kPiece; ++i) {
      auto& q = front->queue(i % 4);
      std::span<std::byte> piece(data.data() + std::size_t{i} * kPiece, kPiece);
      int rc;
      while ((rc = q.submit_write(4096 + std::uint64_t{i} * (kPiece / 512), piece, i + 1)) == EAGAIN) {
        ASSERT_FALSE(pending[i % 4].empty());
        ASSERT_EQ(q.kick(), 0);
        ASSERT_EQ(q.wait_for(pending[i % 4].front(), std::chrono::seconds(30)), 0);
        pending[i % 4].pop_front();
      }
      ASSERT_EQ(rc, 0) << "write " << i + 1;
      pending[i % 4].push_back(i + 1);
    }
    for (unsigned q = 0; q < 4; ++q) {
      ASSERT_EQ(front->queue(q).kick(), 0);
      for (std::uint64_t tag : pending[q]) ASSERT_EQ(front->queue(q).wait_for(tag, std::chrono::seconds(30)), 0);
    }
    ASSERT_EQ(front->flush(), 0);
    std::vector<std::byte> back(data.size());
    ASSERT_EQ(front->read(4096, back), 0);
    EXPECT_TRUE(back == data);
    EXPECT_NE(stats_text().find("\"engine\": \"rbd\""), std::string::npos) << stats_text();
  }
  // Unplugged: pvback-blk ends and closes the image; the cluster holds what the guest wrote.
  EXPECT_EQ(sim::remove_vbd(dom0_xs_, 0, kGuest, kDevid), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value()) << "pvback-blk did not exit after the unplug";
  const std::string raw = (dir_ / "export.raw").string();
  ceph_cli("rbd export rbd/" + image.name + " " + raw + " >/dev/null 2>&1");
  std::ifstream in(raw, std::ios::binary);
  in.seekg(4096 * 512);
  std::vector<std::byte> stored(data.size());
  in.read(reinterpret_cast<char*>(stored.data()), static_cast<std::streamsize>(stored.size()));
  EXPECT_TRUE(stored == data) << "the cluster's image differs from what the guest wrote";
}

INSTANTIATE_TEST_SUITE_P(Params, VbdRbdForms, ::testing::Values("rbd:", "aio:rbd:"),
                         [](const auto& info) { return std::string(info.param).starts_with("aio") ? "qdisk" : "rbd"; });

TEST_F(VbdRbdTest, AResizeWithTheRbdToolReachesTheGuest) {
  RbdImage image("16M");
  ASSERT_NO_FATAL_FAILURE(start_on(image, "rbd:", {"--stats-interval-ms", "100"}));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->negotiated().sectors, (16u << 20) / 512);
  ceph_cli("rbd resize --size 24M rbd/" + image.name + " >/dev/null 2>&1");
  EXPECT_TRUE(eventually([&] { return read_key(dom0_xs_, backend_path() + "/sectors") == std::to_string(49152); }));
  EXPECT_TRUE(eventually([&] {
    front->process_xenstore();
    return front->negotiated().sectors == 49152;
  }));
  std::vector<std::byte> data(4096, std::byte{9}), back(4096);
  ASSERT_EQ(front->write(49152 - 8, data), 0);  // the last 4 KiB of the new size
  ASSERT_EQ(front->read(49152 - 8, back), 0);
  EXPECT_EQ(back, data);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

TEST_F(VbdRbdTest, AGuestsDiscardFreesTheClustersObjects) {
  RbdImage image("16M");
  ASSERT_NO_FATAL_FAILURE(start_on(image));
  EXPECT_EQ(read_key(dom0_xs_, backend_path() + "/feature-discard"), "1");
  auto front = attach();
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(12 << 20);
  fill_pattern(data, 0, 3);
  ASSERT_EQ(front->write(0, data), 0);
  ASSERT_EQ(front->flush(), 0);
  EXPECT_EQ(image.data_objects(), 3u);
  ASSERT_EQ(front->discard(0, (8u << 20) / 512), 0);  // the first two 4 MiB objects
  ASSERT_EQ(front->flush(), 0);
  EXPECT_EQ(image.data_objects(), 1u);
  std::vector<std::byte> back(4 << 20);
  ASSERT_EQ(front->read((8u << 20) / 512, back), 0);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin() + (8 << 20))) << "the data after the discard changed";
}

// The image's rings are served by a data plane of their own, which opened its own cluster
// connection before confining itself: the guest's uid, no capabilities and the filter on every
// thread librbd runs, the host's network kept (it reaches the OSDs over connections it makes
// itself). Killed, it is replaced under the same connection of the guest, and what the guest
// wrote before is read back through the new one.
TEST_F(VbdRbdTest, TheImagesDataPlaneIsConfinedOnEveryThreadAndAKilledOneIsReplaced) {
  RbdImage image("16M");
  ASSERT_NO_FATAL_FAILURE(start_on(image, "rbd:", {"--stats-interval-ms", "50"}));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  std::vector<std::byte> data(1 << 20), back(1 << 20);
  fill_pattern(data, 2048, 21);
  ASSERT_EQ(front->write(2048, data), 0);
  const auto planes = data_planes();
  ASSERT_EQ(planes.size(), 1u) << "the image is not served by a data-plane process";
  const pid_t dp = planes[0];
  if (::geteuid() == 0) {
    const uid_t want = sandbox::kDataPlaneUidBase + kGuest;
    unsigned threads = 0;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(dp) + "/task")) {
      auto c = sandbox::describe_task(dp, static_cast<pid_t>(std::stoi(task.path().filename().string())));
      if (!c) continue;  // ended meanwhile
      ++threads;
      EXPECT_EQ(c->uid[1], want) << "thread " << task.path();
      EXPECT_EQ(c->cap_eff, 0u) << "thread " << task.path();
      EXPECT_EQ(c->cap_prm, 0u) << "thread " << task.path();
      // no_new_privs reaches librbd's threads with the filter (TSYNC), which a sanitized build
      // leaves out: there only the confining thread has it.
      if (sandbox::kSeccompInThisBuild) {
        EXPECT_EQ(c->no_new_privs, 1) << "thread " << task.path();
        EXPECT_EQ(c->seccomp, 2) << "thread " << task.path();
      }
    }
    EXPECT_GT(threads, 2u) << "librbd's threads";
  }
  ASSERT_EQ(::kill(dp, SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = data_planes();
    return now.size() == 1 && now[0] != dp && stats_text().find("\"restarts\": 1,") != std::string::npos;
  })) << stats_text();
  ASSERT_EQ(front->read(2048, back), 0);
  EXPECT_TRUE(back == data);
  fill_pattern(data, 2048, 22);
  ASSERT_EQ(front->write(2048, data), 0);  // the image's lock moves to the new data plane
  ASSERT_EQ(front->read(2048, back), 0);
  EXPECT_TRUE(back == data);
  EXPECT_EQ(backend_state(), XenbusStateConnected);
}

TEST_F(VbdRbdTest, AMissingImageFailsTheDeviceWithAnErrorNodeNamingIt) {
  const std::string params = "rbd:rbd/no-such-image:conf=" + CephCluster::conf();
  sim::VbdSpec spec;
  spec.params = params;
  backend_log_ = dir_ / "blk.log";
  ASSERT_NO_FATAL_FAILURE(add_vbd_and_launch({}, spec));
  ASSERT_TRUE(eventually([&] { return read_key(dom0_xs_, backend_path() + "/error") != "<missing>"; }))
      << "no error node";
  EXPECT_EQ(read_key(dom0_xs_, backend_path() + "/error"), std::to_string(ENOENT) + " opening " + params);
  EXPECT_NE(backend_state(), XenbusStateInitWait);
  EXPECT_NE(backend_state(), XenbusStateConnected);
  EXPECT_TRUE(log_contains("rbd rbd/no-such-image (client.admin): cannot open the image: No such file or directory"));
}

}  // namespace
}  // namespace pvback::test
