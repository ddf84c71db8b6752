// A Queue over storage that misbehaves on purpose (storage::FaultEngine): completions out of
// order, errors on one range, short transfers, a slow discard, a stall across stop(). Every request
// is answered exactly once, with the right status and the right data.
#include <map>
#include <thread>

#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;
using storage::FaultPlan;
using storage::FaultRule;
using storage::Op;

struct PathParam {
  DataPath path;
  bool persistent;
};

class QueueEngineTest : public QueueTest, public ::testing::WithParamInterface<PathParam> {
 protected:
  Options options(FaultPlan plan) const {
    Options o;
    o.path = GetParam().path;
    o.persistent = GetParam().persistent;
    o.fault_plan = std::move(plan);
    return o;
  }
};

// Each id must come back once; returns status by id.
std::map<std::uint64_t, std::int16_t> by_id(const std::vector<blkif::x86_64::Response>& rsps) {
  std::map<std::uint64_t, std::int16_t> out;
  for (const auto& r : rsps) EXPECT_TRUE(out.emplace(r.id, r.status).second) << "id " << r.id << " answered twice";
  return out;
}

TEST_P(QueueEngineTest, OutOfOrderCompletionsAnswerEveryIdOnceWithTheRightData) {
  RawFrontend<X64> fe(platform(1), 0);
  FaultPlan plan;
  plan.min_latency = 1us;
  plan.max_latency = 3ms;
  plan.seed = 7;
  ASSERT_NO_FATAL_FAILURE(start(fe, options(plan)));
  constexpr std::uint32_t kReqs = 24;  // 2 pages each; the ring holds 32
  grant::SharedPages out = fe.share(2 * kReqs, Access::ReadOnly);
  grant::SharedPages in = fe.share(2 * kReqs);
  std::mt19937_64 rng(3);
  fill_random(out.page(0), std::size_t{2 * kReqs} * kXenPageSize, rng);
  auto segs = [](const grant::SharedPages& p, std::uint32_t i) {
    return std::vector<blkif::Segment>{{p.refs()[2 * i], 0, 7, 0}, {p.refs()[2 * i + 1], 0, 7, 0}};
  };
  // Scattered over the disk, in a shuffled order.
  std::vector<std::uint64_t> sector(kReqs);
  for (std::uint32_t i = 0; i < kReqs; ++i) sector[i] = (i * 37 % kReqs) * 64;
  for (std::uint32_t i = 0; i < kReqs; ++i) fe.put(rw_request<X64>(blkif::kOpWrite, i, sector[i], segs(out, i)));
  fe.put(rw_request<X64>(blkif::kOpFlushDiskcache, 1000, 0, {}));
  fe.push();
  auto w = by_id(fe.collect(kReqs + 1));
  ASSERT_EQ(w.size(), kReqs + 1);
  for (const auto& [id, status] : w) EXPECT_EQ(status, blkif::kRspOkay) << id;
  for (std::uint32_t i = 0; i < kReqs; ++i) fe.put(rw_request<X64>(blkif::kOpRead, 100 + i, sector[i], segs(in, i)));
  fe.push();
  auto r = by_id(fe.collect(kReqs));
  ASSERT_EQ(r.size(), kReqs);
  for (const auto& [id, status] : r) EXPECT_EQ(status, blkif::kRspOkay) << id;
  EXPECT_EQ(std::memcmp(in.page(0), out.page(0), std::size_t{2 * kReqs} * kXenPageSize), 0);
  for (std::uint32_t i = 0; i < kReqs; ++i)
    EXPECT_EQ(file->read(sector[i] * 512, 2 * kXenPageSize),
              std::vector<std::byte>(out.page(2 * i), out.page(2 * i) + 2 * kXenPageSize)) << i;
  EXPECT_GE(faults->delayed(), 2u * kReqs + 1);
  EXPECT_EQ(stats.io_errors.get(), 0u);
  stop_queue();
}

TEST_P(QueueEngineTest, AnInjectedErrorFailsOnlyTheRequestsThatTouchItsRange) {
  RawFrontend<X64> fe(platform(1), 0);
  FaultPlan plan;
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Write), .offset = 2048 * 512, .length = 4096, .error = EIO});
  ASSERT_NO_FATAL_FAILURE(start(fe, options(plan)));
  grant::SharedPages data = fe.share(3, Access::ReadOnly);
  std::memset(data.data(), 0x77, 3 * kXenPageSize);
  fe.put(rw_request<X64>(blkif::kOpWrite, 1, 2040, {{data.refs()[0], 0, 7, 0}}));  // ends where the range starts
  fe.put(rw_request<X64>(blkif::kOpWrite, 2, 2044, {{data.refs()[1], 0, 7, 0}}));  // overlaps it
  fe.put(rw_request<X64>(blkif::kOpWrite, 3, 2056, {{data.refs()[2], 0, 7, 0}}));  // starts after it
  fe.push();
  auto s = by_id(fe.collect(3));
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[1], blkif::kRspOkay);
  EXPECT_EQ(s[2], blkif::kRspError);
  EXPECT_EQ(s[3], blkif::kRspOkay);
  EXPECT_EQ(stats.io_errors.get(), 1u);
  EXPECT_EQ(faults->failed(), 1u);
  EXPECT_EQ(file->read(2048 * 512, 2048), std::vector<std::byte>(2048, std::byte{0}));  // id 2 never ran
  EXPECT_EQ(fatal_calls.load(), 0);
  stop_queue();
}

