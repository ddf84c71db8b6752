// Linux xen-blkback's counters (blkback/stats.hpp's kernel_*), counted with the kernel's meaning:
// known requests, refused, failed and successful, and the exact values of oo_req, rd_req, wr_req,
// f_req, ds_req, rd_sect and wr_sect they leave.
#include <map>
#include <ostream>
#include <thread>

#include "tests/blkback/queue/queue_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;
using storage::FaultPlan;
using storage::FaultRule;
using storage::Op;

struct Kernel {
  std::uint64_t oo, rd, wr, f, ds, rd_sect, wr_sect;
  bool operator==(const Kernel&) const = default;
};

Kernel kernel_of(const blkback::QueueStats& s) {
  return {s.kernel_oo_req.get(), s.kernel_rd_req.get(), s.kernel_wr_req.get(),  s.kernel_f_req.get(),
          s.kernel_ds_req.get(), s.kernel_rd_sect.get(), s.kernel_wr_sect.get()};
}

std::ostream& operator<<(std::ostream& out, const Kernel& k) {
  return out << "oo_req " << k.oo << " rd_req " << k.rd << " wr_req " << k.wr << " f_req " << k.f << " ds_req "
             << k.ds << " rd_sect " << k.rd_sect << " wr_sect " << k.wr_sect;
}

// Every request counts under its operation whatever its answer, as Linux counts it at dispatch;
// sectors count once handed to the storage (Linux: once the bios are submitted); a discard
// refused for its range is not counted (Linux counts it after xen_vbd_translate); barriers are
// flushes for Linux; unknown operations count nowhere.
TEST_F(QueueTest, KernelCountersCountRequestsAsXenBlkbackDoes) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.fault_plan = FaultPlan{};
  // The write at sector 2048 fails in the storage.
  o.fault_plan->rules.push_back(
      FaultRule{.ops = storage::op_bit(Op::Write), .offset = 2048 * 512, .length = 4096, .error = EIO});
  o.tweak = [](blkback::QueueConfig& c) { c.max_indirect_segments = 32; };
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  const std::uint64_t disk_sectors = engine->sectors();
  grant::SharedPages data = fe.share(24);
  std::vector<grant::SharedPages> keep;
  auto page = [&](std::uint32_t i) { return blkif::Segment{data.refs()[i], 0, 7, 0}; };
  std::vector<blkif::Segment> twenty;
  for (std::uint32_t i = 0; i < 20; ++i) twenty.push_back(page(i));
  using R = blkif::x86_64::Request;
  std::vector<R> reqs;
  reqs.push_back(rw_request<X64>(blkif::kOpRead, 1, 0, {page(0), page(1)}));            // rd 1, 16 sectors
  reqs.push_back(indirect_request<X64>(fe, keep, blkif::kOpRead, 2, 64, twenty));       // rd 1, 160 sectors
  reqs.push_back(rw_request<X64>(blkif::kOpWrite, 3, 200, {page(21)}));                 // wr 1, 8 sectors
  reqs.push_back(rw_request<X64>(blkif::kOpWrite, 4, 2048, {page(22)}));                // wr 1, 8, I/O error
  reqs.push_back(rw_request<X64>(blkif::kOpWriteBarrier, 5, 300, {page(23)}));          // f 1, 8 written
  reqs.push_back(rw_request<X64>(blkif::kOpWriteBarrier, 6, 0, {}));                    // f 1
  reqs.push_back(rw_request<X64>(blkif::kOpFlushDiskcache, 7, 0, {}));                  // f 1
  R discard{};
  discard.discard.operation = blkif::kOpDiscard;
  discard.discard.id = 8;
  discard.discard.sector_number = 1000;
  discard.discard.nr_sectors = 16;
  reqs.push_back(discard);                                                               // ds 1
  R beyond = discard;
  beyond.discard.id = 9;
  beyond.discard.sector_number = disk_sectors - 8;                                       // refused: not counted
  reqs.push_back(beyond);
  reqs.push_back(rw_request<X64>(blkif::kOpRead, 10, disk_sectors, {page(0)}));         // rd 1, refused: 0 sectors
  reqs.push_back(rw_request<X64>(blkif::kOpWrite, 11, 8, {{data.refs()[0], 5, 3, 0}}));  // wr 1, bad segment
  R unknown = rw_request<X64>(99, 12, 0, {});                                            // nowhere
  reqs.push_back(unknown);
  reqs.push_back(indirect_request<X64>(fe, keep, blkif::kOpFlushDiskcache, 13, 0, {page(0)}));  // nowhere
  for (const auto& r : reqs) fe.put(r);
  fe.push();
  auto rsps = fe.collect(reqs.size());
  ASSERT_EQ(rsps.size(), reqs.size());
  std::map<std::uint64_t, std::int16_t> status;
  for (const auto& r : rsps) status[r.id] = r.status;
  for (std::uint64_t id : {1, 2, 3, 5, 6, 7}) EXPECT_EQ(status[id], blkif::kRspOkay) << id;
  for (std::uint64_t id : {4, 9, 10, 11}) EXPECT_EQ(status[id], blkif::kRspError) << id;
  EXPECT_EQ(stats.io_errors.get(), 1u);
  // The discard is counted whether the storage can punch holes (OKAY) or not (EOPNOTSUPP).
  EXPECT_EQ(kernel_of(stats), (Kernel{0, 3, 3, 3, 1, 16 + 160, 8 + 8 + 8}));
  // pvback's own count only what was answered OKAY.
  EXPECT_EQ(stats.reads.get(), 2u);
  EXPECT_EQ(stats.writes.get(), 1u);
  EXPECT_EQ(stats.sectors_read.get(), 176u);
  EXPECT_EQ(stats.sectors_written.get(), 16u);  // id 3 and the barrier's data
  stop_queue();
}

