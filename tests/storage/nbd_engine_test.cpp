// NbdEngine against a real NBD server: images in QEMU's formats through a qemu-storage-daemon the
// engine starts and owns, and a server named by URI. Data written through one connection reads
// back through another and survives the daemon.
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <set>

#include "storage/nbd_engine.hpp"
#include "tests/storage/engine_fixture.hpp"

namespace pvback::test {
namespace {

using storage::NbdEngine;
using storage::NbdOptions;
using storage::Op;

struct Image {
  Image(const char* format, const char* size) {
    char name[] = "/tmp/pvback-image-XXXXXX";
    const int fd = ::mkstemp(name);
    if (fd < 0) throw std::runtime_error("mkstemp");
    ::close(fd);
    path = name;
    const std::string cmd = std::string("qemu-img create -q -f ") + format + " " + path + " " + size;
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("qemu-img create");
  }
  ~Image() { ::unlink(path.c_str()); }
  std::string path;
};

std::unique_ptr<NbdEngine> open_image(const Image& img, const char* format, bool read_only = false) {
  NbdOptions o;
  o.image = img.path;
  o.format = format;
  o.read_only = read_only;
  auto e = NbdEngine::open(o);
  if (!e) throw std::runtime_error(std::string("NbdEngine::open: ") + std::strerror(e.error()));
  return std::move(*e);
}

TEST(NbdEngine, FormatNamesLibxlWritesMapToQemus) {
  EXPECT_STREQ(storage::qemu_format_name("aio"), "raw");
  EXPECT_STREQ(storage::qemu_format_name("raw"), "raw");
  EXPECT_STREQ(storage::qemu_format_name("vhd"), "vpc");
  EXPECT_STREQ(storage::qemu_format_name("qcow2"), "qcow2");
  EXPECT_STREQ(storage::qemu_format_name("vhdx"), "vhdx");
  EXPECT_EQ(storage::qemu_format_name("tap"), nullptr);
  EXPECT_EQ(storage::qemu_format_name(""), nullptr);
}

TEST(NbdEngine, AQcow2ImageIsReadAndWrittenThroughItsOwnStorageDaemon) {
  Image img("qcow2", "64M");
  pid_t daemon = 0;
  Aligned out(3 * 4096), in(3 * 4096);
  for (std::size_t i = 0; i < out.bytes; ++i) out.data[i] = static_cast<std::byte>(i * 13 + 5);
  {
    auto engine = open_image(img, "qcow2");
    daemon = engine->storage_daemon();
    ASSERT_GT(daemon, 0);
    EXPECT_STREQ(engine->kind(), "nbd");
    EXPECT_EQ(engine->sectors(), (64u << 20) / 512);
    EXPECT_FALSE(engine->capabilities().read_only);
    EXPECT_TRUE(engine->capabilities().discard);
    Driven d(*engine);
    const iovec wv[] = {{out.data, 4096}, {out.data + 4096, 8192}};
    ASSERT_EQ(d.channel->submit({Op::Write, 1 << 20, 12288, wv, 2, 1}), 0);
    ASSERT_EQ(d.wait_for(1).size(), 1u);
    EXPECT_EQ(d.sink.done[0].res, 12288);
    // Data around 4 MiB, then zeroes written over the middle 8 KiB of it.
    Aligned around(4 * 4096);
    std::memset(around.data, 0x3C, around.bytes);
    const iovec av{around.data, around.bytes};
    ASSERT_EQ(d.channel->submit({Op::Write, (4 << 20) - 4096, around.bytes, &av, 1, 6}), 0);
    ASSERT_EQ(d.wait_for(2).size(), 2u);
    ASSERT_EQ(d.channel->submit({Op::Flush, 0, 0, nullptr, 0, 2}), 0);
    ASSERT_EQ(d.channel->submit({Op::WriteZeroes, 4 << 20, 8192, nullptr, 0, 3}), 0);
    ASSERT_EQ(d.channel->submit({Op::Discard, 8 << 20, 1 << 20, nullptr, 0, 4}), 0);
    EXPECT_EQ(d.channel->submit({Op::SecureDiscard, 0, 4096, nullptr, 0, 5}), EOPNOTSUPP);
    const auto& done = d.wait_for(5);
    ASSERT_EQ(done.size(), 5u);
    for (const Done& x : done) EXPECT_GE(x.res, 0) << "tag " << x.tag;
    std::memset(around.data, 0xFF, around.bytes);
    ASSERT_EQ(d.channel->submit({Op::Read, (4 << 20) - 4096, around.bytes, &av, 1, 7}), 0);
    ASSERT_EQ(d.wait_for(6).size(), 6u);
    for (std::size_t i = 0; i < around.bytes; ++i) {
      const bool zeroed = i >= 4096 && i < 3 * 4096;
      ASSERT_EQ(around.data[i], zeroed ? std::byte{0} : std::byte{0x3C}) << "byte " << i;
    }
    EXPECT_EQ(d.channel->in_flight(), 0u);
  }
  // The engine stopped its daemon; a new one (another connection, another daemon) reads the data.
  EXPECT_EQ(::kill(daemon, 0), -1);
  {
    auto again = open_image(img, "qcow2");
    EXPECT_NE(again->storage_daemon(), daemon);
    Driven d(*again);
    const iovec rv[] = {{in.data + 8192, 4096}, {in.data, 8192}};  // scattered differently
    ASSERT_EQ(d.channel->submit({Op::Read, 1 << 20, 12288, rv, 2, 9}), 0);
    const auto& done = d.wait_for(1);
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].res, 12288);
    EXPECT_EQ(std::memcmp(in.data + 8192, out.data, 4096), 0);
    EXPECT_EQ(std::memcmp(in.data, out.data + 4096, 8192), 0);
  }
  // Once that daemon is gone too, the image is a sound qcow2.
  EXPECT_EQ(std::system(("qemu-img check -q " + img.path).c_str()), 0);
}

