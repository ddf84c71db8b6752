// Invalid requests get the right status, each on its own, while good requests in the same batch
// succeed; features not advertised answer EOPNOTSUPP; a read-only storage refuses writes.
#include <map>

#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using Req = blkif::x86_64::Request;
using blkif::kRspEopnotsupp;
using blkif::kRspError;
using blkif::kRspOkay;

struct Case {
  Req req;
  std::int16_t status;
  const char* what;
};

// Puts every case in one batch, then checks each response by id.
void run_cases(RawFrontend<X64>& fe, std::vector<Case>& cases) {
  for (std::size_t i = 0; i < cases.size(); ++i) {
    cases[i].req.other.id = 500 + i;
    fe.put(cases[i].req);
  }
  fe.push();
  auto rsps = fe.collect(cases.size());
  ASSERT_EQ(rsps.size(), cases.size());
  std::map<std::uint64_t, blkif::x86_64::Response> by_id;
  for (auto& r : rsps) {
    EXPECT_EQ(r.pad0, 0);
    EXPECT_EQ(r.pad1, 0u);
    by_id[r.id] = r;
  }
  for (std::size_t i = 0; i < cases.size(); ++i) {
    auto it = by_id.find(500 + i);
    ASSERT_NE(it, by_id.end()) << cases[i].what;
    EXPECT_EQ(it->second.status, cases[i].status) << cases[i].what;
    // Echoed as Linux's blkback does: an indirect request's indirect_op, any other operation as is.
    const auto& req = cases[i].req;
    const std::uint8_t echoed = req.operation() == blkif::kOpIndirect ? req.indirect.indirect_op : req.operation();
    EXPECT_EQ(it->second.operation, echoed) << cases[i].what;
  }
}

TEST_F(QueueTest, BadRequestsFailAloneInABatch) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.disk_bytes = 1 << 20;  // 2048 sectors
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  grant::SharedPages data = fe.share(8);
  grant::SharedPages ro = fe.share(1, Access::ReadOnly);
  std::memset(data.page(0), 0x42, kXenPageSize);
  std::vector<grant::SharedPages> keep;
  auto seg = [&](std::uint32_t page, std::uint8_t first = 0, std::uint8_t last = 7) {
    return blkif::Segment{data.refs()[page], first, last, 0};
  };
  auto rw = [&](std::uint8_t op, std::uint64_t sector, std::vector<blkif::Segment> segs) {
    return rw_request<X64>(op, 0, sector, segs);
  };
  std::vector<Case> cases;
  cases.push_back({rw(blkif::kOpWrite, 0, {seg(0)}), kRspOkay, "good write"});
  Req zero = rw(blkif::kOpRead, 0, {seg(1)});
  zero.rw.nr_segments = 0;
  cases.push_back({zero, kRspError, "read with 0 segments"});
  Req twelve = rw(blkif::kOpRead, 0, {seg(1)});
  twelve.rw.nr_segments = 12;
  cases.push_back({twelve, kRspError, "read with 12 segments"});
  cases.push_back({rw(blkif::kOpRead, 0, {seg(1, 5, 4)}), kRspError, "first_sect > last_sect"});
  cases.push_back({rw(blkif::kOpRead, 0, {seg(1, 0, 8)}), kRspError, "last_sect 8"});
  cases.push_back({rw(blkif::kOpRead, 2048, {seg(1)}), kRspError, "sector at the end"});
  cases.push_back({rw(blkif::kOpRead, 2044, {seg(1)}), kRspError, "range straddling the end"});
  cases.push_back({rw(blkif::kOpRead, ~0ull - 3, {seg(1)}), kRspError, "sector wrap-around"});
  cases.push_back({rw(blkif::kOpWrite, 0, {{9999, 0, 7, 0}}), kRspError, "bad grant ref"});
  cases.push_back({rw(blkif::kOpRead, 0, {{ro.refs()[0], 0, 7, 0}}), kRspError, "read into a read-only grant"});
  Req reserved{};
  reserved.other.operation = blkif::kOpReserved1;
  cases.push_back({reserved, kRspEopnotsupp, "reserved op 4"});
  Req unknown{};
  unknown.other.operation = 200;
  cases.push_back({unknown, kRspEopnotsupp, "unknown op 200"});
  cases.push_back({indirect_request(fe, keep, blkif::kOpRead, 0, 0, {}), kRspError, "indirect with 0 segments"});
  std::vector<blkif::Segment> many(257, seg(2));
  cases.push_back({indirect_request(fe, keep, blkif::kOpRead, 0, 0, many), kRspError, "indirect above max"});
  std::vector<blkif::Segment> two = {seg(2), seg(3)};
  cases.push_back({indirect_request(fe, keep, blkif::kOpFlushDiskcache, 0, 0, two), kRspError, "indirect flush"});
  Req bad_ind = indirect_request(fe, keep, blkif::kOpRead, 0, 0, two);
  bad_ind.indirect.indirect_grefs[0] = 9998;
  cases.push_back({bad_ind, kRspError, "bad indirect page gref"});
  std::vector<blkif::Segment> bad_segs = {seg(2), seg(3, 6, 2)};
  cases.push_back({indirect_request(fe, keep, blkif::kOpRead, 0, 0, bad_segs), kRspError, "bad indirect segment"});
  Req huge_ind = indirect_request(fe, keep, blkif::kOpRead, 0, 0, two);
  huge_ind.indirect.nr_segments = 4097;
  cases.push_back({huge_ind, kRspError, "indirect needing 9 pages"});
  Req disc{};
  disc.discard.operation = blkif::kOpDiscard;
  disc.discard.sector_number = 2000;
  disc.discard.nr_sectors = 100;
  cases.push_back({disc, kRspError, "discard beyond the end"});
  cases.push_back({rw(blkif::kOpRead, 8, {seg(4), seg(5, 1, 3)}), kRspOkay, "good read"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, cases));
  EXPECT_EQ(stats.unsupported.get(), 2u);
  EXPECT_EQ(stats.bad_requests.get(), cases.size() - 4);
  EXPECT_EQ(stats.in_flight.get(), 0u);

  // The queue still works after all that.
  std::vector<Case> after;
  after.push_back({rw(blkif::kOpRead, 0, {seg(6)}), kRspOkay, "read after"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, after));
  EXPECT_EQ(std::memcmp(data.page(6), data.page(0), kXenPageSize), 0);
  stop_queue();
}

