// Core ring behaviour: geometry, free-running indices across 2^32, overflow detection, copies.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "ring/ring.hpp"
#include "tests/ring/shared_area.hpp"

namespace pvback::ring {
namespace {

using testing::SharedArea;

struct Req {
  std::uint64_t seq;
  std::uint32_t value;
  std::uint32_t pad;
};
struct Rsp {
  std::uint64_t seq = 0;
  std::uint32_t value = 0;
  std::int32_t status = 0;
};
using Ring = RingTypes<Req, Rsp>;  // 16-byte entries: 252 fit a page -> 128

struct Pair {
  Ring::Front front;
  Ring::Back back;
};

Pair make_ends(SharedArea& area, RingIdx start = 0) {
  auto front = Ring::Front::initialise(area.data(), area.pages(), start);
  auto back = Ring::Back::attach(area.data(), area.pages(), start);
  EXPECT_TRUE(front.has_value());
  EXPECT_TRUE(back.has_value());
  return {*front, *back};
}

TEST(RingGeometry, SizeIsPowerOfTwoRoundedDownPerOrder) {
  EXPECT_EQ(Ring::kEntryBytes, 16u);
  EXPECT_EQ(Ring::size_for_order(0), 128u);  // (4096 - 64) / 16 = 252
  EXPECT_EQ(Ring::size_for_order(1), 256u);  // 508
  EXPECT_EQ(Ring::size_for_order(4), 2048u);  // 4092
  EXPECT_EQ((ring_size_for_pages<Req, Rsp>(3)), 512u);  // 764: not a power of two of pages
  EXPECT_EQ((ring_size_for_bytes<Req, Rsp>(64)), 0u);
  EXPECT_EQ((ring_size_for_bytes<Req, Rsp>(63)), 0u);
  EXPECT_EQ((kEntrySize<std::uint8_t, std::uint64_t>), 8u);
  EXPECT_EQ((kEntrySize<char[9], std::uint32_t>), 12u);  // union rounds up to alignment
}

TEST(RingGeometry, AttachRejectsMissingArea) {
  SharedArea area(1);
  EXPECT_EQ(Ring::Back::attach(nullptr, 1).error(), kErrInvalidArea);
  EXPECT_EQ(Ring::Back::attach(area.data(), 0).error(), kErrInvalidArea);
  EXPECT_EQ(Ring::Front::initialise(nullptr, 1).error(), kErrInvalidArea);
  EXPECT_EQ(Ring::Front::attach(area.data(), 0).error(), kErrInvalidArea);
  auto back = Ring::Back::attach(area.data(), 1);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->size(), 128u);
}

TEST(RingGeometry, InitialiseWritesWholeHeader) {
  SharedArea area(1);
  ASSERT_TRUE(Ring::Front::initialise(area.data(), 1, 7).has_value());
  SharedRingHeader header;
  std::memcpy(&header, area.data(), sizeof(header));
  EXPECT_EQ(header.req_prod, 7u);
  EXPECT_EQ(header.rsp_prod, 7u);
  EXPECT_EQ(header.req_event, 8u);
  EXPECT_EQ(header.rsp_event, 8u);
  for (auto byte : header.pvt) EXPECT_EQ(byte, 0);
  for (auto byte : header.pad) EXPECT_EQ(byte, 0);
  // The entries are not the header's business.
  EXPECT_EQ(static_cast<unsigned char>(area.data()[64]), 0xAA);
}

TEST(Ring, RequestsAndResponsesFlowInOrder) {
  SharedArea area(1);
  auto [front, back] = make_ends(area);
  for (std::uint64_t i = 0; i < 5; ++i) front.put_request(Req{.seq = i, .value = static_cast<std::uint32_t>(i * 3), .pad = 0});
  EXPECT_EQ(back.unconsumed_requests().value(), 0u);  // not pushed yet
  front.push_requests();
  EXPECT_EQ(front.free_requests(), 123u);
  ASSERT_EQ(back.unconsumed_requests().value(), 5u);
  for (std::uint64_t i = 0; i < 5; ++i) {
    Req req = back.next_request();
    EXPECT_EQ(req.seq, i);
    back.put_response(Rsp{.seq = req.seq, .value = req.value + 1});
  }
  EXPECT_EQ(back.unconsumed_requests().value(), 0u);
  EXPECT_EQ(front.unconsumed_responses().value(), 0u);
  back.push_responses();
  ASSERT_EQ(front.unconsumed_responses().value(), 5u);
  for (std::uint64_t i = 0; i < 5; ++i) {
    Rsp rsp = front.next_response();
    EXPECT_EQ(rsp.seq, i);
    EXPECT_EQ(rsp.value, i * 3 + 1);
  }
  EXPECT_EQ(front.free_requests(), 128u);
}

// Indices are free-running: start just below 2^32 and push many full rings through.
TEST(Ring, IndicesWrapAt2To32) {
  SharedArea area(1);
  constexpr RingIdx kStart = 0xFFFFFFF0u;
  auto [front, back] = make_ends(area, kStart);
  std::uint64_t sent = 0, received = 0;
  constexpr std::uint64_t kMessages = 100'000;
  unsigned batch = 1;
  while (received < kMessages) {
    // Vary batch sizes so every slot/wrap alignment occurs, including completely full rings.
    unsigned n = std::min<std::uint64_t>({batch, front.free_requests(), kMessages - sent});
    for (unsigned i = 0; i < n; ++i, ++sent) front.put_request(Req{.seq = sent, .value = static_cast<std::uint32_t>(~sent), .pad = 0});
    front.push_requests();
    auto pending = back.unconsumed_requests();
    ASSERT_TRUE(pending.has_value());
    ASSERT_EQ(*pending, n);
    for (RingIdx i = 0; i < *pending; ++i) {
      ASSERT_FALSE(back.request_cons_overflow(back.req_cons()));
      Req req = back.next_request();
      ASSERT_EQ(req.value, static_cast<std::uint32_t>(~req.seq));
      back.put_response(Rsp{.seq = req.seq, .value = req.value});
    }
    back.push_responses();
    auto responses = front.unconsumed_responses();
    ASSERT_TRUE(responses.has_value());
    for (RingIdx i = 0; i < *responses; ++i, ++received) ASSERT_EQ(front.next_response().seq, received);
    batch = batch % 131 + 1;  // up to and beyond the ring size of 128
  }
  EXPECT_EQ(front.req_prod_pvt(), static_cast<RingIdx>(kStart + kMessages));
  EXPECT_LT(front.req_prod_pvt(), kStart);  // it did wrap
  EXPECT_EQ(back.req_cons(), front.req_prod_pvt());
  EXPECT_EQ(back.shared_rsp_prod(), front.rsp_cons());
}

TEST(Ring, FullRingAcrossWrap) {
  SharedArea area(1);
  auto [front, back] = make_ends(area, 0xFFFFFFFFu - 10);
  for (RingIdx i = 0; i < 128; ++i) front.put_request(Req{.seq = i, .value = 0, .pad = 0});
  EXPECT_TRUE(front.full());
  EXPECT_EQ(front.free_requests(), 0u);
  front.push_requests();
  EXPECT_FALSE(back.requests_overflow());
  EXPECT_EQ(back.unconsumed_requests().value(), 128u);
  for (RingIdx i = 0; i < 128; ++i) EXPECT_EQ(back.next_request().seq, i);
  // Every slot has been consumed but none answered: the next index would reuse an unanswered slot.
  EXPECT_TRUE(back.request_cons_overflow(back.req_cons()));
  back.put_response(Rsp{});
  EXPECT_FALSE(back.request_cons_overflow(back.req_cons()));
}

// XSA-39: a frontend publishing an impossible req_prod must be detected, not looped over.
TEST(RingOverflow, BogusReqProdIsDetected) {
  for (RingIdx start : {0u, 0xFFFFFFF0u, 0x7FFFFFFFu}) {
    SCOPED_TRACE(start);
    SharedArea area(1);
    auto [front, back] = make_ends(area, start);
    auto req_prod = detail::shared_index(area.data(), offsetof(SharedRingHeader, req_prod));

    req_prod.store(start + 128);  // exactly a full ring: legal
    EXPECT_FALSE(back.requests_overflow());
    EXPECT_EQ(back.unconsumed_requests().value(), 128u);

    req_prod.store(start + 129);  // one more than the ring holds
    EXPECT_TRUE(back.requests_overflow());
    EXPECT_EQ(back.unconsumed_requests().error(), kErrProducerOverflow);
    EXPECT_EQ(back.final_check_for_requests().error(), kErrProducerOverflow);
    // The error names the value judged, not what the guest wrote since.
    req_prod.store(start + 3);
    EXPECT_EQ(back.refused_req_prod(), start + 129);

    req_prod.store(start - 1);  // moved backwards
    EXPECT_EQ(back.unconsumed_requests().error(), kErrProducerOverflow);
    EXPECT_EQ(back.refused_req_prod(), start - 1);

    req_prod.store(start + 0x80000000u);
    EXPECT_EQ(back.unconsumed_requests().error(), kErrProducerOverflow);
  }
}

// Requests consumed but not yet answered still occupy slots: the limit is counted from rsp_prod_pvt.
TEST(RingOverflow, UnansweredRequestsCountAgainstTheLimit) {
  SharedArea area(1);
  auto [front, back] = make_ends(area);
  for (int i = 0; i < 100; ++i) front.put_request(Req{});
  front.push_requests();
  back.skip_requests(100);
  for (int i = 0; i < 60; ++i) back.put_response(Rsp{});
  auto req_prod = detail::shared_index(area.data(), offsetof(SharedRingHeader, req_prod));
  req_prod.store(60 + 128);
  EXPECT_EQ(back.unconsumed_requests().value(), 88u);
  req_prod.store(60 + 129);  // only 89 beyond req_cons, but 129 unanswered
  EXPECT_EQ(back.unconsumed_requests().error(), kErrProducerOverflow);
}

// req_prod moved backwards, but not behind rsp_prod_pvt: still no slot count beyond the ring
// (RING_HAS_UNCONSUMED_REQUESTS bounds this with its min(); a count of ~2^32 would not be).
TEST(RingOverflow, ReqProdBehindReqConsIsDetected) {
  SharedArea area(1);
  auto [front, back] = make_ends(area);
  for (int i = 0; i < 10; ++i) front.put_request(Req{});
  front.push_requests();
  back.skip_requests(10);  // consumed, none answered yet: rsp_prod_pvt 0, req_cons 10
  auto req_prod = detail::shared_index(area.data(), offsetof(SharedRingHeader, req_prod));
  req_prod.store(5);
  auto pending = back.unconsumed_requests();
  ASSERT_FALSE(pending.has_value()) << "counted " << *pending << " requests";
  EXPECT_EQ(pending.error(), kErrProducerOverflow);
  auto more = back.final_check_for_requests();
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error(), kErrProducerOverflow);
  req_prod.store(10);
  EXPECT_EQ(back.unconsumed_requests().value(), 0u);
}

