// VifShared: the generation moves on every change, the multicast filter behaves like Linux
// netback's, and readers never see a torn hash configuration.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "netback/vif_shared.hpp"

namespace pvback::test {
namespace {

using netback::HashConfig;
using netback::MacAddress;
using netback::VifShared;
using netback::GuestSetState;
using netback::GuestStateSink;

MacAddress group(std::uint8_t n) { return {0x01, 0x00, 0x5e, 0x00, 0x00, n}; }

TEST(VifShared, GenerationMovesOnEveryChange) {
  VifShared v(4);
  EXPECT_EQ(v.num_queues(), 4u);
  auto g = v.generation();
  HashConfig h;
  h.algorithm = 1;
  v.set_hash(h);
  EXPECT_GT(v.generation(), g);
  g = v.generation();
  v.set_rate({1000, 50000});
  EXPECT_GT(v.generation(), g);
  EXPECT_EQ(v.rate().bytes, 1000u);
  EXPECT_EQ(v.rate().usec, 50000u);
  g = v.generation();
  v.set_multicast_control(true);
  EXPECT_GT(v.generation(), g);
  g = v.generation();
  v.multicast_add(group(1));
  EXPECT_GT(v.generation(), g);
  g = v.generation();
  v.multicast_del(group(1));
  EXPECT_GT(v.generation(), g);
  g = v.generation();
  v.multicast_del(group(1));  // absent: no change
  EXPECT_EQ(v.generation(), g);
  v.multicast_add(group(2));
  g = v.generation();
  v.multicast_add(group(2));  // already listed: no change
  EXPECT_EQ(v.generation(), g);
  EXPECT_EQ(v.multicast_count(), 1u);
}

TEST(VifShared, HashRoundTripsAndIsClamped) {
  VifShared v(2);
  HashConfig h;
  h.algorithm = 1;
  h.flags = 0xf;
  h.key_len = 99;
  h.key[0] = 0xab;
  h.mapping_size = 1000;
  h.mapping[3] = 1;
  v.set_hash(h);
  const HashConfig r = v.hash();
  EXPECT_EQ(r.algorithm, 1u);
  EXPECT_EQ(r.flags, 0xfu);
  EXPECT_EQ(r.key_len, 40u);
  EXPECT_EQ(r.key[0], 0xab);
  EXPECT_EQ(r.mapping_size, 128u);
  EXPECT_EQ(r.mapping[3], 1u);
}

TEST(VifShared, MulticastFilter) {
  VifShared v(1);
  const MacAddress unicast{0x00, 0x16, 0x3e, 0x00, 0x00, 0x01};
  const MacAddress broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  // Control off: every multicast passes.
  EXPECT_TRUE(v.multicast_allowed(group(9)));
  v.set_multicast_control(true);
  EXPECT_FALSE(v.multicast_allowed(group(9)));
  EXPECT_TRUE(v.multicast_allowed(broadcast));
  EXPECT_TRUE(v.multicast_allowed(unicast));
  EXPECT_TRUE(v.multicast_add(group(9)));
  EXPECT_TRUE(v.multicast_allowed(group(9)));
  EXPECT_FALSE(v.multicast_allowed(group(10)));
  v.multicast_del(group(9));
  EXPECT_FALSE(v.multicast_allowed(group(9)));
  v.multicast_del(group(9));
  // Toggling keeps the list.
  v.multicast_add(group(9));
  v.set_multicast_control(false);
  EXPECT_TRUE(v.multicast_allowed(group(10)));
  v.set_multicast_control(true);
  EXPECT_TRUE(v.multicast_allowed(group(9)));
  EXPECT_FALSE(v.multicast_allowed(group(10)));
}

TEST(VifShared, MulticastOverflowTurnsFilteringOff) {
  VifShared v(1);
  v.set_multicast_control(true);
  for (unsigned i = 0; i < VifShared::kMaxMulticastAddresses; ++i) {
    MacAddress a{0x01, 0x00, 0x5e, 0x01, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    EXPECT_TRUE(v.multicast_add(a));
  }
  EXPECT_FALSE(v.multicast_overflowed());
  EXPECT_FALSE(v.multicast_allowed(group(200)));
  const auto g = v.generation();
  EXPECT_FALSE(v.multicast_add(group(200)));
  EXPECT_TRUE(v.multicast_overflowed());
  EXPECT_GT(v.generation(), g);
  EXPECT_EQ(v.multicast_count(), VifShared::kMaxMulticastAddresses);
  EXPECT_TRUE(v.multicast_allowed(group(200)));
  EXPECT_TRUE(v.multicast_allowed(group(201)));
}

TEST(VifShared, ReadersNeverSeeATornHash) {
  VifShared v(8);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (std::uint32_t n = 0; n < 20000; ++n) {
      HashConfig h;
      h.flags = n;
      h.key.fill(static_cast<std::uint8_t>(n));
      h.mapping.fill(n);
      h.mapping_size = 128;
      v.set_hash(h);
    }
    done = true;
  });
  std::uint64_t seen = 0;
  bool torn = false;
  while (!done && !torn) {
    if (v.generation() == seen) continue;
    seen = v.generation();
    const HashConfig h = v.hash();
    for (auto k : h.key) torn |= k != static_cast<std::uint8_t>(h.flags);
    for (auto m : h.mapping) torn |= m != h.flags;
  }
  writer.join();
  EXPECT_FALSE(torn);
}

// What the guest set is saved before it takes effect, and restored (bounded) by a successor.
TEST(VifShared, GuestStateGoesToItsSinkAndComesBackBounded) {
  struct Sink : GuestStateSink {
    void save(const GuestSetState& s) noexcept override {
      last = s;
      ++saves;
    }
    GuestSetState last;
    int saves = 0;
  } sink;
  VifShared v(4);
  v.persist_to(&sink);
  HashConfig h;
  h.algorithm = 1;
  h.flags = 3;
  h.mapping_size = 2;
  h.mapping[1] = 3;
  v.set_hash(h);
  const MacAddress group{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
  v.set_multicast_control(true);
  EXPECT_TRUE(v.multicast_add(group));
  EXPECT_EQ(sink.saves, 2) << "the hash and the multicast address, not the control flag";
  EXPECT_EQ(sink.last.hash.flags, 3u);
  EXPECT_EQ(sink.last.multicast_count, 1u);

  VifShared successor(4);
  successor.set_multicast_control(true);
  successor.restore(sink.last);
  EXPECT_EQ(successor.hash().flags, 3u);
  EXPECT_EQ(successor.hash().mapping[1], 3u);
  EXPECT_TRUE(successor.multicast_allowed(group));
  EXPECT_FALSE(successor.multicast_allowed({0x01, 0x00, 0x5e, 0x00, 0x00, 0x02}));

  // Whatever a record holds, nothing past the arrays or the queues reaches the data path.
  GuestSetState bad = sink.last;
  bad.hash.key_len = 1000;
  bad.hash.mapping_size = 1000;
  bad.hash.mapping[0] = 99;
  bad.multicast_count = 1000;
  bad.multicast_overflow = 7;
  VifShared third(4);
  third.restore(bad);
  EXPECT_EQ(third.hash().key_len, 40u);
  EXPECT_EQ(third.hash().mapping_size, 128u);
  EXPECT_EQ(third.hash().mapping[0], 0u);
  EXPECT_EQ(third.multicast_count(), VifShared::kMaxMulticastAddresses);
  EXPECT_TRUE(third.multicast_overflowed());
}

}  // namespace
}  // namespace pvback::test
