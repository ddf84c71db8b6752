// FileEngine on a real file and (where losetup works) a real loop block device: reads, writes,
// flushes, discards and write-zeroes through its channel on a Loop, and what it refuses at once.
#include <sys/stat.h>

#include <cstdio>

#include "storage/file_engine.hpp"
#include "tests/storage/engine_fixture.hpp"

namespace pvback::test {
namespace {

using storage::FileEngine;
using storage::Op;

std::unique_ptr<FileEngine> open_file(const std::string& path, bool read_only = false, bool direct = true) {
  storage::FileOptions o;
  o.path = path;
  o.read_only = read_only;
  o.allow_direct = direct;
  auto e = FileEngine::open(o);
  if (!e) throw std::runtime_error(std::string("open: ") + std::strerror(e.error()));
  return std::move(*e);
}

TEST(FileEngine, ReadsWritesAndFlushesThroughTheLoop) {
  TempFile disk(1 << 20);
  auto engine = open_file(disk.path);
  EXPECT_EQ(engine->sectors(), (1u << 20) / 512);
  Driven d(*engine);
  Aligned out(3 * 4096), in(4 * 4096);
  for (std::size_t i = 0; i < out.bytes; ++i) out.data[i] = static_cast<std::byte>(i * 7 + 1);
  std::memset(in.data, 0, in.bytes);
  const iovec wv[] = {{out.data, 4096}, {out.data + 4096, 8192}};
  ASSERT_EQ(d.channel->submit({Op::Write, 8192, 12288, wv, 2, 1}), 0);
  ASSERT_EQ(d.wait_for(1).size(), 1u);
  ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 2}), 0);
  // Read back into three pages that are not contiguous.
  const iovec rv[] = {{in.data + 3 * 4096, 4096}, {in.data + 4096, 4096}, {in.data, 4096}};
  ASSERT_EQ(d.channel->submit({Op::Read, 8192, 12288, rv, 3, 3}), 0);
  const auto& done = d.wait_for(3);
  ASSERT_EQ(done.size(), 3u);
  EXPECT_EQ(done[0].tag, 1u);
  EXPECT_EQ(done[0].res, 12288);
  for (const Done& x : done) {
    if (x.tag == 2) {
      EXPECT_EQ(x.res, 0);
    } else if (x.tag == 3) {
      EXPECT_EQ(x.res, 12288);
    }
  }
  EXPECT_EQ(std::memcmp(in.data + 3 * 4096, out.data, 4096), 0);
  EXPECT_EQ(std::memcmp(in.data + 4096, out.data + 4096, 4096), 0);
  EXPECT_EQ(std::memcmp(in.data, out.data + 8192, 4096), 0);
  const auto on_disk = disk.read(8192, 12288);
  EXPECT_EQ(std::memcmp(on_disk.data(), out.data, 12288), 0);
  EXPECT_EQ(d.channel->in_flight(), 0u);
}

// A file in tmpfs: io_uring would hand each read and write to a worker thread (tmpfs has no
// RWF_NOWAIT), so the channel does them itself and reports them through the loop like the rest.
TEST(FileEngine, AFileInMemoryIsReadAndWrittenInlineAndReportedThroughTheLoop) {
  TempFile disk(1 << 20, "/dev/shm");
  auto engine = open_file(disk.path);
  EXPECT_TRUE(engine->in_memory());  // O_DIRECT on tmpfs or not: the kernel may allow it
  Driven d(*engine);
  constexpr std::uint32_t kN = 40;
  Aligned out(kN * 4096), in(kN * 4096);
  for (std::size_t i = 0; i < out.bytes; ++i) out.data[i] = static_cast<std::byte>(i * 13 + 5);
  std::memset(in.data, 0, in.bytes);
  std::vector<iovec> wv(kN), rv(kN);
  for (std::uint32_t i = 0; i < kN; ++i) {
    wv[i] = {out.data + i * 4096, 4096};
    ASSERT_EQ(d.channel->submit({Op::Write, i * 8192ull, 4096, &wv[i], 1, i}), 0);
  }
  EXPECT_EQ(d.channel->in_flight(), kN);
  ASSERT_EQ(d.wait_for(kN).size(), kN);
  for (const Done& x : d.sink.done) EXPECT_EQ(x.res, 4096) << "write " << x.tag;
  for (std::uint32_t i = 0; i < kN; ++i) {
    rv[i] = {in.data + (kN - 1 - i) * 4096, 4096};
    ASSERT_EQ(d.channel->submit({Op::Read, i * 8192ull, 4096, &rv[i], 1, 100 + i}), 0);
  }
  // Past the end: a short read, reported as such.
  Aligned tail(8192);
  const iovec tv[] = {{tail.data, 8192}};
  ASSERT_EQ(d.channel->submit({Op::Read, (1 << 20) - 4096, 8192, tv, 1, 999}), 0);
  const auto& done = d.wait_for(2 * kN + 1);
  ASSERT_EQ(done.size(), 2 * kN + 1);
  for (const Done& x : done) {
    if (x.tag >= 100 && x.tag < 100 + kN) {
      EXPECT_EQ(x.res, 4096) << "read " << x.tag;
    } else if (x.tag == 999) {
      EXPECT_EQ(x.res, 4096) << "the read past the end";
    }
  }
  for (std::uint32_t i = 0; i < kN; ++i)
    EXPECT_EQ(std::memcmp(in.data + (kN - 1 - i) * 4096, out.data + i * 4096, 4096), 0) << "block " << i;
  const auto in_file = disk.read(8192, 4096);
  EXPECT_EQ(std::memcmp(in_file.data(), out.data + 4096, 4096), 0);
  EXPECT_EQ(d.channel->in_flight(), 0u);
}

