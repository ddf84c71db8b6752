// FaultEngine over a FileEngine: latencies reorder completions, errors and short transfers land
// only where their rules say, a stall holds operations until resume(), and a delay rule slows only
// its own operations.
#include <algorithm>
#include <set>
#include <thread>

#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "tests/storage/engine_fixture.hpp"

namespace pvback::test {
namespace {

using namespace std::chrono_literals;
using storage::FaultEngine;
using storage::FaultPlan;
using storage::FaultRule;
using storage::Op;

std::unique_ptr<FaultEngine> faulty(const TempFile& disk, FaultPlan plan) {
  storage::FileOptions o;
  o.path = disk.path;
  o.allow_direct = false;
  auto inner = storage::FileEngine::open(o);
  if (!inner) throw std::runtime_error("open");
  return std::make_unique<FaultEngine>(std::move(*inner), std::move(plan));
}

TEST(FaultEngine, LatenciesReorderCompletionsAndEachComesBackOnce) {
  TempFile disk(1 << 20);
  FaultPlan plan;
  plan.min_latency = 1us;  // every operation delayed (a draw of 0 would start it at once)
  plan.max_latency = 5ms;
  plan.seed = 42;
  auto engine = faulty(disk, plan);
  Driven d(*engine);
  constexpr std::uint32_t kOps = 32;
  std::vector<std::byte> buf(kOps * 4096);
  std::vector<iovec> iov(kOps);
  for (std::uint32_t i = 0; i < kOps; ++i) {
    iov[i] = {buf.data() + i * 4096, 4096};
    ASSERT_EQ(d.channel->submit({Op::Read, i * 4096ull, 4096, &iov[i], 1, i}), 0);
  }
  const auto& done = d.wait_for(kOps);
  ASSERT_EQ(done.size(), kOps);
  std::set<std::uint32_t> tags;
  std::vector<std::uint32_t> order;
  for (const Done& x : done) {
    EXPECT_EQ(x.res, 4096);
    tags.insert(x.tag);
    order.push_back(x.tag);
  }
  EXPECT_EQ(tags.size(), kOps);
  EXPECT_FALSE(std::is_sorted(order.begin(), order.end())) << "32 random latencies came back in submission order";
  EXPECT_EQ(engine->delayed(), kOps);
  EXPECT_EQ(d.channel->in_flight(), 0u);
}

TEST(FaultEngine, ErrorsAndShortTransfersLandOnlyWhereTheirRulesSay) {
  TempFile disk(4 << 20);
  FaultPlan plan;
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Write), .offset = 1 << 20, .length = 4096, .error = EIO});
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Read), .every = 2, .short_bytes = 512});
  auto engine = faulty(disk, plan);
  Driven d(*engine);
  std::vector<std::byte> w(4096, std::byte{0x33});
  const iovec wv{w.data(), w.size()};
  ASSERT_EQ(d.channel->submit({Op::Write, 1 << 20, 4096, &wv, 1, 1}), 0);  // in the range: fails
  ASSERT_EQ(d.channel->submit({Op::Write, 2 << 20, 4096, &wv, 1, 2}), 0);  // outside: written
  const auto& written = d.wait_for(2);
  ASSERT_EQ(written.size(), 2u);
  for (const Done& x : written) EXPECT_EQ(x.res, x.tag == 1 ? -EIO : 4096) << x.tag;
  EXPECT_EQ(disk.read(1 << 20, 4096), std::vector<std::byte>(4096, std::byte{0}));  // never ran
  EXPECT_EQ(disk.read(2 << 20, 4096), w);
  std::vector<std::byte> r(4096);
  const iovec rv{r.data(), r.size()};
  for (std::uint32_t i = 0; i < 4; ++i) {
    ASSERT_EQ(d.channel->submit({Op::Read, 2 << 20, 4096, &rv, 1, 10 + i}), 0);
    ASSERT_EQ(d.wait_for(3 + i).size(), 3u + i);
  }
  const auto& done = d.sink.done;
  EXPECT_EQ(done[2].res, 512);  // the 1st and 3rd matching reads
  EXPECT_EQ(done[3].res, 4096);
  EXPECT_EQ(done[4].res, 512);
  EXPECT_EQ(done[5].res, 4096);
  EXPECT_EQ(engine->failed(), 1u);
  EXPECT_EQ(engine->shortened(), 2u);
}

TEST(FaultEngine, AStallHoldsOperationsUntilResume) {
  TempFile disk(1 << 20);
  auto engine = faulty(disk, FaultPlan{});
  Driven d(*engine);
  engine->stall();
  std::vector<std::byte> r(4096);
  const iovec rv{r.data(), r.size()};
  ASSERT_EQ(d.channel->submit({Op::Read, 0, 4096, &rv, 1, 5}), 0);
  d.loop.submit();
  std::this_thread::sleep_for(100ms);
  d.loop.for_each_completion([&](std::uint64_t tag, int res) { d.channel->on_completion(tag, res, d.sink); });
  EXPECT_TRUE(d.sink.done.empty());
  EXPECT_EQ(engine->held(), 1u);
  EXPECT_EQ(d.channel->in_flight(), 1u);
  std::thread resumer([&] {
    std::this_thread::sleep_for(50ms);
    engine->resume();
  });
  const auto& done = d.wait_for(1);
  resumer.join();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tag, 5u);
  EXPECT_EQ(done[0].res, 4096);
}

TEST(FaultEngine, ADelayRuleSlowsOnlyItsOwnOperations) {
  TempFile disk(1 << 20);
  FaultPlan plan;
  plan.rules.push_back(FaultRule{.ops = storage::op_bit(Op::Discard), .delay = 300ms});
  auto engine = faulty(disk, plan);
  if (!engine->capabilities().discard) GTEST_SKIP() << "/tmp's file system cannot punch holes";
  Driven d(*engine);
  std::vector<std::byte> r(4096);
  const iovec rv{r.data(), r.size()};
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(d.channel->submit({Op::Discard, 0, 8192, nullptr, 0, 1}), 0);
  ASSERT_EQ(d.channel->submit({Op::Read, 8192, 4096, &rv, 1, 2}), 0);
  const auto& done = d.wait_for(2);
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0].tag, 2u);  // the read did not wait for the discard
  EXPECT_EQ(done[1].tag, 1u);
  EXPECT_EQ(done[1].res, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 300ms);
}

}  // namespace
}  // namespace pvback::test