TEST_P(QueueEngineTest, ShortTransfersAreContinuedWhereTheyStopped) {
  RawFrontend<X64> fe(platform(1), 0);
  FaultPlan plan;
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Read) | storage::op_bit(Op::Write), .short_bytes = 1536});
  Options o = options(plan);
  o.direct = false;  // continuations start at 1536-byte steps
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  grant::SharedPages out = fe.share(11, Access::ReadOnly);
  grant::SharedPages in = fe.share(11);
  std::mt19937_64 rng(11);
  fill_random(out.page(0), 11 * kXenPageSize, rng);
  std::vector<blkif::Segment> w, r;
  for (std::uint32_t i = 0; i < 11; ++i) {
    w.push_back({out.refs()[i], 1, 6, 0});  // partial pages: iovecs that do not merge
    r.push_back({in.refs()[i], 1, 6, 0});
  }
  fe.put(rw_request<X64>(blkif::kOpWrite, 1, 800, w));
  fe.push();
  ASSERT_EQ(fe.collect(1).at(0).status, blkif::kRspOkay);
  fe.put(rw_request<X64>(blkif::kOpRead, 2, 800, r));
  fe.push();
  ASSERT_EQ(fe.collect(1).at(0).status, blkif::kRspOkay);
  for (std::uint32_t i = 0; i < 11; ++i)
    EXPECT_EQ(std::memcmp(in.page(i) + 512, out.page(i) + 512, 6 * 512), 0) << "segment " << i;
  EXPECT_GE(faults->shortened(), 2u * (11 * 6 * 512 / 1536 - 1));
  EXPECT_EQ(stats.sectors_read.get(), 66u);
  stop_queue();
}

TEST_P(QueueEngineTest, ASlowDiscardDoesNotHoldUpTheRequestsBehindIt) {
  RawFrontend<X64> fe(platform(1), 0);
  FaultPlan plan;
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Discard), .delay = 500ms});
  ASSERT_NO_FATAL_FAILURE(start(fe, options(plan)));
  if (!engine->capabilities().discard) GTEST_SKIP() << "no punch hole on /tmp";
  blkif::x86_64::Request d{};
  d.discard.operation = blkif::kOpDiscard;
  d.discard.id = 1;
  d.discard.sector_number = 0;
  d.discard.nr_sectors = 64ull << 11;  // the whole disk
  fe.put(d);
  grant::SharedPages data = fe.share(1);
  fe.put(rw_request<X64>(blkif::kOpRead, 2, 8, {{data.refs()[0], 0, 7, 0}}));
  fe.push();
  auto rsps = fe.collect(2);
  ASSERT_EQ(rsps.size(), 2u);
  EXPECT_EQ(rsps[0].id, 2u);  // answered while the discard was still running
  EXPECT_EQ(rsps[1].id, 1u);
  EXPECT_EQ(rsps[1].status, blkif::kRspOkay);
  EXPECT_EQ(stats.discards.get(), 1u);
  stop_queue();
}

TEST_P(QueueEngineTest, StopWaitsForAStalledStorageAndLosesNothing) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start(fe, options(FaultPlan{})));
  faults->stall();
  grant::SharedPages data = fe.share(1, Access::ReadOnly);
  std::memset(data.data(), 0x42, kXenPageSize);
  fe.put(rw_request<X64>(blkif::kOpWrite, 9, 16, {{data.refs()[0], 0, 7, 0}}));
  fe.push();
  ASSERT_TRUE(eventually([&] { return faults->held() == 1; }));
  std::thread stopper([&] { queue->stop(); });
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(run_returned.load());  // the write is still owed an answer
  faults->resume();
  stopper.join();
  auto rsps = fe.collect(1);
  ASSERT_EQ(rsps.size(), 1u);
  EXPECT_EQ(rsps[0].id, 9u);
  EXPECT_EQ(rsps[0].status, blkif::kRspOkay);
  EXPECT_EQ(file->read(16 * 512, kXenPageSize), std::vector<std::byte>(kXenPageSize, std::byte{0x42}));
  stop_queue();
  EXPECT_TRUE(run_returned.load());
}

INSTANTIATE_TEST_SUITE_P(Paths, QueueEngineTest,
                         ::testing::Values(PathParam{DataPath::Map, false}, PathParam{DataPath::Copy, false},
                                           PathParam{DataPath::Map, true}),
                         [](const ::testing::TestParamInfo<PathParam>& info) {
                           return std::string(info.param.path == DataPath::Map ? "map" : "copy") +
                                  (info.param.persistent ? "_persistent" : "");
                         });

}  // namespace
}  // namespace pvback::test
