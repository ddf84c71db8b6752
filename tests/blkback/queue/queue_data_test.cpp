// Data integrity through a Queue: writes of random patterns read back identical (and land at the
// right place in the file), for both data paths, persistent grants on/off, direct and indirect
// requests, both guest ABIs and ring orders 0 and 4; flush, barrier and discard.
#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

struct DataParam {
  Abi abi;
  unsigned order;
  DataPath path;
  bool persistent;
  bool direct;
};

std::string param_name(const ::testing::TestParamInfo<DataParam>& info) {
  const DataParam& p = info.param;
  return std::string(p.abi == Abi::X86_32 ? "x86_32" : "x86_64") + "_order" + std::to_string(p.order) +
         (p.path == DataPath::Map ? "_map" : "_copy") + (p.persistent ? "_persistent" : "") +
         (p.direct ? "_odirect" : "_buffered");
}

class QueueDataTest : public QueueTest, public ::testing::WithParamInterface<DataParam> {
 protected:
  // One planned request: its segments (gref filled in later) and its place on the disk.
  struct Plan {
    bool indirect = false;
    std::uint64_t sector = 0;
    std::vector<blkif::Segment> segs;
    std::vector<std::uint32_t> pages;  // data page index per segment
  };

  template <class Ns>
  void run_round_trip() {
    const DataParam& p = GetParam();
    RawFrontend<Ns> fe(platform(1), p.order);
    Options o;
    o.abi = p.abi;
    o.order = p.order;
    o.path = p.path;
    o.persistent = p.persistent;
    o.direct = p.direct;
    o.tweak = [](blkback::QueueConfig& c) { c.max_persistent_grants = 200; };
    ASSERT_NO_FATAL_FAILURE(start(fe, o));

    std::mt19937_64 rng(p.order * 7 + static_cast<unsigned>(p.path) * 3 + p.persistent);
    // Requests: direct with random partial segments, direct 11 full pages, indirect 64 and 256.
    std::vector<Plan> plans;
    std::uint64_t next_sector = 8;
    std::uint32_t next_page = 0;
    auto add = [&](bool indirect, std::uint32_t nsegs, bool partial) {
      Plan plan;
      plan.indirect = indirect;
      plan.sector = next_sector;
      for (std::uint32_t i = 0; i < nsegs; ++i) {
        blkif::Segment s{};
        s.first_sect = partial ? static_cast<std::uint8_t>(rng() % 8) : 0;
        s.last_sect = partial ? static_cast<std::uint8_t>(s.first_sect + rng() % (8 - s.first_sect)) : 7;
        plan.segs.push_back(s);
        plan.pages.push_back(next_page++);
        next_sector += s.last_sect - s.first_sect + 1u;
      }
      next_sector += rng() % 64;
      plans.push_back(std::move(plan));
    };
    for (int i = 0; i < 6; ++i) add(false, 1 + static_cast<std::uint32_t>(rng() % 11), true);
    add(false, 11, false);
    add(true, 64, false);
    add(true, 256, true);
    add(true, 100, false);

    const std::uint32_t npages = next_page;
    grant::SharedPages wdata = fe.share(npages, Access::ReadOnly);  // the backend only reads these
    grant::SharedPages rdata = fe.share(npages, Access::ReadWrite);
    fill_random(static_cast<std::byte*>(wdata.data()), std::size_t{npages} * kXenPageSize, rng);
    std::vector<grant::SharedPages> indirect_pages;

    for (int round = 0; round < 2; ++round) {  // second round: persistent hits
      auto submit = [&](std::uint8_t op, grant::SharedPages& data, std::uint64_t id_base) {
        for (std::size_t i = 0; i < plans.size(); ++i) {
          std::vector<blkif::Segment> segs = plans[i].segs;
          for (std::size_t k = 0; k < segs.size(); ++k) segs[k].gref = data.refs()[plans[i].pages[k]];
          if (plans[i].indirect)
            fe.put(indirect_request(fe, indirect_pages, op, id_base + i, plans[i].sector, segs));
          else
            fe.put(rw_request<Ns>(op, id_base + i, plans[i].sector, segs));
        }
        fe.push();
        auto rsps = fe.collect(plans.size());
        ASSERT_EQ(rsps.size(), plans.size());
        for (auto& r : rsps) {
          EXPECT_EQ(r.status, blkif::kRspOkay) << "id " << r.id;
          EXPECT_EQ(r.operation, op);  // indirect requests too: Linux's blkfront insists
        }
      };
      ASSERT_NO_FATAL_FAILURE(submit(blkif::kOpWrite, wdata, 1000));
      std::memset(rdata.data(), 0, std::size_t{npages} * kXenPageSize);
      ASSERT_NO_FATAL_FAILURE(submit(blkif::kOpRead, rdata, 2000));
      for (const Plan& plan : plans) {
        std::uint64_t off = plan.sector * 512;
        for (std::size_t k = 0; k < plan.segs.size(); ++k) {
          const std::size_t start = plan.segs[k].first_sect * 512u;
          const std::size_t len = (plan.segs[k].last_sect - plan.segs[k].first_sect + 1u) * 512u;
          const std::byte* want = wdata.page(plan.pages[k]) + start;
          ASSERT_EQ(std::memcmp(rdata.page(plan.pages[k]) + start, want, len), 0) << "read back, segment " << k;
          auto disk = file->read(off, len);
          ASSERT_EQ(std::memcmp(disk.data(), want, len), 0) << "on disk, segment " << k;
          off += len;
        }
      }
      indirect_pages.clear();
    }
    EXPECT_EQ(stats.bad_requests.get(), 0u);
    EXPECT_EQ(stats.io_errors.get(), 0u);
    EXPECT_EQ(stats.in_flight.get(), 0u);
    EXPECT_EQ(stats.writes.get(), 2 * plans.size());
    EXPECT_EQ(stats.reads.get(), 2 * plans.size());
    EXPECT_EQ(stats.indirect.get(), 2 * 2 * 3u);
    if (p.path == DataPath::Copy && !p.persistent) {
      EXPECT_GT(stats.grants_copied.get(), 0u);
      EXPECT_EQ(stats.grants_mapped.get(), 0u);
    } else if (p.persistent) {  // persistent grants are served mapped, whatever the data path
      EXPECT_GT(stats.persistent_hits.get(), 0u);
      EXPECT_LE(stats.persistent_grants.get(), 200u);
      EXPECT_GT(stats.grants_mapped.get(), 0u);  // beyond the cache's 200 entries
    }
    stop_queue();
    EXPECT_EQ(stats.persistent_grants.get(), 0u);
  }
};

