// The crash-recovery record alone (label unit): what a successor makes of a predecessor's record
// at every point where a SIGKILL can land, and what it refuses.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "blkback/recovery.hpp"

namespace pvback::blkback {
namespace {

constexpr std::uint32_t kSize = 8;

blkif::native::Request read_request(std::uint64_t id) {
  blkif::native::Request r{};
  r.rw.operation = blkif::kOpRead;
  r.rw.nr_segments = 1;
  r.rw.id = id;
  return r;
}

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvback-recovery-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    key_.frontend_domid = 3;
    key_.remote_port = 17;
    key_.ring_size = kSize;
    key_.abi = 0;
    key_.ring_refs = {100, 101};
    auto log = RecoveryLog::open(path(), kSize);
    ASSERT_TRUE(log.has_value());
    log_ = std::move(*log);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return (dir_ / "vbd-3-51712-q0").string(); }

  // What a successor sees: the file opened anew (as after the predecessor's death).
  std::expected<recovery::Recovered, const char*> successor(ring::RingIdx req_prod, ring::RingIdx rsp_prod) {
    auto log = RecoveryLog::open(path(), kSize);
    EXPECT_TRUE(log.has_value());
    return recovery::recover(log->header(), log->entries(), key_, req_prod, rsp_prod);
  }

  std::filesystem::path dir_;
  RecoveryKey key_;
  RecoveryLog log_;
};

// The repro: flush A at 2048 and read B at 2049 taken; B answered (into A's slot) and
// pushed; A in flight at the kill. The successor executes A again and never B.
TEST_F(RecoveryTest, AnswerPushedOutOfOrderIsNotRepeatedAndTheOtherIsExecuted) {
  log_.reset(key_, 2048);
  blkif::native::Request flush{};
  flush.other.operation = blkif::kOpFlushDiskcache;
  flush.other.id = 0xA;
  log_.took(0, 2048, flush);
  log_.took(1, 2049, read_request(0xB));
  log_.consumed(2050);
  log_.answered(1, 2048, blkif::kRspOkay);
  log_.pushed(2049);
  log_.forget(1);
  auto r = successor(2050, 2049);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->req_cons, 2050u);
  EXPECT_EQ(r->rsp_prod, 2049u);
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].slot, 0u);
  EXPECT_EQ(r->reexecute[0].req.id(), 0xAu);
  EXPECT_EQ(r->reexecute[0].req.operation(), blkif::kOpFlushDiskcache);
  EXPECT_TRUE(r->reanswer.empty());
}

// Killed after the answer was written and recorded, before rsp_prod moved: answered again, with
// the status it had, not executed again.
TEST_F(RecoveryTest, AnswerWrittenButNotPushedIsPublishedAgain) {
  log_.reset(key_, 10);
  log_.took(4, 10, read_request(1));
  log_.took(5, 11, read_request(2));
  log_.consumed(12);
  log_.answered(5, 10, blkif::kRspError);
  auto r = successor(12, 10);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->rsp_prod, 10u);
  ASSERT_EQ(r->reanswer.size(), 1u);
  EXPECT_EQ(r->reanswer[0].slot, 5u);
  EXPECT_EQ(r->reanswer[0].rsp.id, 2u);
  EXPECT_EQ(r->reanswer[0].rsp.status, blkif::kRspError);
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].req.id(), 1u);
}

// Killed after rsp_prod was published and before the record noted it: the guest has seen the
// answer, so it is neither published nor executed again.
TEST_F(RecoveryTest, AnswerPushedButNotNotedIsNotRepeated) {
  log_.reset(key_, 10);
  log_.took(4, 10, read_request(1));
  log_.took(5, 11, read_request(2));
  log_.consumed(12);
  log_.answered(5, 10, blkif::kRspOkay);
  auto r = successor(12, 11);  // the shared rsp_prod moved, the record's did not
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->rsp_prod, 11u);
  EXPECT_TRUE(r->reanswer.empty());
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].req.id(), 1u);
  EXPECT_EQ(r->forget, std::vector<std::uint32_t>{5});
}

// Killed while taking a batch, before its consumption was recorded: those requests are still in
// the ring and taken from there, their half-written entries forgotten.
TEST_F(RecoveryTest, BatchTakenButNotRecordedIsTakenFromTheRingAgain) {
  log_.reset(key_, 20);
  log_.took(0, 20, read_request(1));
  log_.consumed(21);
  log_.took(1, 21, read_request(2));
  log_.took(2, 22, read_request(3));
  auto r = successor(23, 20);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->req_cons, 21u);
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].req.id(), 1u);
  EXPECT_EQ(r->forget, (std::vector<std::uint32_t>{1, 2}));
}

