// The rings' write-ahead log of responses (netback/ring_journal.hpp), on rings in plain memory:
// what a process killed at any point of a batch leaves, and what its successor then makes of it.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "netback/ring_journal.hpp"
#include "ring/netif.hpp"

namespace pvback::netback {
namespace {

using netif::CtrlRing;
using netif::RxRequest;
using netif::RxResponse;
using netif::RxRing;
using netif::TxRequest;
using netif::TxResponse;
using netif::TxRing;

struct alignas(4096) Page {
  std::byte bytes[4096]{};
};

// A TX ring whose frontend published `n` requests (id i, gref 1000 + i), starting at index `start`.
struct TxSetup {
  explicit TxSetup(unsigned n, ring::RingIdx start = 0) {
    front = *TxRing::Front::initialise(page.bytes, 1, start);
    for (unsigned i = 0; i < n; ++i)
      front.put_request(TxRequest{1000 + i, 0, 0, static_cast<std::uint16_t>(i), 60});
    front.push_requests();
  }
  Page page;
  TxRing::Front front;
  JournalBlock block{};
};

// What a backend killed in the middle of a batch leaves: it took `taken` requests, logged their
// responses (if `log`), and wrote the first `written` into the ring without pushing them.
void killed_mid_batch(TxSetup& s, unsigned taken, unsigned written, bool log) {
  auto back = *TxRing::Back::attach_at_rsp_prod(s.page.bytes, 1);
  RingJournal journal(&s.block);
  const ring::RingIdx start = back.rsp_prod_pvt();
  std::vector<TxResponse> rsps;
  for (unsigned i = 0; i < taken; ++i) rsps.push_back(TxResponse{back.next_request().id, netif::kRspOkay});
  if (log) {
    for (unsigned k = 0; k < taken; ++k) journal.stage(k, rsps[k]);
    journal.commit(start, taken);
  }
  for (unsigned k = 0; k < written; ++k) back.put_response(rsps[k]);
}

TEST(RingJournal, ReadingBackAPartlyAnsweredBatchGivesRequestsThatWereNeverSent) {
  // Why the journal exists: without it, a successor starting at rsp_prod reads the responses the
  // killed process wrote as requests.
  TxSetup s(4);
  killed_mid_batch(s, 4, 2, false);
  auto successor = *TxRing::Back::attach_at_rsp_prod(s.page.bytes, 1);
  const TxRequest first = successor.copy_request(successor.req_cons());
  EXPECT_NE(first.gref, 1000u) << "the slot still holds the guest's request";
}

TEST(RingJournal, ACommittedBatchIsAnsweredWholeOnceAndTheRestIsTakenFromTheRing) {
  TxSetup s(6);
  killed_mid_batch(s, 4, 2, true);
  RingJournal journal(&s.block);
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Rewritten);
  EXPECT_EQ(s.block.state, kJournalIdle);
  // The guest sees the 4 answers, in order, each once.
  auto n = s.front.unconsumed_responses();
  ASSERT_TRUE(n.has_value());
  ASSERT_EQ(*n, 4u);
  for (std::uint16_t i = 0; i < 4; ++i) {
    const TxResponse r = s.front.next_response();
    EXPECT_EQ(r.id, i);
    EXPECT_EQ(r.status, netif::kRspOkay);
  }
  // The successor takes the other two from the ring, intact.
  auto back = *TxRing::Back::attach_at_rsp_prod(s.page.bytes, 1);
  ASSERT_EQ(back.unconsumed_requests().value(), 2u);
  for (std::uint32_t i = 4; i < 6; ++i) EXPECT_EQ(back.next_request().gref, 1000 + i);
  // A second replay finds nothing to do.
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Nothing);
}

TEST(RingJournal, WithoutACommitTheSlotsAreUntouchedAndTakenAgain) {
  TxSetup s(3);
  {
    // Logged in part, never committed, nothing written to the ring.
    auto back = *TxRing::Back::attach_at_rsp_prod(s.page.bytes, 1);
    RingJournal j(&s.block);
    j.stage(0, TxResponse{back.next_request().id, netif::kRspOkay});
  }
  RingJournal journal(&s.block);
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Nothing);
  auto back = *TxRing::Back::attach_at_rsp_prod(s.page.bytes, 1);
  ASSERT_EQ(back.unconsumed_requests().value(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) EXPECT_EQ(back.next_request().gref, 1000 + i);
}