TEST_P(QueueDataTest, WriteReadBackIntegrity) {
  if (GetParam().abi == Abi::X86_32) run_round_trip<X32>();
  else run_round_trip<X64>();
}

INSTANTIATE_TEST_SUITE_P(
    Paths, QueueDataTest,
    ::testing::Values(DataParam{Abi::X86_64, 0, DataPath::Map, false, true},
                      DataParam{Abi::X86_64, 0, DataPath::Map, true, true},
                      DataParam{Abi::X86_64, 4, DataPath::Map, true, false},
                      DataParam{Abi::X86_64, 0, DataPath::Copy, false, true},
                      DataParam{Abi::X86_64, 4, DataPath::Copy, false, true},
                      DataParam{Abi::X86_32, 0, DataPath::Map, false, true},
                      DataParam{Abi::X86_32, 4, DataPath::Map, true, true},
                      DataParam{Abi::X86_32, 0, DataPath::Copy, false, false},
                      DataParam{Abi::X86_32, 4, DataPath::Copy, true, true}),
    param_name);

// A long run that keeps the ring full: many batches, completions and new requests interleaved.
TEST_F(QueueTest, SustainedLoadKeepsRingFull) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.persistent = true;
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  const std::uint32_t depth = fe.front.size();
  grant::SharedPages data = fe.share(depth * 2);
  std::mt19937_64 rng(5);
  fill_random(static_cast<std::byte*>(data.data()), std::size_t{depth} * 2 * kXenPageSize, rng);
  std::uint64_t issued = 0, done = 0;
  const std::uint64_t total = 3000;
  while (done < total) {
    while (issued < total && !fe.front.full()) {
      const std::uint32_t page = static_cast<std::uint32_t>(issued % (depth * 2));
      const std::uint8_t op = (issued / (depth * 2)) % 2 == 0 ? blkif::kOpWrite : blkif::kOpRead;
      fe.put(rw_request<X64>(op, issued, page * 8ull, {{data.refs()[page], 0, 7, 0}}));
      ++issued;
    }
    fe.push();
    auto rsps = fe.collect(1);
    ASSERT_FALSE(rsps.empty());
    for (auto& r : rsps) ASSERT_EQ(r.status, blkif::kRspOkay);
    done += rsps.size();
  }
  EXPECT_LT(stats.batches.get(), total);
  stop_queue();
}