// Indices near 2^32: every comparison is modular.
TEST_F(RecoveryTest, IndicesWrapAround) {
  const ring::RingIdx start = 0xFFFFFFFEu;
  log_.reset(key_, start);
  for (std::uint32_t i = 0; i < 4; ++i) log_.took(i, start + i, read_request(i));
  log_.consumed(start + 4);
  log_.answered(2, start, blkif::kRspOkay);
  log_.answered(0, start + 1, blkif::kRspOkay);
  log_.pushed(start + 2);
  log_.forget(2);
  log_.forget(0);
  log_.answered(3, start + 2, blkif::kRspOkay);
  auto r = successor(start + 4, start + 2);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(r->req_cons, start + 4);
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].req.id(), 1u);
  ASSERT_EQ(r->reanswer.size(), 1u);
  EXPECT_EQ(r->reanswer[0].rsp.id, 3u);
}

// A slow request stays taken while many more than the ring's size come and go behind it (slots
// are reused): it is still the successor's to execute (the review's finding: it was once
// dropped as out of the window, and the whole record refused).
TEST_F(RecoveryTest, SlowRequestFarBehindReqConsIsStillExecuted) {
  log_.reset(key_, 100);
  blkif::native::Request flush{};
  flush.other.operation = blkif::kOpFlushDiskcache;
  flush.other.id = 0xA;
  log_.took(0, 100, flush);
  log_.consumed(101);
  ring::RingIdx rsp = 100;
  for (ring::RingIdx idx = 101; idx < 101 + 5 * kSize; ++idx) {  // reads through slot 1, one at a time
    log_.took(1, idx, read_request(idx));
    log_.consumed(idx + 1);
    log_.answered(1, rsp, blkif::kRspOkay);
    log_.pushed(++rsp);
    log_.forget(1);
  }
  const ring::RingIdx req_cons = 101 + 5 * kSize;
  auto r = successor(req_cons, rsp);
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->reexecute.size(), 1u);
  EXPECT_EQ(r->reexecute[0].req.id(), 0xAu);
  EXPECT_EQ(r->req_cons, req_cons);
}

// Requests re-executed keep ring order: a barrier must not overtake what came before it.
TEST_F(RecoveryTest, ReexecutedRequestsKeepRingOrder) {
  log_.reset(key_, 100);
  log_.took(7, 100, read_request(1));
  log_.took(2, 101, read_request(2));
  log_.took(5, 102, read_request(3));
  log_.consumed(103);
  auto r = successor(103, 100);
  ASSERT_TRUE(r.has_value()) << r.error();
  ASSERT_EQ(r->reexecute.size(), 3u);
  EXPECT_EQ(r->reexecute[0].req.id(), 1u);
  EXPECT_EQ(r->reexecute[1].req.id(), 2u);
  EXPECT_EQ(r->reexecute[2].req.id(), 3u);
}

// The record is used only for the ring it was written for, and only where the guest's indices
// agree with it.
TEST_F(RecoveryTest, RefusesAnotherRingOrIndicesThatDoNotFit) {
  log_.reset(key_, 50);
  log_.took(0, 50, read_request(1));
  log_.consumed(51);
  ASSERT_TRUE(successor(51, 50).has_value());

  RecoveryKey other = key_;
  other.ring_refs = {100, 102};
  auto log = RecoveryLog::open(path(), kSize);
  ASSERT_TRUE(log.has_value());
  EXPECT_FALSE(recovery::recover(log->header(), log->entries(), other, 51, 50).has_value());
  other = key_;
  other.remote_port = 18;
  EXPECT_FALSE(recovery::recover(log->header(), log->entries(), other, 51, 50).has_value());
  other = key_;
  other.frontend_domid = 4;
  EXPECT_FALSE(recovery::recover(log->header(), log->entries(), other, 51, 50).has_value());

  EXPECT_FALSE(successor(51, 60).has_value()) << "rsp_prod beyond the answers the record holds";
  EXPECT_FALSE(successor(51, 49).has_value()) << "rsp_prod behind what the record saw pushed";
  EXPECT_FALSE(successor(51 + kSize + 1, 50).has_value()) << "req_prod more than a ring ahead";
}

// A record whose entries contradict its indices (a corrupted file, a half-initialised one) is
// refused rather than trusted.
TEST_F(RecoveryTest, RefusesAnInconsistentRecord) {
  log_.reset(key_, 0);
  log_.took(0, 0, read_request(1));
  log_.took(1, 1, read_request(2));
  log_.consumed(2);
  log_.forget(1);  // an entry lost: 2 requests unanswered, 1 entry
  EXPECT_FALSE(successor(2, 0).has_value());

  auto fresh = RecoveryLog::open((dir_ / "never-written").string(), kSize);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_FALSE(recovery::recover(fresh->header(), fresh->entries(), key_, 0, 0).has_value());
}

// A fresh connection starts an empty record whatever the file held.
TEST_F(RecoveryTest, ResetForgetsEverything) {
  log_.reset(key_, 7);
  log_.took(3, 7, read_request(1));
  log_.consumed(8);
  log_.reset(key_, 0);
  auto r = successor(0, 0);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_TRUE(r->reexecute.empty());
  EXPECT_TRUE(r->reanswer.empty());
  EXPECT_EQ(r->req_cons, 0u);
}

}  // namespace
}  // namespace pvback::blkback
