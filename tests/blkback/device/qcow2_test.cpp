// A qcow2 image served by pvback-blk (through its qemu-storage-daemon) stays thin: it grows by
// what the guest writes, not by the disk's size, and a guest's discard gives the space back to the
// file system the image lives on (the daemon's nodes are opened with discard=unmap).
#include "tests/blkback/device/test_disks.hpp"
#include "tests/blkback/device/vbd_fixture.hpp"

namespace pvback::test {
namespace {

constexpr std::uint64_t kMiB = 1ull << 20;

TEST_F(VbdTest, AQcow2ImageStaysThinAndShrinksWhenTheGuestDiscards) {
  const std::filesystem::path image = dir_ / "big.qcow2";
  ASSERT_EQ(run_command("qemu-img create -q -f qcow2 " + image.string() + " 10G"), 0);
  sim::VbdSpec spec;
  spec.params = "qcow2:" + image.string();
  ASSERT_NO_FATAL_FAILURE(add_vbd_and_start({}, spec));
  auto front = attach();
  ASSERT_NE(front, nullptr);
  ASSERT_EQ(front->negotiated().sectors, (10ull << 30) / 512);
  ASSERT_TRUE(front->negotiated().discard);
  const std::uint64_t before = allocated_bytes(image);

  // 100 MiB at 1 GiB, in 1 MiB writes.
  const std::uint64_t first = (1ull << 30) / 512;
  const std::uint64_t count = 100 * kMiB / 512;
  std::vector<std::byte> chunk(kMiB);
  for (std::uint64_t i = 0; i < 100; ++i) {
    fill_pattern(chunk, first + i * (kMiB / 512), 42);
    ASSERT_EQ(front->write(first + i * (kMiB / 512), chunk), 0) << "MiB " << i;
  }
  ASSERT_EQ(front->flush(), 0);
  const std::uint64_t written = allocated_bytes(image);
  EXPECT_GE(written, before + 100 * kMiB) << "the data is not in the image";
  EXPECT_LT(written, 200 * kMiB) << "a 10 GiB image with 100 MiB written takes " << written / kMiB << " MiB";
  std::vector<std::byte> back(kMiB), expected(kMiB);
  for (std::uint64_t i : {0ull, 57ull, 99ull}) {
    fill_pattern(expected, first + i * (kMiB / 512), 42);
    ASSERT_EQ(front->read(first + i * (kMiB / 512), back), 0);
    EXPECT_TRUE(back == expected) << "MiB " << i;
  }

  // The guest discards what it wrote: the image gives the clusters back.
  ASSERT_EQ(front->discard(first, count), 0);
  ASSERT_EQ(front->flush(), 0);
  ASSERT_TRUE(eventually([&] { return allocated_bytes(image) < written - 90 * kMiB; }))
      << "after the discard the image still takes " << allocated_bytes(image) / kMiB << " MiB";
  ASSERT_EQ(front->read(first, back), 0);
  EXPECT_EQ(back, std::vector<std::byte>(kMiB, std::byte{0}));  // qcow2 reads discarded clusters as zeroes
  EXPECT_TRUE(eventually([&] { return stat("sectors_discarded") == static_cast<long long>(count); })) << stats_text();

  EXPECT_EQ(sim::remove_vbd(dom0_xs_, 0, kGuest, kDevid), 0);
  ASSERT_TRUE(backend_->wait_exit().has_value()) << "pvback-blk did not exit after the unplug";
  const std::filesystem::path log = dir_ / "qemu-img.log";
  EXPECT_EQ(qemu_img_check(image, log), 0) << "qemu-img check: see " << log;
}

}  // namespace
}  // namespace pvback::test