// A whole ring of the largest requests on the copy path needs far more bounce pages than the
// pool has: the queue must take only what fits and serve the rest as pages come back (it once
// handed out pages it did not have).
TEST_F(QueueTest, CopyPathFullRingOfLargestRequestsWaitsForBouncePages) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.path = DataPath::Copy;
  o.tweak = [](blkback::QueueConfig& c) { c.max_indirect_segments = 256; };
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  const std::uint32_t depth = fe.front.size();  // 32: 32 x 256 pages >> the pool
  constexpr std::uint32_t kSegs = 256;
  grant::SharedPages data = fe.share(kSegs);
  std::mt19937_64 rng(11);
  fill_random(static_cast<std::byte*>(data.data()), std::size_t{kSegs} * kXenPageSize, rng);
  std::vector<blkif::Segment> segs;
  for (std::uint32_t i = 0; i < kSegs; ++i) segs.push_back({data.refs()[i], 0, 7, 0});
  std::vector<grant::SharedPages> keep;
  for (int round = 0; round < 2; ++round) {
    const std::uint8_t op = round == 0 ? blkif::kOpWrite : blkif::kOpRead;
    for (std::uint32_t i = 0; i < depth; ++i)
      fe.put(indirect_request<X64>(fe, keep, op, i, std::uint64_t{i} * kSegs * 8, segs));
    fe.push();
    auto rsps = fe.collect(depth);
    ASSERT_EQ(rsps.size(), depth);
    for (auto& r : rsps) ASSERT_EQ(r.status, blkif::kRspOkay) << "id " << r.id;
  }
  const auto written = file->read(0, kSegs * kXenPageSize);
  EXPECT_EQ(std::memcmp(written.data(), data.data(), written.size()), 0);
  EXPECT_EQ(stats.bad_requests.get(), 0u);
  stop_queue();
}