TEST(RingOverflow, BogusRspProdIsDetectedByFrontend) {
  SharedArea area(1);
  auto [front, back] = make_ends(area, 0xFFFFFF00u);
  auto rsp_prod = detail::shared_index(area.data(), offsetof(SharedRingHeader, rsp_prod));
  rsp_prod.store(0xFFFFFF00u + 128);
  EXPECT_FALSE(front.responses_overflow(rsp_prod.load()));
  rsp_prod.store(0xFFFFFF00u + 129);
  EXPECT_EQ(front.unconsumed_responses().error(), kErrProducerOverflow);
  EXPECT_EQ(front.final_check_for_responses().error(), kErrProducerOverflow);
}

// XSA-155: the request is copied once; later writes to the shared slot do not affect the copy.
TEST(RingCopy, RequestIsCopiedOutOfSharedMemory) {
  SharedArea area(1);
  auto [front, back] = make_ends(area);
  front.put_request(Req{.seq = 42, .value = 1, .pad = 0});
  front.push_requests();
  Req copy = back.copy_request(back.req_cons());
  // The "guest" rewrites the slot after the backend fetched it.
  Req evil{.seq = 0xBAD, .value = 0xFFFFFFFF, .pad = 0};
  std::memcpy(area.data() + kSharedRingHeaderSize, &evil, sizeof(evil));
  EXPECT_EQ(copy.seq, 42u);
  EXPECT_EQ(copy.value, 1u);
  EXPECT_EQ(back.next_request().seq, 0xBADu);  // a new fetch sees the new contents
}

