// RbdEngine against a real Ceph cluster (one monitor, one BlueStore OSD on a file, pool "rbd" of
// size 1) started by scripts/lib/ceph-cluster.sh: ctest starts one for all these tests (fixture
// "ceph", PVBACK_CEPH_CONF names its ceph.conf); run by hand, the binary starts its own.
#include <set>
#include <thread>

#include "storage/rbd_engine.hpp"
#include "tests/storage/engine_fixture.hpp"
#include "tests/support/ceph_cluster.hpp"

namespace pvback::test {
namespace {

using storage::Op;
using storage::RbdEngine;
using storage::RbdOptions;

const auto* const g_cluster = ::testing::AddGlobalTestEnvironment(new CephCluster);

RbdOptions options_for(const RbdImage& img) {
  RbdOptions o;
  o.pool = "rbd";
  o.image = img.name;
  o.conf = CephCluster::conf();
  return o;
}

std::unique_ptr<RbdEngine> open_engine(const RbdOptions& o) {
  auto e = RbdEngine::open(o);
  if (!e) throw std::runtime_error(std::string("RbdEngine::open: ") + std::strerror(e.error()));
  return std::move(*e);
}

void fill(Aligned& a, unsigned seed) {
  for (std::size_t i = 0; i < a.bytes; ++i) a.data[i] = static_cast<std::byte>(i * 31 + seed * 7 + i / 4096);
}

TEST(RbdEngine, ManyWritesInFlightReadBackThroughAnotherHandle) {
  RbdImage img("64M");
  constexpr unsigned kRequests = 48;  // each 3 pieces of 4 KiB + 8 KiB + 4 KiB at scattered offsets
  Aligned out(kRequests * 16384);
  fill(out, 1);
  {
    auto engine = open_engine(options_for(img));
    EXPECT_STREQ(engine->kind(), "rbd");
    EXPECT_EQ(engine->sectors(), (64u << 20) / 512);
    EXPECT_FALSE(engine->capabilities().read_only);
    EXPECT_TRUE(engine->capabilities().discard);
    EXPECT_TRUE(engine->capabilities().write_zeroes);
    Driven d(*engine);
    std::vector<iovec> iov(kRequests * 3);
    for (unsigned i = 0; i < kRequests; ++i) {
      std::byte* base = out.data + i * 16384;
      iov[i * 3] = {base, 4096};
      iov[i * 3 + 1] = {base + 4096, 8192};
      iov[i * 3 + 2] = {base + 12288, 4096};
      const std::uint64_t offset = (std::uint64_t{i} * 1303 % 4000) * 16384;  // all distinct, unordered
      ASSERT_EQ(d.channel->submit({Op::Write, offset, 16384, &iov[i * 3], 3, i}), 0);
    }
    EXPECT_EQ(d.channel->in_flight(), kRequests);
    const auto& done = d.wait_for(kRequests);
    ASSERT_EQ(done.size(), kRequests);
    std::set<std::uint32_t> tags;
    for (const Done& c : done) {
      EXPECT_EQ(c.res, 16384) << "tag " << c.tag;
      tags.insert(c.tag);
    }
    EXPECT_EQ(tags.size(), kRequests) << "a write reported twice or one never";
    ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 99}), 0);
    ASSERT_EQ(d.wait_for(kRequests + 1).back().res, 0);
  }
  // A new connection and image handle: what the first one acknowledged and flushed is there.
  auto engine = open_engine(options_for(img));
  Driven d(*engine);
  Aligned in(out.bytes);
  for (unsigned i = 0; i < kRequests; ++i) {
    const iovec v{in.data + i * 16384, 16384};
    const std::uint64_t offset = (std::uint64_t{i} * 1303 % 4000) * 16384;
    ASSERT_EQ(d.channel->submit({Op::Read, offset, 16384, &v, 1, i}), 0);
  }
  for (const Done& c : d.wait_for(kRequests)) EXPECT_EQ(c.res, 16384) << "tag " << c.tag;
  EXPECT_EQ(std::memcmp(in.data, out.data, out.bytes), 0);
}

TEST(RbdEngine, WriteZeroesReadsBackZeroesAndDiscardFreesTheObjects) {
  RbdImage img("32M");
  auto engine = open_engine(options_for(img));
  Driven d(*engine);
  Aligned data(16 << 20);
  fill(data, 2);
  const iovec v{data.data, data.bytes};
  ASSERT_EQ(d.channel->submit({Op::Write, 0, data.bytes, &v, 1, 1}), 0);
  ASSERT_EQ(d.wait_for(1)[0].res, static_cast<int>(data.bytes));
  ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 2}), 0);
  ASSERT_EQ(d.wait_for(2)[1].res, 0);
  EXPECT_EQ(img.data_objects(), 4u) << "16 MiB written in 4 MiB objects";

  // Zeroes over 8 KiB in the middle of data: the bytes around them are kept.
  ASSERT_EQ(d.channel->submit({Op::WriteZeroes, 4096, 8192, nullptr, 0, 3}), 0);
  ASSERT_EQ(d.wait_for(3)[2].res, 0);
  Aligned back(16384);
  const iovec bv{back.data, back.bytes};
  ASSERT_EQ(d.channel->submit({Op::Read, 0, back.bytes, &bv, 1, 4}), 0);
  ASSERT_EQ(d.wait_for(4)[3].res, 16384);
  EXPECT_EQ(std::memcmp(back.data, data.data, 4096), 0);
  for (std::size_t i = 4096; i < 12288; ++i) ASSERT_EQ(back.data[i], std::byte{0}) << "byte " << i;
  EXPECT_EQ(std::memcmp(back.data + 12288, data.data + 12288, 4096), 0);

  // Discarding the first 12 MiB frees three whole objects in the cluster.
  ASSERT_EQ(d.channel->submit({Op::Discard, 0, 12 << 20, nullptr, 0, 5}), 0);
  ASSERT_EQ(d.wait_for(5)[4].res, 0);
  ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 6}), 0);
  ASSERT_EQ(d.wait_for(6)[5].res, 0);
  EXPECT_EQ(img.data_objects(), 1u);
}