TEST_F(QueueTest, FeaturesNotAdvertisedAreUnsupported) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.tweak = [](blkback::QueueConfig& c) {
    c.flush_enabled = false;
    c.barrier_enabled = false;
    c.discard_enabled = false;
  };
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  grant::SharedPages data = fe.share(1);
  std::vector<Case> cases;
  cases.push_back({rw_request<X64>(blkif::kOpFlushDiskcache, 0, 0, {}), kRspEopnotsupp, "flush"});
  cases.push_back({rw_request<X64>(blkif::kOpWriteBarrier, 0, 0, {{data.refs()[0], 0, 7, 0}}),
                   kRspEopnotsupp, "barrier"});
  Req disc{};
  disc.discard.operation = blkif::kOpDiscard;
  disc.discard.nr_sectors = 8;
  cases.push_back({disc, kRspEopnotsupp, "discard"});
  cases.push_back({rw_request<X64>(blkif::kOpWrite, 0, 0, {{data.refs()[0], 0, 7, 0}}), kRspOkay, "write"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, cases));
  EXPECT_EQ(stats.unsupported.get(), 3u);
  stop_queue();
}

TEST_F(QueueTest, ReadOnlyStorageRefusesWrites) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.read_only = true;
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  grant::SharedPages data = fe.share(2);
  std::vector<grant::SharedPages> keep;
  std::vector<Case> cases;
  const blkif::Segment s0{data.refs()[0], 0, 7, 0};
  cases.push_back({rw_request<X64>(blkif::kOpWrite, 0, 0, {s0}), kRspError, "write"});
  cases.push_back({rw_request<X64>(blkif::kOpWriteBarrier, 0, 0, {s0}), kRspError, "barrier with data"});
  cases.push_back({indirect_request(fe, keep, blkif::kOpWrite, 0, 0, {s0}), kRspError, "indirect write"});
  Req disc{};
  disc.discard.operation = blkif::kOpDiscard;
  disc.discard.nr_sectors = 8;
  cases.push_back({disc, kRspError, "discard"});
  cases.push_back({rw_request<X64>(blkif::kOpRead, 0, 0, {{data.refs()[1], 0, 7, 0}}), kRspOkay, "read"});
  cases.push_back({rw_request<X64>(blkif::kOpFlushDiskcache, 0, 0, {}), kRspOkay, "flush"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, cases));
  stop_queue();
}

// Copy path: a bad grant in one request of a batched grant copy fails only that request.
TEST_F(QueueTest, CopyPathBadGrantFailsOnlyItsRequest) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.path = DataPath::Copy;
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  grant::SharedPages data = fe.share(4);
  grant::SharedPages ro = fe.share(1, Access::ReadOnly);
  std::memset(data.page(0), 0x33, kXenPageSize);
  std::vector<Case> cases;
  cases.push_back({rw_request<X64>(blkif::kOpWrite, 0, 0, {{data.refs()[0], 0, 7, 0}}), kRspOkay, "write"});
  cases.push_back({rw_request<X64>(blkif::kOpWrite, 0, 8, {{data.refs()[1], 0, 7, 0}, {9999, 0, 7, 0}}),
                   kRspError, "write with a bad gref"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, cases));
  std::vector<Case> reads;
  reads.push_back({rw_request<X64>(blkif::kOpRead, 0, 0, {{data.refs()[2], 0, 7, 0}}), kRspOkay, "read"});
  reads.push_back({rw_request<X64>(blkif::kOpRead, 0, 0, {{ro.refs()[0], 0, 7, 0}}), kRspError,
                   "read into a read-only grant"});
  ASSERT_NO_FATAL_FAILURE(run_cases(fe, reads));
  EXPECT_EQ(std::memcmp(data.page(2), data.page(0), kXenPageSize), 0);
  stop_queue();
}

}  // namespace
}  // namespace pvback::test