TEST(RingCopy, SmallerTypesShareTheSlot) {
  SharedArea area(2);
  auto [front, back] = make_ends(area);
  struct Small {
    std::uint32_t tag;
  };
  front.put_request(Small{0x1234});
  front.put_request(Req{.seq = 9, .value = 0, .pad = 0});
  front.push_requests();
  EXPECT_EQ(back.next_request<Small>().tag, 0x1234u);
  EXPECT_EQ(back.next_request().seq, 9u);
  // Response slot written with a smaller type leaves the rest of the slot alone.
  back.put_response(Small{0x55});
  back.push_responses();
  EXPECT_EQ(front.next_response<Small>().tag, 0x55u);
}

TEST(RingCopy, MultiPageRingUsesTheWholeArea) {
  for (unsigned order = 0; order <= 4; ++order) {
    SCOPED_TRACE(order);
    SharedArea area(std::size_t{1} << order, 0);
    auto [front, back] = make_ends(area);
    ASSERT_EQ(front.size(), Ring::size_for_order(order));
    for (RingIdx i = 0; i < front.size(); ++i) front.put_request(Req{.seq = i, .value = i, .pad = 0});
    front.push_requests();
    // The last entry ends inside the area, within the last page for order >= 1.
    std::size_t last_entry_end = kSharedRingHeaderSize + std::size_t{front.size()} * Ring::kEntryBytes;
    EXPECT_LE(last_entry_end, area.bytes());
    Req last;
    std::memcpy(&last, area.data() + last_entry_end - Ring::kEntryBytes, sizeof(last));
    EXPECT_EQ(last.seq, front.size() - 1);
    for (RingIdx i = 0; i < front.size(); ++i) ASSERT_EQ(back.next_request().seq, i);
  }
}

