// Data integrity through pvback-blk for every combination of the negotiable features: persistent
// grants, indirect descriptors, 1 or 4 queues, ring order 0 or 4, each ring ABI, and both data
// paths for non-persistent grants, on a raw file; and on every other kind of disk (test_disks.hpp:
// qcow2, qcow2 over a backing file, nbdkit over TCP in the clear and over TLS) a smaller matrix that still crosses the
// features with the engine. Each case first reads the disk's initial contents (a backing file's
// data, zeroes elsewhere), writes disjoint extents of random sizes (partial pages included)
// asynchronously on all queues, reads everything back with different extents, then rewrites
// sub-page pieces synchronously and checks again; once pvback-blk is gone, the disk's own checks
// (qemu-img check, backing file unchanged).
#include <tuple>

#include "tests/blkback/device/test_disks.hpp"
#include "tests/blkback/device/vbd_fixture.hpp"

namespace pvback::test {
namespace {

using Params = std::tuple<DiskKind, bool /*persistent*/, bool /*indirect*/, unsigned /*queues*/, unsigned /*order*/,
                          blkfront::Protocol, bool /*map data path*/>;

constexpr std::uint64_t kDiskBytes = 6ull << 20;

class FeatureMatrix : public VbdTest, public ::testing::WithParamInterface<Params> {};

// Runs `ops` (sector, bytes) as async submissions spread over all queues with up to `depth` in
// flight per queue; `is_write` chooses the direction. Fails the test on any error.
void run_async(blkfront::BlkFront& front, std::vector<std::pair<std::uint64_t, std::uint32_t>>& ops,
               std::vector<std::byte>& buffer, bool is_write, unsigned depth) {
  const unsigned nq = front.num_queues();
  std::vector<unsigned> outstanding(nq, 0);
  std::size_t next = 0, done = 0;
  std::vector<blkfront::Completion> completions(64);
  while (done < ops.size()) {
    bool submitted = false;
    for (unsigned q = 0; q < nq && next < ops.size(); ++q) {
      auto& queue = front.queue(q);
      while (next < ops.size() && outstanding[q] < depth) {
        auto [sector, bytes] = ops[next];
        std::span<std::byte> data(buffer.data() + sector * 512, bytes);
        int rc = is_write ? queue.submit_write(sector, data, next) : queue.submit_read(sector, data, next);
        if (rc == EAGAIN) break;
        ASSERT_EQ(rc, 0) << "submit " << (is_write ? "write" : "read") << " sector " << sector << " bytes " << bytes;
        ++outstanding[q];
        ++next;
        submitted = true;
      }
      ASSERT_EQ(queue.kick(), 0);
    }
    bool progress = false;
    for (unsigned q = 0; q < nq; ++q) {
      std::size_t n = front.queue(q).poll(completions);
      for (std::size_t i = 0; i < n; ++i) {
        ASSERT_EQ(completions[i].error, 0) << "request " << completions[i].tag << " failed";
        --outstanding[q];
        ++done;
        progress = true;
      }
    }
    if (!progress && !submitted) {
      ASSERT_NE(front.wait_any(std::chrono::seconds(10)), ETIMEDOUT) << "no completion";
    }
  }
}

TEST_P(FeatureMatrix, RandomPatternedWritesReadBackIdentical) {
  const auto [kind, persistent, indirect, queues, order, protocol, map_path] = GetParam();
  TestDisk disk;
  ASSERT_NO_FATAL_FAILURE(make_test_disk(kind, dir_, kDiskBytes, disk));
  // Images in writeback: the data path is what this matrix checks, and writethrough's fdatasync per
  // write made the qcow2 cases several times slower (about 24 s each under ASan); image_test.cpp
  // and the kill tests cover the default.
  std::vector<std::string> args = {"--max-queues", "4", "--data-path", map_path ? "map" : "copy", "--image-cache",
                                   "writeback"};
  sim::VbdSpec spec;
  spec.params = disk.params;
  ASSERT_NO_FATAL_FAILURE(add_vbd_and_start(args, spec));
  blkfront::Options opts;
  opts.persistent = persistent;
  opts.max_indirect_segments = indirect ? 256 : 0;
  opts.max_queues = queues;
  opts.max_ring_page_order = order;
  opts.protocol = protocol;
  auto front = attach(opts);
  ASSERT_NE(front, nullptr);
  const auto& neg = front->negotiated();
  EXPECT_EQ(neg.num_queues, queues);
  EXPECT_EQ(neg.ring_page_order, order);
  EXPECT_EQ(neg.persistent, persistent);
  EXPECT_EQ(neg.indirect, indirect);
  ASSERT_EQ(neg.sectors, kDiskBytes / 512);
  const std::uint32_t unit = neg.sector_size / 512;  // requests must respect sector-size

  // What the disk holds before the guest wrote anything (a backing file's data) is read first.
  std::vector<std::byte> readback(kDiskBytes, std::byte{0x5a});
  ASSERT_EQ(front->read(0, readback), 0);
  ASSERT_TRUE(readback == disk.initial) << "the disk's initial contents read back differently";

  std::mt19937_64 rng(std::hash<std::string>{}(::testing::UnitTest::GetInstance()->current_test_info()->name()));
  std::vector<std::byte> model(kDiskBytes);
  fill_pattern(model, 0, rng());

  // Disjoint extents covering the disk: 1 to 96 sectors (indirect: up to 1 MiB), unaligned starts.
  std::vector<std::pair<std::uint64_t, std::uint32_t>> extents;
  const std::uint64_t max_sectors = indirect ? 512 : 96;  // up to 256 KiB: fits the frontend's pool
  for (std::uint64_t s = 0; s < neg.sectors;) {
    std::uint64_t n = (1 + rng() % max_sectors) * unit;
    n = std::min(n, neg.sectors - s);
    extents.emplace_back(s, static_cast<std::uint32_t>(n * 512));
    s += n;
  }
  std::shuffle(extents.begin(), extents.end(), rng);
  run_async(*front, extents, model, /*is_write=*/true, 16);

  std::vector<std::pair<std::uint64_t, std::uint32_t>> reads;
  for (std::uint64_t s = 0; s < neg.sectors;) {
    std::uint64_t n = std::min<std::uint64_t>((1 + rng() % max_sectors) * unit, neg.sectors - s);
    reads.emplace_back(s, static_cast<std::uint32_t>(n * 512));
    s += n;
  }
  std::shuffle(reads.begin(), reads.end(), rng);
  run_async(*front, reads, readback, /*is_write=*/false, 16);
  ASSERT_TRUE(readback == model) << "data read back differs from data written";

  // Sub-page rewrites (first_sect/last_sect inside a page) and one request spanning many pages.
  for (int i = 0; i < 32; ++i) {
    const std::uint64_t sector = (rng() % (neg.sectors / unit - 8)) * unit;
    const std::uint32_t bytes = static_cast<std::uint32_t>((1 + rng() % 7) * unit * 512);
    std::span<std::byte> piece(model.data() + sector * 512, std::min<std::uint64_t>(bytes, kDiskBytes - sector * 512));
    fill_pattern(piece, sector, rng());
    ASSERT_EQ(front->write(sector, piece), 0);
  }
  const std::uint64_t span_sector = 3 * unit;
  std::span<std::byte> big(model.data() + span_sector * 512, 600 * 1024);  // split by the frontend
  fill_pattern(big, span_sector, rng());
  ASSERT_EQ(front->write(span_sector, big), 0);
  std::fill(readback.begin(), readback.end(), std::byte{0});
  ASSERT_EQ(front->read(0, readback), 0);
  ASSERT_TRUE(readback == model) << "data differs after sub-page rewrites";

  EXPECT_EQ(front->detach(), 0);
  ASSERT_TRUE(eventually([&] { return backend_state() == XenbusStateClosed; }));
  // Nothing is left in flight or mapped once the frontend closed.
  ASSERT_TRUE(eventually([&] { return stat("in_flight") == 0 && stat("persistent_grants") == 0; }))
      << stats_text();
  EXPECT_GT(stat("writes"), 0);
  EXPECT_GT(stat("reads"), 0);
  EXPECT_EQ(stat("bad_requests"), 0);
  EXPECT_EQ(stat("io_errors"), 0);
  if (persistent) {
    EXPECT_GT(stat("persistent_hits"), 0);
  }
  if (indirect) {
    EXPECT_GT(stat("indirect"), 0);
  }
  // Unplugged: pvback-blk and its storage daemon end, and the image is closed for the checks.
  EXPECT_EQ(sim::remove_vbd(dom0_xs_, 0, kGuest, kDevid), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value()) << "pvback-blk did not exit after the unplug";
  disk.check_after();
}

std::string name_of(const ::testing::TestParamInfo<Params>& info) {
  const auto [kind, persistent, indirect, queues, order, protocol, map_path] = info.param;
  std::string p = std::string(blkfront::protocol_name(protocol));
  for (char& c : p)
    if (c == '-') c = '_';
  return std::string(disk_kind_name(kind)) + "_" + (persistent ? "persistent" : "nonpersistent") + (indirect ? "_indirect" : "_direct") + "_q" +
         std::to_string(queues) + "_order" + std::to_string(order) + "_" + p + (map_path ? "_map" : "_copy");
}

#ifndef PVBACK_TEST_RBD_DISKS
// Every feature combination, on a raw file.
INSTANTIATE_TEST_SUITE_P(Blkback, FeatureMatrix,
                         ::testing::Combine(::testing::Values(DiskKind::RawFile), ::testing::Bool(), ::testing::Bool(), ::testing::Values(1u, 4u),
                                            ::testing::Values(0u, 4u),
                                            ::testing::Values(blkfront::Protocol::Omitted, blkfront::Protocol::X86_32,
                                                              blkfront::Protocol::X86_64),
                                            ::testing::Bool()),
                         name_of);

// The other kinds of disk: the features that change how requests reach the engine (persistent
// grants, indirect descriptors, one or several queues and so connections, both data paths), on
// one ring size and ABI, so that each kind adds 16 cases, not 96.
constexpr DiskKind kOtherDisks[] = {DiskKind::Qcow2, DiskKind::Qcow2WithBacking, DiskKind::NbdkitMemory,
                                    DiskKind::NbdkitTls};
INSTANTIATE_TEST_SUITE_P(Engines, FeatureMatrix,
                         ::testing::Combine(::testing::ValuesIn(kOtherDisks), ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(1u, 4u), ::testing::Values(4u),
                                            ::testing::Values(blkfront::Protocol::X86_64), ::testing::Bool()),
                         name_of);
#else
// Built into blkback_rbd_tests, which has the Ceph cluster: the same smaller matrix on an RBD image.
INSTANTIATE_TEST_SUITE_P(Rbd, FeatureMatrix,
                         ::testing::Combine(::testing::Values(DiskKind::Rbd), ::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(1u, 4u), ::testing::Values(4u),
                                            ::testing::Values(blkfront::Protocol::X86_64), ::testing::Bool()),
                         name_of);
#endif

}  // namespace
}  // namespace pvback::test