TEST(FileEngine, ABufferedFileOnADiskIsNotInMemory) {
  TempFile disk(1 << 20, "/var/tmp");
  EXPECT_FALSE(open_file(disk.path, false, false)->in_memory());
  EXPECT_FALSE(open_file(disk.path, false, true)->in_memory()) << "O_DIRECT";
}

TEST(FileEngine, DiscardAndWriteZeroesOfAFileRunOnTheRing) {
  TempFile disk(1 << 20);
  disk.fill(0, std::byte{0x5A}, 16 * 4096);
  auto engine = open_file(disk.path);
  const auto& caps = engine->capabilities();
  if (!caps.discard || !caps.write_zeroes) GTEST_SKIP() << "/tmp's file system cannot punch holes or zero ranges";
  EXPECT_FALSE(caps.secure_discard);  // a file has no secure erase
  Driven d(*engine);
  ASSERT_EQ(d.channel->submit({Op::Discard, 4096, 8192, nullptr, 0, 1}), 0);
  ASSERT_EQ(d.channel->submit({Op::WriteZeroes, 10 * 4096, 4096, nullptr, 0, 2}), 0);
  EXPECT_EQ(d.channel->submit({Op::SecureDiscard, 0, 4096, nullptr, 0, 3}), EOPNOTSUPP);
  const auto& done = d.wait_for(2);
  ASSERT_EQ(done.size(), 2u);
  for (const Done& x : done) EXPECT_EQ(x.res, 0) << x.tag;
  const auto back = disk.read(0, 16 * 4096);
  for (std::size_t i = 0; i < back.size(); ++i) {
    const std::size_t page = i / 4096;
    const bool zero = page == 1 || page == 2 || page == 10;
    ASSERT_EQ(back[i], zero ? std::byte{0} : std::byte{0x5A}) << "byte " << i;
  }
}

TEST(FileEngine, ReadOnlyRefusesEveryChangeAtSubmission) {
  TempFile disk(1 << 20);
  auto engine = open_file(disk.path, /*read_only=*/true);
  EXPECT_TRUE(engine->capabilities().read_only);
  EXPECT_FALSE(engine->capabilities().discard);
  Driven d(*engine);
  Aligned buf(4096);
  const iovec v{buf.data, 4096};
  EXPECT_EQ(d.channel->submit({Op::Write, 0, 4096, &v, 1, 1}), EROFS);
  EXPECT_EQ(d.channel->submit({Op::Discard, 0, 4096, nullptr, 0, 2}), EROFS);
  EXPECT_EQ(d.channel->submit({Op::WriteZeroes, 0, 4096, nullptr, 0, 3}), EROFS);
  EXPECT_EQ(d.channel->in_flight(), 0u);
  ASSERT_EQ(d.channel->submit({Op::Read, 0, 4096, &v, 1, 4}), 0);
  EXPECT_EQ(d.wait_for(1).at(0).res, 4096);
}

// A block device's discard is an ioctl, run by the channel's helper thread; its completion comes
// back through the loop like any other. Needs losetup and root (skipped otherwise, and reported
// as skipped).
TEST(FileEngine, ABlockDevicesDiscardCompletesThroughTheLoop) {
  TempFile backing(8 << 20);
  backing.fill(0, std::byte{0x5A}, 1 << 20);
  std::string dev;
  if (FILE* p = ::popen(("losetup -f --show " + backing.path + " 2>/dev/null").c_str(), "r")) {
    char line[128] = {};
    if (std::fgets(line, sizeof line, p) != nullptr) dev = line;
    ::pclose(p);
  }
  while (!dev.empty() && (dev.back() == '\n' || dev.back() == ' ')) dev.pop_back();
  if (dev.empty()) GTEST_SKIP() << "no loop device (losetup needs root and /dev/loop-control)";
  struct Detach {
    std::string dev;
    ~Detach() { [[maybe_unused]] int r = std::system(("losetup -d " + dev).c_str()); }
  } detach{dev};
  {
    auto engine = open_file(dev, false, /*direct=*/false);
    EXPECT_STREQ(engine->kind(), "block");
    EXPECT_EQ(engine->sectors(), (8u << 20) / 512);
    if (!engine->capabilities().discard) GTEST_SKIP() << dev << " does not discard";
    Driven d(*engine);
    ASSERT_EQ(d.channel->submit({Op::Discard, 64 * 1024, 128 * 1024, nullptr, 0, 7}), 0);
    EXPECT_EQ(d.channel->in_flight(), 1u);
    const auto& done = d.wait_for(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].tag, 7u);
    EXPECT_EQ(done[0].res, 0);
    EXPECT_EQ(d.channel->in_flight(), 0u);
  }
  // The loop driver punches the discarded range out of its backing file.
  const auto back = backing.read(0, 1 << 20);
  for (std::size_t i = 0; i < back.size(); ++i) {
    const bool hole = i >= 64 * 1024 && i < 192 * 1024;
    ASSERT_EQ(back[i], hole ? std::byte{0} : std::byte{0x5A}) << "byte " << i;
  }
}

}  // namespace
}  // namespace pvback::test
