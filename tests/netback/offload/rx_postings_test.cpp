// The pure RX planner (netback/rx_postings.hpp): how many slots a packet needs, and the plan that
// puts it into the requests a guest posted. Its libFuzzer target is tests/fuzz/rx_postings_fuzz.cpp.
#include <vector>

#include <gtest/gtest.h>

#include "netback/rx_postings.hpp"

namespace pvback::netback::rx {
namespace {

// Posted requests from ring index `at` on, counting every read of each.
struct Ring {
  ring::RingIdx at = 0;
  std::vector<netif::RxRequest> reqs;
  mutable std::vector<unsigned> reads = std::vector<unsigned>(reqs.size());
  template <class T>
  T copy_request(ring::RingIdx idx) const {
    const ring::RingIdx off = idx - at;
    EXPECT_LT(off, reqs.size());
    if (off >= reqs.size()) return T{};
    ++reads[off];
    return reqs[off];
  }
};

Ring posted(unsigned n, ring::RingIdx at = 0) {
  Ring r{at, {}};
  for (unsigned i = 0; i < n; ++i) r.reqs.push_back(netif::RxRequest{static_cast<std::uint16_t>(50 + i), 0, 700 + i});
  r.reads.assign(n, 0);
  return r;
}

TEST(RxPostings, SlotsNeededAndEveryRefusal) {
  EXPECT_EQ(slots_needed({1514, 0, 0, false}, 256), 1u);
  EXPECT_EQ(slots_needed({4096, 0, 0, false}, 256), 1u);
  EXPECT_EQ(slots_needed({4097, 0, 2, true}, 256), 4u);
  EXPECT_EQ(slots_needed({3841, 256, 0, true}, 256), 2u);  // 3840 bytes per buffer after the headroom
  EXPECT_EQ(slots_needed({kMaxPacketBytes, 0, 2, true}, 256), 19u);
  EXPECT_EQ(slots_needed({0, 0, 0, true}, 256), std::unexpected(Refusal::BadLength));
  EXPECT_EQ(slots_needed({kMaxPacketBytes + 1, 0, 0, true}, 256), std::unexpected(Refusal::BadLength));
  EXPECT_EQ(slots_needed({60, kXenPageSize, 0, true}, 256), std::unexpected(Refusal::BadHeadroom));
  EXPECT_EQ(slots_needed({60, 0, 3, true}, 256), std::unexpected(Refusal::TooManyExtras));
  EXPECT_EQ(slots_needed({4097, 0, 0, false}, 256), std::unexpected(Refusal::NeedsSg));
  EXPECT_EQ(slots_needed({9000, 0, 1, true}, 3), std::unexpected(Refusal::TooManySlots));
  EXPECT_EQ(slots_needed({kMaxPacketBytes, 4000, 0, true}, 256), std::unexpected(Refusal::TooManySlots));
}

TEST(RxPostings, PlanPutsDataSlotZeroThenTheExtrasThenTheRest) {
  const Needs needs{9000, 0, 2, true};
  const unsigned needed = *slots_needed(needs, 256);
  ASSERT_EQ(needed, 5u);
  Ring ring = posted(6, 0xFFFFFFFE);  // the ring index wraps inside the packet
  std::vector<Chunk> chunks{{nullptr, 3000}, {nullptr, 0}, {nullptr, 6000}};
  std::vector<Slot> slots(needed);
  std::vector<Segment> segs(kMaxSegmentsPerPacket);
  const Plan p = plan_packet(ring, ring.at, 6, needed, needs, chunks, slots, segs);
  ASSERT_EQ(p.verdict, Verdict::Ok);
  EXPECT_EQ(p.slots, 5u);
  EXPECT_EQ(p.data_slots, 3u);
  EXPECT_FALSE(slots[0].extra);
  EXPECT_TRUE(slots[1].extra && slots[2].extra);
  EXPECT_EQ(slots[0].id, 50);
  EXPECT_EQ(slots[3].id, 53);
  EXPECT_EQ(slots[4].gref, 704u);
  EXPECT_EQ(slots[0].bytes, 4096);
  EXPECT_EQ(slots[3].bytes, 4096);
  EXPECT_EQ(slots[4].bytes, 9000 - 8192);
  EXPECT_TRUE(slots[0].more && slots[3].more);
  EXPECT_FALSE(slots[4].more);
  // Extras and the request past the packet are never read; the others once.
  EXPECT_EQ(ring.reads, (std::vector<unsigned>{1, 0, 0, 1, 1, 0}));
  // Copies: chunk 0 into buffer 0, chunk 2 across buffers 0, 3 and 4 (chunk 1 is empty).
  ASSERT_EQ(p.segments, 4u);
  EXPECT_EQ(segs[0].slot, 0);
  EXPECT_EQ(segs[0].len, 3000);
  EXPECT_EQ(segs[1].chunk, 2);
  EXPECT_EQ(segs[1].offset, 3000);
  EXPECT_EQ(segs[1].len, 1096);
  EXPECT_EQ(segs[2].slot, 3);
  EXPECT_EQ(segs[2].chunk_offset, 1096u);
  EXPECT_EQ(segs[3].slot, 4);
  EXPECT_EQ(segs[3].len, 808);
}

TEST(RxPostings, TooFewPostedWaitsWithoutReadingAnything) {
  const Needs needs{9000, 0, 0, true};
  Ring ring = posted(2);
  std::vector<Slot> slots(3);
  std::vector<Segment> segs(kMaxSegmentsPerPacket);
  std::vector<Chunk> chunks{{nullptr, 9000}};
  const Plan p = plan_packet(ring, 0, 2, 3, needs, chunks, slots, segs);
  EXPECT_EQ(p.verdict, Verdict::Wait);
  EXPECT_EQ(ring.reads, (std::vector<unsigned>{0, 0}));
}

TEST(RxPostings, HeadroomAndShortChunks) {
  const Needs needs{5000, 256, 0, true};
  Ring ring = posted(2);
  std::vector<Slot> slots(2);
  std::vector<Segment> segs(kMaxSegmentsPerPacket);
  std::vector<Chunk> chunks{{nullptr, 100}};
  const Plan p = plan_packet(ring, 0, 2, 2, needs, chunks, slots, segs);
  EXPECT_EQ(p.verdict, Verdict::ShortChunks);
  EXPECT_EQ(p.slots, 2u);  // the slots are taken all the same, and answered with an error
  EXPECT_EQ(slots[0].offset, 256);
  EXPECT_EQ(slots[0].bytes, 3840);
  ASSERT_EQ(p.segments, 1u);
  EXPECT_EQ(segs[0].offset, 256);
  EXPECT_EQ(segs[0].len, 100);
}

}  // namespace
}  // namespace pvback::netback::rx