TEST_F(QueueTest, FlushAndBarrierComplete) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start(fe, Options{}));
  grant::SharedPages data = fe.share(16);
  std::memset(data.data(), 0xAB, 16 * kXenPageSize);
  using R = blkif::x86_64::Request;
  std::vector<R> reqs;
  for (std::uint32_t i = 0; i < 4; ++i)
    reqs.push_back(rw_request<X64>(blkif::kOpWrite, i, i * 8, {{data.refs()[i], 0, 7, 0}}));
  reqs.push_back(rw_request<X64>(blkif::kOpWriteBarrier, 10, 100, {{data.refs()[10], 0, 7, 0}}));
  for (std::uint32_t i = 4; i < 8; ++i)
    reqs.push_back(rw_request<X64>(blkif::kOpWrite, i, i * 8, {{data.refs()[i], 0, 7, 0}}));
  reqs.push_back(rw_request<X64>(blkif::kOpWriteBarrier, 11, 0, {}));  // barrier without data
  reqs.push_back(rw_request<X64>(blkif::kOpFlushDiskcache, 12, 0, {}));
  reqs.push_back(rw_request<X64>(blkif::kOpRead, 13, 100, {{data.refs()[12], 0, 7, 0}}));
  for (auto& r : reqs) fe.put(r);
  fe.push();
  auto rsps = fe.collect(reqs.size());
  ASSERT_EQ(rsps.size(), reqs.size());
  // The barrier with data completes before anything queued after it starts, so it comes after
  // writes 0..3 and before writes 4..7 in completion (= response) order.
  std::vector<std::uint64_t> order;
  for (auto& r : rsps) {
    EXPECT_EQ(r.status, blkif::kRspOkay) << r.id;
    order.push_back(r.id);
  }
  auto pos = [&](std::uint64_t id) { return std::find(order.begin(), order.end(), id) - order.begin(); };
  for (std::uint64_t i = 0; i < 4; ++i) EXPECT_LT(pos(i), pos(10));
  for (std::uint64_t i = 4; i < 8; ++i) {
    EXPECT_GT(pos(i), pos(10));
    EXPECT_LT(pos(i), pos(11));
  }
  EXPECT_LT(pos(11), pos(12));
  EXPECT_LT(pos(11), pos(13));
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(data.page(12)[i], std::byte{0xAB});
  EXPECT_EQ(stats.barriers.get(), 2u);
  EXPECT_EQ(stats.flushes.get(), 1u);
  stop_queue();
}

TEST_F(QueueTest, DiscardReadsBackZeros) {
  RawFrontend<X64> fe(platform(1), 0);
  ASSERT_NO_FATAL_FAILURE(start(fe, Options{}));
  if (!engine->capabilities().discard) GTEST_SKIP() << "no punch hole on /tmp";
  grant::SharedPages data = fe.share(4);
  std::memset(data.data(), 0x5A, 4 * kXenPageSize);
  for (std::uint32_t i = 0; i < 4; ++i)
    fe.put(rw_request<X64>(blkif::kOpWrite, i, i * 8, {{data.refs()[i], 0, 7, 0}}));
  fe.push();
  ASSERT_EQ(fe.collect(4).size(), 4u);
  blkif::x86_64::Request d{};
  d.discard.operation = blkif::kOpDiscard;
  d.discard.id = 77;
  d.discard.sector_number = 8;
  d.discard.nr_sectors = 16;  // pages 1 and 2
  fe.put(d);
  blkif::x86_64::Request sec = d;
  sec.discard.id = 78;
  sec.discard.flag = blkif::kDiscardSecure;
  fe.put(sec);
  fe.push();
  auto rsps = fe.collect(2);
  ASSERT_EQ(rsps.size(), 2u);
  if (rsps[0].id != 77u) std::swap(rsps[0], rsps[1]);
  EXPECT_EQ(rsps[0].id, 77u);
  EXPECT_EQ(rsps[0].operation, blkif::kOpDiscard);
  EXPECT_EQ(rsps[0].status, blkif::kRspOkay);
  EXPECT_EQ(rsps[1].id, 78u);
  EXPECT_EQ(rsps[1].status, engine->capabilities().secure_discard ? blkif::kRspOkay : blkif::kRspEopnotsupp);
  grant::SharedPages back = fe.share(4);
  std::memset(back.data(), 0xFF, 4 * kXenPageSize);
  std::vector<blkif::Segment> segs;
  for (std::uint32_t i = 0; i < 4; ++i) segs.push_back({back.refs()[i], 0, 7, 0});
  fe.put(rw_request<X64>(blkif::kOpRead, 90, 0, segs));
  fe.push();
  ASSERT_EQ(fe.collect(1).at(0).status, blkif::kRspOkay);
  for (std::size_t i = 0; i < 4 * kXenPageSize; ++i) {
    const bool hole = i >= kXenPageSize && i < 3 * kXenPageSize;
    ASSERT_EQ(back.page(0)[i], hole ? std::byte{0} : std::byte{0x5A}) << i;
  }
  EXPECT_EQ(stats.discards.get(), 1u);
  EXPECT_EQ(stats.sectors_discarded.get(), 16u);
  stop_queue();
}

}  // namespace
}  // namespace pvback::test