// A backend restarted under a frontend that stayed Connected: the frontend's indices are far from
// 0, some requests were answered by the old backend and some published after them were not.
TEST(RingReattach, AttachAtRspProdConsumesExactlyTheUnansweredRequests) {
  for (RingIdx start : {RingIdx{0}, RingIdx{1000}, RingIdx{0xFFFFFFF0u}}) {
    SCOPED_TRACE(start);
    SharedArea area(1);
    auto [front, old_back] = make_ends(area, start);
    for (std::uint64_t i = 0; i < 30; ++i) front.put_request(Req{.seq = i, .value = 0, .pad = 0});
    front.push_requests();
    // The old backend answers 20 and consumes 5 more it never answers, then dies.
    for (int i = 0; i < 20; ++i) old_back.put_response(Rsp{.seq = old_back.next_request().seq});
    old_back.push_responses();
    old_back.skip_requests(5);

    auto back = Ring::Back::attach_at_rsp_prod(area.data(), area.pages());
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->req_cons(), static_cast<RingIdx>(start + 20));
    EXPECT_EQ(back->rsp_prod_pvt(), static_cast<RingIdx>(start + 20));
    ASSERT_EQ(back->unconsumed_requests().value(), 10u);
    for (std::uint64_t i = 20; i < 30; ++i) {
      Req req = back->next_request();
      EXPECT_EQ(req.seq, i);
      back->put_response(Rsp{.seq = req.seq});
    }
    EXPECT_EQ(back->unconsumed_requests().value(), 0u);
    back->push_responses();
    // The frontend sees one response per request, in order, the old backend's then the new one's.
    ASSERT_EQ(front.unconsumed_responses().value(), 30u);
    for (std::uint64_t i = 0; i < 30; ++i) EXPECT_EQ(front.next_response().seq, i);
    EXPECT_EQ(front.free_requests(), front.size());
  }
}

TEST(RingReattach, AttachAtRspProdOfAFreshRingIsAttachAtZero) {
  SharedArea area(1);
  auto front = *Ring::Front::initialise(area.data(), 1);
  auto back = *Ring::Back::attach_at_rsp_prod(area.data(), 1);
  EXPECT_EQ(back.req_cons(), 0u);
  EXPECT_EQ(back.rsp_prod_pvt(), 0u);
  front.put_request(Req{.seq = 1, .value = 0, .pad = 0});
  front.push_requests();
  EXPECT_EQ(back.unconsumed_requests().value(), 1u);
  EXPECT_EQ(Ring::Back::attach_at_rsp_prod(nullptr, 1).error(), kErrInvalidArea);
}

// rsp_prod lives in memory the frontend writes: a value that puts req_prod more than a ring
// ahead of it, or behind it, must be refused by the ordinary overflow checks, never looped over.
TEST(RingReattach, HostileRspProdIsCaughtByTheOverflowChecks) {
  struct Case {
    RingIdx req_prod, rsp_prod;
  };
  for (Case c : {Case{1000, 1000 - 129}, Case{1000, 1001}, Case{5, 0xFFFF0000u}, Case{0, 0x80000000u}}) {
    SCOPED_TRACE(::testing::Message() << c.req_prod << "/" << c.rsp_prod);
    SharedArea area(1, 0);
    auto* header = reinterpret_cast<SharedRingHeader*>(area.data());
    header->req_prod = c.req_prod;
    header->rsp_prod = c.rsp_prod;
    auto back = Ring::Back::attach_at_rsp_prod(area.data(), 1);
    ASSERT_TRUE(back.has_value());
    EXPECT_TRUE(back->requests_overflow());
    EXPECT_EQ(back->unconsumed_requests().error(), kErrProducerOverflow);
    EXPECT_EQ(back->final_check_for_requests().error(), kErrProducerOverflow);
  }
  // Exactly a full ring of unanswered requests is legal.
  SharedArea area(1, 0);
  auto* header = reinterpret_cast<SharedRingHeader*>(area.data());
  header->req_prod = 1000 + 128;
  header->rsp_prod = 1000;
  auto back = *Ring::Back::attach_at_rsp_prod(area.data(), 1);
  EXPECT_EQ(back.unconsumed_requests().value(), 128u);
}

}  // namespace
}  // namespace pvback::ring