TEST(RbdEngine, AResizeWithTheRbdToolIsSeenByRefreshSize) {
  RbdImage img("32M");
  auto engine = open_engine(options_for(img));
  EXPECT_EQ(engine->sectors(), (32u << 20) / 512);
  EXPECT_FALSE(engine->refresh_size());
  ceph_cli("rbd resize --size 48M rbd/" + img.name + " >/dev/null 2>&1");
  // librbd hears of it through its watch on the image's header.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool changed = false;
  while (!changed && std::chrono::steady_clock::now() < deadline) {
    changed = engine->refresh_size();
    if (!changed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(changed);
  EXPECT_EQ(engine->sectors(), (48u << 20) / 512);
  // The new space is usable at once.
  Driven d(*engine);
  Aligned a(4096);
  fill(a, 3);
  const iovec v{a.data, a.bytes};
  ASSERT_EQ(d.channel->submit({Op::Write, (48u << 20) - 4096, 4096, &v, 1, 1}), 0);
  EXPECT_EQ(d.wait_for(1)[0].res, 4096);
}

TEST(RbdEngine, ASnapshotIsServedReadOnlyWithItsOwnContents) {
  RbdImage img("16M");
  Aligned first(8192), second(8192);
  fill(first, 4);
  fill(second, 5);
  {
    auto engine = open_engine(options_for(img));
    Driven d(*engine);
    const iovec v{first.data, first.bytes};
    ASSERT_EQ(d.channel->submit({Op::Write, 1 << 20, first.bytes, &v, 1, 1}), 0);
    ASSERT_EQ(d.wait_for(1)[0].res, 8192);
    ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 2}), 0);
    ASSERT_EQ(d.wait_for(2)[1].res, 0);
  }
  ceph_cli("rbd snap create rbd/" + img.name + "@before >/dev/null 2>&1");
  auto head = open_engine(options_for(img));
  RbdOptions snap = options_for(img);
  snap.snapshot = "before";
  auto old = open_engine(snap);
  EXPECT_TRUE(old->capabilities().read_only);
  EXPECT_FALSE(old->capabilities().discard);
  {
    Driven d(*head);
    const iovec v{second.data, second.bytes};
    ASSERT_EQ(d.channel->submit({Op::Write, 1 << 20, second.bytes, &v, 1, 1}), 0);
    ASSERT_EQ(d.wait_for(1)[0].res, 8192);
  }
  Driven d(*old);
  Aligned back(8192);
  const iovec bv{back.data, back.bytes};
  EXPECT_EQ(d.channel->submit({Op::Write, 0, back.bytes, &bv, 1, 1}), EROFS);
  EXPECT_EQ(d.channel->submit({Op::Discard, 0, 4096, nullptr, 0, 1}), EROFS);
  ASSERT_EQ(d.channel->submit({Op::Read, 1 << 20, back.bytes, &bv, 1, 2}), 0);
  ASSERT_EQ(d.wait_for(1)[0].res, 8192);
  EXPECT_EQ(std::memcmp(back.data, first.data, 8192), 0) << "the snapshot shows the head's later write";
}

TEST(RbdEngine, AMissingImageOrPoolOrClusterFailsWithItsErrno) {
  RbdOptions o;
  o.pool = "rbd";
  o.image = "no-such-image";
  o.conf = CephCluster::conf();
  auto missing = RbdEngine::open(o);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error(), ENOENT);
  o.pool = "no-such-pool";
  auto no_pool = RbdEngine::open(o);
  ASSERT_FALSE(no_pool.has_value());
  EXPECT_EQ(no_pool.error(), ENOENT);
  // Nobody answers on port 1: refused after client_mount_timeout, not after librados' 300 s.
  RbdOptions away;
  away.pool = "rbd";
  away.image = "x";
  away.conf = "/dev/null";
  away.settings = {{"mon_host", "v2:127.0.0.1:1"}, {"client_mount_timeout", "2"}};
  auto unreachable = RbdEngine::open(away);
  ASSERT_FALSE(unreachable.has_value());
  EXPECT_NE(unreachable.error(), 0);
}

}  // namespace
}  // namespace pvback::test