TEST(NbdEngine, AServerNamedByUriIsServedAndReadOnlyRefusesWrites) {
  Image img("raw", "16M");
  auto owner = open_image(img, "raw");  // a server to point at
  NbdOptions o;
  o.uri = owner->uri();
  auto by_uri = NbdEngine::open(o);
  ASSERT_TRUE(by_uri) << std::strerror(by_uri.error());
  EXPECT_EQ((*by_uri)->storage_daemon(), 0);
  EXPECT_EQ((*by_uri)->sectors(), (16u << 20) / 512);
  Aligned buf(4096);
  std::memset(buf.data, 0x6B, 4096);
  {
    Driven d(**by_uri);
    const iovec v{buf.data, 4096};
    ASSERT_EQ(d.channel->submit({Op::Write, 4096, 4096, &v, 1, 1}), 0);
    ASSERT_EQ(d.wait_for(1).size(), 1u);
    EXPECT_EQ(d.sink.done[0].res, 4096);
  }
  o.read_only = true;
  auto ro = NbdEngine::open(o);
  ASSERT_TRUE(ro);
  EXPECT_TRUE((*ro)->capabilities().read_only);
  EXPECT_FALSE((*ro)->capabilities().discard);
  Driven d(**ro);
  const iovec v{buf.data, 4096};
  EXPECT_EQ(d.channel->submit({Op::Write, 0, 4096, &v, 1, 1}), EROFS);
  std::memset(buf.data, 0, 4096);
  ASSERT_EQ(d.channel->submit({Op::Read, 4096, 4096, &v, 1, 2}), 0);
  ASSERT_EQ(d.wait_for(1).size(), 1u);
  EXPECT_EQ(buf.data[0], std::byte{0x6B});
  EXPECT_EQ(buf.data[4095], std::byte{0x6B});
}