// The copy path's bounce pool holds two of the largest requests: of four sent together, two wait
// in the ring. oo_req counts each of them once, however many passes still find it waiting.
TEST_F(QueueTest, KernelOoReqCountsEachRequestThatWaitedForBouncePagesOnce) {
  RawFrontend<X64> fe(platform(1), 0);
  Options o;
  o.path = DataPath::Copy;
  o.fault_plan = FaultPlan{};
  o.tweak = [](blkback::QueueConfig& c) { c.max_indirect_segments = 256; };
  ASSERT_NO_FATAL_FAILURE(start(fe, o));
  constexpr std::uint32_t kSegs = 256;
  grant::SharedPages data = fe.share(kSegs);
  std::vector<blkif::Segment> segs;
  for (std::uint32_t i = 0; i < kSegs; ++i) segs.push_back({data.refs()[i], 0, 7, 0});
  std::vector<grant::SharedPages> keep;
  faults->stall();  // the first two stay in flight, holding the pool
  for (std::uint64_t i = 0; i < 4; ++i)
    fe.put(indirect_request<X64>(fe, keep, blkif::kOpWrite, i, i * kSegs * 8, segs));
  fe.push();
  ASSERT_TRUE(eventually([&] { return stats.in_flight.get() == 2 && stats.kernel_oo_req.get() == 2; }))
      << "in flight " << stats.in_flight.get() << ", oo_req " << stats.kernel_oo_req.get();
  // More passes over the same waiting requests (the frontend notifying again) count nothing more.
  for (int i = 0; i < 3; ++i) {
    fe.channels->notify(fe.port);
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(stats.kernel_oo_req.get(), 2u);
  EXPECT_EQ(stats.in_flight.get(), 2u);
  faults->resume();
  auto rsps = fe.collect(4);
  ASSERT_EQ(rsps.size(), 4u);
  for (const auto& r : rsps) EXPECT_EQ(r.status, blkif::kRspOkay) << r.id;
  EXPECT_EQ(kernel_of(stats), (Kernel{2, 0, 4, 0, 0, 0, 4ull * kSegs * 8}));
  stop_queue();
}

}  // namespace
}  // namespace pvback::test