TEST(RingJournal, ABatchAlreadyVisibleIsNotWrittenAgain) {
  TxSetup s(3);
  killed_mid_batch(s, 3, 3, true);
  {
    auto back = *TxRing::Back::attach_resume(s.page.bytes, 1, 3, 3);
    back.push_responses();  // killed after the push, before done()
  }
  for (int i = 0; i < 3; ++i) s.front.next_response();
  RingJournal journal(&s.block);
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Visible);
  EXPECT_EQ(s.front.unconsumed_responses().value(), 0u);
  EXPECT_EQ(s.block.state, kJournalIdle);
}

TEST(RingJournal, AnRspProdTheGuestMovedElsewhereDropsTheBatch) {
  TxSetup s(4);
  killed_mid_batch(s, 4, 1, true);
  // The guest owns the index's memory.
  ring::detail::shared_index(s.page.bytes, ring::detail::kRspProd).store(2);
  RingJournal journal(&s.block);
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Mismatch);
  EXPECT_EQ(s.block.state, kJournalIdle);
}

TEST(RingJournal, IndicesWrapAround) {
  TxSetup s(5, 0xFFFFFFFEu);
  killed_mid_batch(s, 5, 3, true);
  RingJournal journal(&s.block);
  EXPECT_EQ(journal.replay<TxRing>(s.page.bytes), Replay::Rewritten);
  EXPECT_EQ(s.front.unconsumed_responses().value(), 5u);
  for (std::uint16_t i = 0; i < 5; ++i) EXPECT_EQ(s.front.next_response().id, i);
}

TEST(RingJournal, RxResponsesAndExtrasComeBackByteForByte) {
  Page page;
  auto front = *RxRing::Front::initialise(page.bytes, 1);
  for (std::uint16_t i = 0; i < 3; ++i) front.put_request(RxRequest{i, 0, 500u + i});
  front.push_requests();
  JournalBlock block{};
  {
    auto back = *RxRing::Back::attach_at_rsp_prod(page.bytes, 1);
    RingJournal j(&block);
    RxResponse first{0, 10, netif::kRxfExtraInfo | netif::kRxfMoreData, 1400};
    netif::ExtraInfo hash{};
    hash.type = netif::kExtraTypeHash;
    hash.u.hash.value[0] = 0xAB;
    RxResponse last{2, 0, 0, 200};
    j.stage(0, first);
    j.stage(1, hash);
    j.stage(2, last);
    j.commit(back.rsp_prod_pvt(), 3);
    back.put_response(first);  // killed here
  }
  RingJournal journal(&block);
  EXPECT_EQ(journal.replay<RxRing>(page.bytes), Replay::Rewritten);
  ASSERT_EQ(front.unconsumed_responses().value(), 3u);
  const RxResponse a = front.next_response();
  EXPECT_EQ(a.status, 1400);
  EXPECT_EQ(a.offset, 10);
  const netif::ExtraInfo e = front.next_response<netif::ExtraInfo>();
  EXPECT_EQ(e.type, netif::kExtraTypeHash);
  EXPECT_EQ(e.u.hash.value[0], 0xAB);
  EXPECT_EQ(front.next_response().status, 200);
}

TEST(RingJournal, ControlResponses) {
  Page page;
  auto front = *CtrlRing::Front::initialise(page.bytes, 1);
  front.put_request(netif::CtrlRequest{7, netif::kCtrlTypeSetHashFlags, {netif::kHashTypeIpv4, 0, 0}});
  front.push_requests();
  JournalBlock block{};
  {
    auto back = *CtrlRing::Back::attach_at_rsp_prod(page.bytes, 1);
    RingJournal j(&block);
    const auto req = back.next_request();
    netif::CtrlResponse rsp{};
    rsp.id = req.id;
    rsp.type = req.type;
    rsp.status = netif::kCtrlStatusSuccess;
    j.stage(0, rsp);
    j.commit(0, 1);
    back.put_response(rsp);  // over the request's data[0]: read back, the flags would be 0
  }
  RingJournal journal(&block);
  EXPECT_EQ(journal.replay<CtrlRing>(page.bytes), Replay::Rewritten);
  ASSERT_EQ(front.unconsumed_responses().value(), 1u);
  const auto r = front.next_response();
  EXPECT_EQ(r.id, 7);
  EXPECT_EQ(r.status, netif::kCtrlStatusSuccess);
}

TEST(RingJournal, ADisabledJournalLogsNothing) {
  RingJournal none;
  EXPECT_FALSE(none);
  none.stage(0, TxResponse{1, 0});
  none.commit(0, 1);
  none.done();
  Page page;
  EXPECT_EQ(none.replay<TxRing>(page.bytes), Replay::Nothing);
}

}  // namespace
}  // namespace pvback::netback