// The server dies with commands in flight: every one is still reported, once, as done or failed
// (libnbd fails what a dead connection will never answer), and later ones fail at once.
TEST(NbdEngine, AServerDyingWithCommandsInFlightLeavesNoneUnreported) {
  Image img("qcow2", "64M");
  auto engine = open_image(img, "qcow2");
  Driven d(*engine);
  constexpr std::uint32_t kOps = 16;
  std::vector<std::byte> buf(kOps * 65536);
  std::vector<iovec> iov(kOps);
  for (std::uint32_t i = 0; i < kOps; ++i) {
    iov[i] = {buf.data() + i * 65536, 65536};
    ASSERT_EQ(d.channel->submit({i % 2 ? Op::Write : Op::Read, i * 65536ull, 65536, &iov[i], 1, i}), 0);
  }
  d.loop.submit();
  ASSERT_EQ(::kill(engine->storage_daemon(), SIGKILL), 0);
  const auto& done = d.wait_for(kOps);
  ASSERT_EQ(done.size(), kOps) << "commands left unreported after the server died";
  std::set<std::uint32_t> tags;
  for (const Done& x : done) {
    EXPECT_TRUE(x.res == 65536 || x.res < 0) << "tag " << x.tag << " res " << x.res;
    tags.insert(x.tag);
  }
  EXPECT_EQ(tags.size(), kOps);
  EXPECT_EQ(d.channel->in_flight(), 0u);
  // The connection is gone: a new command is refused now or fails, never hangs.
  const int rc = d.channel->submit({Op::Read, 0, 65536, &iov[0], 1, 99});
  if (rc == 0) {
    ASSERT_EQ(d.wait_for(kOps + 1).size(), kOps + 1u);
    EXPECT_LT(d.sink.done.back().res, 0);
  }
}

TEST(NbdEngine, AnImageTheDaemonCannotOpenFailsAtOnceWithTheReason) {
  NbdOptions o;
  o.image = "/nonexistent/pvback/disk.qcow2";
  o.format = "qcow2";
  auto e = NbdEngine::open(o);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error(), ENOENT);
  o.format = "tap";
  auto bad = NbdEngine::open(o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), EINVAL);
  NbdOptions nobody;
  nobody.uri = "nbd+unix:///disk?socket=/nonexistent/pvback.sock";
  EXPECT_FALSE(NbdEngine::open(nobody));
}

// Requests in many scattered pieces (persistent grants make every guest page one) go through the
// tag's bounce buffer as one command; past the channel's bounce budget, in pieces. Both read and
// write the right bytes in the right places.
TEST(NbdEngine, ScatteredPiecesReadAndWriteRightWithAndWithoutABounceBuffer) {
  Image img("raw", "80M");
  auto engine = open_image(img, "raw");
  Driven d(*engine);
  for (const std::size_t piece : {std::size_t{4096}, std::size_t{5} << 20}) {  // 5 MiB x 8: over the budget
    const unsigned kPieces = 8;
    Aligned out(piece * kPieces * 2), in(piece * kPieces * 2);
    for (std::size_t i = 0; i < out.bytes; ++i) out.data[i] = static_cast<std::byte>(i * 7 + i / 4096 + piece);
    std::memset(in.data, 0xEE, in.bytes);
    // Every other piece of the buffer: never contiguous in memory.
    std::vector<iovec> wv(kPieces), rv(kPieces);
    for (unsigned i = 0; i < kPieces; ++i) {
      wv[i] = {out.data + 2 * i * piece, piece};
      rv[i] = {in.data + (2 * (kPieces - 1 - i) + 1) * piece, piece};  // read back into other places
    }
    const std::uint64_t offset = 3 * 4096;
    const std::size_t before = d.sink.done.size();
    ASSERT_EQ(d.channel->submit({Op::Write, offset, piece * kPieces, wv.data(), kPieces, 1}), 0);
    ASSERT_EQ(d.wait_for(before + 1).back().res, static_cast<int>(piece * kPieces));
    ASSERT_EQ(d.channel->submit({Op::Read, offset, piece * kPieces, rv.data(), kPieces, 2}), 0);
    ASSERT_EQ(d.wait_for(before + 2).back().res, static_cast<int>(piece * kPieces));
    for (unsigned i = 0; i < kPieces; ++i)
      EXPECT_EQ(std::memcmp(rv[i].iov_base, wv[i].iov_base, piece), 0) << "piece " << i << " of " << piece;
    for (unsigned i = 0; i < kPieces; ++i)  // the gaps between the pieces read into stay untouched
      EXPECT_EQ(in.data[2 * (kPieces - 1 - i) * piece], std::byte{0xEE}) << "gap " << i;
  }
}

}  // namespace
}  // namespace pvback::test
