// BlkFront against a scripted backend thread on an in-process simulated hypervisor: the keys it
// writes for each negotiation outcome, timeouts, closing in both directions, and the data path
// (partial pages, split and indirect requests, ABIs, raw ring access).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <thread>

#include "blkfront/blkfront.hpp"
#include "grant/sim_control.hpp"
#include "grant/sim_layout.hpp"
#include "sim/hypervisor.hpp"
#include "sim/toolstack/vbd.hpp"
#include "tests/blkfront/scripted_backend.hpp"

namespace pvback::blkfront {
namespace {

using testing::BackendConfig;
using testing::ScriptedBackend;
using namespace std::chrono_literals;

constexpr DomId kGuest = 1;
constexpr std::uint32_t kDevid = 768;

class BlkFrontSim : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pvback-blkfront-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    hv_ = std::make_unique<sim::SimHypervisor>(dir_);
    auto ctl = grant::SimControl::connect(dir_, 0);
    ASSERT_TRUE(ctl.has_value());
    sim_protocol::Request req;
    req.op = sim_protocol::Op::CreateDomain;
    req.domid = kGuest;
    ASSERT_TRUE(ctl->call(req).has_value());
    auto xs = xenbus::XenStore::open(sim_layout::xenstore_socket(dir_).string());
    ASSERT_TRUE(xs.has_value());
    dom0_ = std::move(*xs);
    sim::VbdSpec spec;
    spec.frontend_domid = kGuest;
    spec.devid = kDevid;
    spec.params = "/dev/null";
    ASSERT_EQ(sim::add_vbd(dom0_, spec), 0);
    backend_path_ = sim::vbd_backend_path(0, kGuest, kDevid);
    frontend_path_ = sim::vbd_frontend_path(kGuest, kDevid);
  }
  void TearDown() override {
    backend_.reset();
    hv_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void start_backend(BackendConfig config = {}) {
    backend_ = std::make_unique<ScriptedBackend>(hv_->platform(0), backend_path_, frontend_path_, kGuest, config);
  }

  std::unique_ptr<BlkFront> attach(Options options = {}) {
    options.connect_timeout = 5000ms;
    options.close_timeout = 3000ms;
    grant::Platform platform(hv_->platform(kGuest));
    auto front = BlkFront::attach(platform, frontend_path_, options);
    EXPECT_TRUE(front.has_value()) << (front ? "" : std::strerror(front.error()));
    return front ? std::move(*front) : nullptr;
  }

  std::string fe(const std::string& key) { return dom0_.read(frontend_path_ + "/" + key).value_or("<missing>"); }

  std::filesystem::path dir_;
  std::unique_ptr<sim::SimHypervisor> hv_;
  xenbus::XenStore dom0_;
  std::string backend_path_, frontend_path_;
  std::unique_ptr<ScriptedBackend> backend_;
};

std::vector<std::byte> pattern(std::size_t len, unsigned seed) {
  std::vector<std::byte> v(len);
  std::mt19937 rng(seed);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

TEST_F(BlkFrontSim, OrderZeroSingleQueueWritesTopLevelKeys) {
  start_backend();
  Options o;
  o.max_ring_page_order = 0;
  o.max_queues = 1;
  auto front = attach(o);
  ASSERT_TRUE(front);
  auto keys = backend_->frontend_keys();
  EXPECT_TRUE(keys.contains("ring-ref"));
  EXPECT_TRUE(keys.contains("event-channel"));
  EXPECT_FALSE(keys.contains("ring-page-order"));
  EXPECT_FALSE(keys.contains("ring-ref0"));
  EXPECT_FALSE(keys.contains("multi-queue-num-queues"));
  EXPECT_FALSE(keys.contains("queue-0/ring-ref"));
  EXPECT_EQ(keys["protocol"], std::string(blkif::kProtocolNative));
  EXPECT_EQ(keys["feature-persistent"], "1");
  EXPECT_EQ(keys["ring-ref"], std::to_string(front->queue(0).ring_refs()[0]));
  EXPECT_EQ(keys["event-channel"], std::to_string(front->queue(0).port()));
  EXPECT_EQ(keys["state"], "3");
  const auto& n = front->negotiated();
  EXPECT_EQ(n.ring_page_order, 0u);
  EXPECT_EQ(n.num_queues, 1u);
  EXPECT_EQ(n.ring_size, 32u);
  EXPECT_EQ(n.sectors, 8192u);
  EXPECT_TRUE(n.persistent);
  EXPECT_TRUE(n.indirect);
  EXPECT_EQ(n.segments_per_request, 32u);
  EXPECT_TRUE(n.flush && n.barrier && n.discard && n.discard_secure);
  EXPECT_EQ(n.discard_granularity, 4096u);
  EXPECT_EQ(n.physical_sector_size, 4096u);
  EXPECT_EQ(fe("state"), "4");
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(fe("state"), "6");
}

TEST_F(BlkFrontSim, OrderFourFourQueuesWritesPerQueueKeys) {
  start_backend();
  Options o;
  o.max_ring_page_order = 4;
  o.max_queues = 4;
  auto front = attach(o);
  ASSERT_TRUE(front);
  auto keys = backend_->frontend_keys();
  EXPECT_EQ(keys["ring-page-order"], "4");
  EXPECT_EQ(keys["multi-queue-num-queues"], "4");
  EXPECT_FALSE(keys.contains("ring-ref"));
  EXPECT_FALSE(keys.contains("event-channel"));
  for (unsigned q = 0; q < 4; ++q) {
    const std::string p = "queue-" + std::to_string(q) + "/";
    for (unsigned r = 0; r < 16; ++r)
      EXPECT_EQ(keys[p + "ring-ref" + std::to_string(r)], std::to_string(front->queue(q).ring_refs()[r]));
    EXPECT_FALSE(keys.contains(p + "ring-ref16"));
    EXPECT_EQ(keys[p + "event-channel"], std::to_string(front->queue(q).port()));
  }
  EXPECT_EQ(front->num_queues(), 4u);
  EXPECT_EQ(front->negotiated().ring_size, 512u);
  front->detach();
}

TEST_F(BlkFrontSim, TakesTheMinimumOfBothEnds) {
  BackendConfig c;
  c.max_ring_page_order = 2;
  c.max_queues = 3;
  c.max_indirect_segments = 64;
  c.persistent = false;
  start_backend(c);
  Options o;
  o.max_ring_page_order = 4;
  o.max_queues = 8;
  o.max_indirect_segments = 128;
  o.pool_pages = 1024;  // room for a 300-page request
  auto front = attach(o);
  ASSERT_TRUE(front);
  const auto& n = front->negotiated();
  EXPECT_EQ(n.ring_page_order, 2u);
  EXPECT_EQ(n.num_queues, 3u);
  EXPECT_EQ(n.segments_per_request, 64u);
  EXPECT_FALSE(n.persistent) << "backend did not offer it";
  auto keys = backend_->frontend_keys();
  EXPECT_EQ(keys["ring-page-order"], "2");
  EXPECT_EQ(keys["multi-queue-num-queues"], "3");
  EXPECT_TRUE(keys.contains("queue-2/ring-ref3"));
  EXPECT_FALSE(keys.contains("queue-2/ring-ref4"));
  EXPECT_EQ(keys["feature-persistent"], "1") << "the frontend states its own offer";
  front->detach();
}

TEST_F(BlkFrontSim, NoIndirectWhenDisabledOrNotOffered) {
  BackendConfig c;
  c.max_indirect_segments = 0;
  start_backend(c);
  Options o;
  o.persistent = false;
  auto front = attach(o);
  ASSERT_TRUE(front);
  EXPECT_FALSE(front->negotiated().indirect);
  EXPECT_EQ(front->negotiated().segments_per_request, 11u);
  EXPECT_EQ(backend_->frontend_keys()["feature-persistent"], "0");
  // A 100 KiB write at a non-aligned sector is split into 11-segment requests.
  auto data = pattern(100 * 1024, 3);
  ASSERT_EQ(front->queue(0).submit_write(5, data, 1), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait_for(1, 5000ms), 0);
  auto seen = backend_->seen();
  ASSERT_EQ(seen.size(), 3u);  // 26 pages: 11 + 11 + 4
  for (const auto& s : seen) EXPECT_EQ(s.operation, blkif::kOpWrite);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(5, back), 0);
  EXPECT_EQ(back, data);
  auto disk = backend_->disk();
  EXPECT_EQ(std::memcmp(disk.data() + 5 * 512, data.data(), data.size()), 0);
  front->detach();
}

class BlkFrontProtocol : public BlkFrontSim, public ::testing::WithParamInterface<Protocol> {};

TEST_P(BlkFrontProtocol, KeyAndRingAbiMatch) {
  start_backend();
  Options o;
  o.protocol = GetParam();
  o.max_queues = 2;
  auto front = attach(o);
  ASSERT_TRUE(front);
  auto keys = backend_->frontend_keys();
  switch (GetParam()) {
    case Protocol::Native: EXPECT_EQ(keys["protocol"], std::string(blkif::kProtocolNative)); break;
    case Protocol::X86_32: EXPECT_EQ(keys["protocol"], "x86_32-abi"); break;
    case Protocol::X86_64: EXPECT_EQ(keys["protocol"], "x86_64-abi"); break;
    case Protocol::Omitted: EXPECT_FALSE(keys.contains("protocol")); break;
  }
  const bool x32 = GetParam() == Protocol::X86_32;
  EXPECT_EQ(std::holds_alternative<blkif::x86_32::FrontRing>(front->queue(0).raw_ring()), x32);
  // Data goes through whatever ABI was chosen (the scripted backend reads the protocol key).
  auto data = pattern(64 * 1024 + 512, 11);
  ASSERT_EQ(front->write(17, data), 0);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->read(17, back), 0);
  EXPECT_EQ(back, data);
  EXPECT_EQ(front->flush(), 0);
  EXPECT_EQ(front->discard(16, 8), 0);
  EXPECT_TRUE(backend_->error().empty()) << backend_->error();
  front->detach();
}

INSTANTIATE_TEST_SUITE_P(All, BlkFrontProtocol,
                         ::testing::Values(Protocol::Native, Protocol::X86_32, Protocol::X86_64, Protocol::Omitted),
                         [](const auto& info) {
                           switch (info.param) {
                             case Protocol::Native: return std::string("native");
                             case Protocol::X86_32: return std::string("x86_32");
                             case Protocol::X86_64: return std::string("x86_64");
                             case Protocol::Omitted: return std::string("omitted");
                           }
                           return std::string("?");
                         });

TEST_F(BlkFrontSim, TimesOutWhenBackendNeverReachesInitWait) {
  BackendConfig c;
  c.reach_init_wait = false;
  start_backend(c);
  Options o;
  o.connect_timeout = 300ms;
  grant::Platform platform(hv_->platform(kGuest));
  auto start = std::chrono::steady_clock::now();
  auto front = BlkFront::attach(platform, frontend_path_, o);
  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error(), ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_FALSE(dom0_.exists(frontend_path_ + "/ring-ref").value_or(true)) << "nothing published";
}

TEST_F(BlkFrontSim, NoSuchDevice) {
  grant::Platform platform(hv_->platform(kGuest));
  auto front = BlkFront::attach(platform, BlkFront::frontend_path_for(kGuest, 999));
  ASSERT_FALSE(front.has_value());
  EXPECT_EQ(front.error(), ENOENT);
}

TEST_F(BlkFrontSim, PartialPageWriteUsesFirstAndLastSect) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  auto one = pattern(512, 1);
  ASSERT_EQ(front->write(3, one), 0);
  auto seen = backend_->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].operation, blkif::kOpWrite);
  EXPECT_EQ(seen[0].sector, 3u);
  ASSERT_EQ(seen[0].segs.size(), 1u);
  EXPECT_EQ(seen[0].segs[0].first_sect, 3);
  EXPECT_EQ(seen[0].segs[0].last_sect, 3);
  // 3 KiB starting at sector 6: pages [6..7] and [0..3].
  auto three = pattern(3072, 2);
  ASSERT_EQ(front->write(6, three), 0);
  seen = backend_->seen();
  ASSERT_EQ(seen.size(), 2u);
  ASSERT_EQ(seen[1].segs.size(), 2u);
  EXPECT_EQ(seen[1].segs[0].first_sect, 6);
  EXPECT_EQ(seen[1].segs[0].last_sect, 7);
  EXPECT_EQ(seen[1].segs[1].first_sect, 0);
  EXPECT_EQ(seen[1].segs[1].last_sect, 3);
  auto disk = backend_->disk();
  EXPECT_EQ(std::memcmp(disk.data() + 3 * 512, one.data(), 512), 0);
  EXPECT_EQ(std::memcmp(disk.data() + 6 * 512, three.data(), 3072), 0);
  std::vector<std::byte> back(512);
  ASSERT_EQ(front->read(3, back), 0);
  EXPECT_EQ(back, one);
  // Misaligned lengths and requests beyond the disk are refused locally.
  EXPECT_EQ(front->queue(0).submit_write(0, std::span(one).first(100), 9), EINVAL);
  EXPECT_EQ(front->queue(0).submit_read(8192, back, 9), EINVAL);
  front->detach();
}

TEST_F(BlkFrontSim, LargeRequestsUseIndirectDescriptors) {
  start_backend();
  Options o;
  o.max_indirect_segments = 128;
  o.pool_pages = 1024;  // room for a 300-page request
  auto front = attach(o);
  ASSERT_TRUE(front);
  ASSERT_EQ(front->negotiated().segments_per_request, 128u);
  auto data = pattern(100 * 4096, 5);  // 100 pages at an aligned sector: one indirect request
  ASSERT_EQ(front->queue(0).submit_write(64, data, 42), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait_for(42, 5000ms), 0);
  auto seen = backend_->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].operation, blkif::kOpIndirect);
  EXPECT_EQ(seen[0].indirect_op, blkif::kOpWrite);
  EXPECT_EQ(seen[0].nr_segments, 100u);
  std::vector<std::byte> back(data.size());
  ASSERT_EQ(front->queue(0).submit_read(64, back, 43), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait_for(43, 5000ms), 0);
  EXPECT_EQ(back, data);
  // A 300-page request is split into 128 + 128 + 44 segments, one completion.
  auto big = pattern(300 * 4096, 6);
  ASSERT_EQ(front->queue(0).submit_write(1024, big, 44), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait_for(44, 5000ms), 0);
  seen = backend_->seen();
  ASSERT_EQ(seen.size(), 5u);  // write, read, then the three parts
  EXPECT_EQ(seen[2].nr_segments, 128u);
  EXPECT_EQ(seen[3].nr_segments, 128u);
  EXPECT_EQ(seen[4].nr_segments, 44u);
  auto disk = backend_->disk();
  EXPECT_EQ(std::memcmp(disk.data() + 1024 * 512, big.data(), big.size()), 0);
  front->detach();
}

TEST_F(BlkFrontSim, CallerGrantedPagesCarryTheDataWithNoCopy) {
  start_backend();
  Options o;
  o.max_indirect_segments = 128;
  auto front = attach(o);
  ASSERT_TRUE(front);
  const std::uint32_t pool = front->negotiated().pool_pages;
  auto pages = front->share_pages(120);
  ASSERT_TRUE(pages.has_value()) << std::strerror(pages.error());
  Queue& q = front->queue(0);
  // 3 pages of data at byte 512 of the region: segments are the region's own refs, the first
  // one from sector 1 of its page, the fourth page's sector 0 last; the pool stays untouched.
  auto data = pattern(3 * 4096, 11);
  std::memcpy(pages->page(0) + 512, data.data(), data.size());
  ASSERT_EQ(q.submit_write_granted(16, *pages, 512, data.size(), 50), 0);
  EXPECT_EQ(q.free_pool_pages(), pool) << "no pool page for a direct request's data";
  ASSERT_EQ(q.kick(), 0);
  ASSERT_EQ(q.wait_for(50, 5000ms), 0);
  auto seen = backend_->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].operation, blkif::kOpWrite);
  ASSERT_EQ(seen[0].segs.size(), 4u);
  for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(seen[0].segs[i].gref, pages->refs()[i]) << i;
  EXPECT_EQ(seen[0].segs[0].first_sect, 1);
  EXPECT_EQ(seen[0].segs[0].last_sect, 7);
  EXPECT_EQ(seen[0].segs[3].first_sect, 0);
  EXPECT_EQ(seen[0].segs[3].last_sect, 0);
  auto disk = backend_->disk();
  EXPECT_EQ(std::memcmp(disk.data() + 16 * 512, data.data(), data.size()), 0);

  // The backend writes a read straight into the region (elsewhere in it).
  std::memset(pages->page(10), 0, 4 * 4096);
  ASSERT_EQ(q.submit_read_granted(16, *pages, 10 * 4096, data.size(), 51), 0);
  ASSERT_EQ(q.kick(), 0);
  ASSERT_EQ(q.wait_for(51, 5000ms), 0);
  EXPECT_EQ(std::memcmp(pages->page(10), data.data(), data.size()), 0);
  EXPECT_EQ(backend_->seen()[1].segs[0].gref, pages->refs()[10]);

  // 100 pages: one indirect request whose only pool page is its descriptor page.
  auto big = pattern(100 * 4096, 12);
  std::memcpy(pages->page(20), big.data(), big.size());
  ASSERT_EQ(q.submit_write_granted(1024, *pages, 20 * 4096, big.size(), 52), 0);
  EXPECT_EQ(q.free_pool_pages(), pool - 1);
  ASSERT_EQ(q.kick(), 0);
  ASSERT_EQ(q.wait_for(52, 5000ms), 0);
  seen = backend_->seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[2].operation, blkif::kOpIndirect);
  EXPECT_EQ(seen[2].nr_segments, 100u);
  EXPECT_EQ(seen[2].segs[99].gref, pages->refs()[119]);
  disk = backend_->disk();
  EXPECT_EQ(std::memcmp(disk.data() + 1024 * 512, big.data(), big.size()), 0);
  EXPECT_EQ(q.free_pool_pages(), pool);

  // Outside the region or not on a sector boundary of a page: refused locally.
  EXPECT_EQ(q.submit_write_granted(0, *pages, 100, 512, 53), EINVAL);
  EXPECT_EQ(q.submit_write_granted(0, *pages, 119 * 4096, 8192, 53), EINVAL);
  EXPECT_EQ(q.submit_read_granted(0, *pages, 121 * 4096, 512, 53), EINVAL);
  EXPECT_EQ(q.in_flight(), 0u);
  EXPECT_EQ(front->share_pages(0).error(), EINVAL);
  // The pages outlive the connection (a backend may keep them mapped until it is Closed).
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(front->share_pages(1).error(), ENODEV);
  pages->reset();
}

TEST_F(BlkFrontSim, AsyncBatchAcrossQueues) {
  start_backend();
  Options o;
  o.max_queues = 2;
  o.max_ring_page_order = 0;
  auto front = attach(o);
  ASSERT_TRUE(front);
  ASSERT_EQ(front->num_queues(), 2u);
  // Fill both rings with 4 KiB writes to distinct blocks, one kick each, then read all back.
  std::vector<std::vector<std::byte>> bufs;
  for (unsigned i = 0; i < 64; ++i) bufs.push_back(pattern(4096, 100 + i));
  for (unsigned i = 0; i < 64; ++i) ASSERT_EQ(front->queue(i % 2).submit_write(i * 8, bufs[i], i), 0) << i;
  EXPECT_EQ(front->queue(0).submit_write(0, bufs[0], 999), EAGAIN) << "ring of 32 is full";
  ASSERT_EQ(front->queue(0).kick(), 0);
  ASSERT_EQ(front->queue(1).kick(), 0);
  std::vector<bool> done(64, false);
  unsigned count = 0;
  Completion out[16];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (count < 64 && std::chrono::steady_clock::now() < deadline) {
    for (unsigned q = 0; q < 2; ++q) {
      std::size_t n;
      while ((n = front->queue(q).poll(out)) > 0)
        for (std::size_t k = 0; k < n; ++k) {
          EXPECT_EQ(out[k].error, 0);
          EXPECT_FALSE(done[out[k].tag]);
          done[out[k].tag] = true;
          ++count;
        }
    }
    if (count < 64) front->wait_any(100ms);
  }
  ASSERT_EQ(count, 64u);
  auto disk = backend_->disk();
  for (unsigned i = 0; i < 64; ++i) EXPECT_EQ(std::memcmp(disk.data() + i * 4096, bufs[i].data(), 4096), 0);
  EXPECT_EQ(front->queue(0).in_flight(), 0u);
  EXPECT_EQ(front->queue(0).free_pool_pages(), front->negotiated().pool_pages);
  front->detach();
}

TEST_F(BlkFrontSim, BackendClosingFailsOutstandingAndCloses) {
  BackendConfig c;
  c.mode = BackendConfig::Mode::Silent;  // never answers
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  std::vector<std::byte> buf(4096);
  ASSERT_EQ(front->queue(0).submit_read(0, buf, 5), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait(200ms), ETIMEDOUT);
  backend_->go_closing();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (front->connected() && std::chrono::steady_clock::now() < deadline) front->queue(0).wait(1000ms);
  Completion out[4];
  ASSERT_EQ(front->queue(0).poll(out), 1u);
  EXPECT_EQ(out[0].tag, 5u);
  EXPECT_EQ(out[0].error, ENODEV);
  EXPECT_FALSE(front->connected());
  EXPECT_EQ(fe("state"), "6");
  EXPECT_EQ(front->queue(0).submit_read(0, buf, 6), ENODEV);
  EXPECT_EQ(front->read(0, buf), ENODEV);
  for (int i = 0; i < 100 && !backend_->finished(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(backend_->finished());
  EXPECT_EQ(dom0_.read(backend_path_ + "/state").value_or(""), "6");
}

TEST_F(BlkFrontSim, DetachWaitsForBackendAndReattaches) {
  start_backend();
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->detach(), 0);
  EXPECT_EQ(fe("state"), "6");
  EXPECT_EQ(front->state(), XenbusStateClosed);
  for (int i = 0; i < 100 && !backend_->finished(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(backend_->finished());
  // A fresh backend and a fresh attach with different parameters: stale keys are gone.
  backend_.reset();
  dom0_.write(backend_path_ + "/state", "1");
  start_backend();
  Options o;
  o.max_queues = 1;
  o.max_ring_page_order = 0;
  auto again = attach(o);
  ASSERT_TRUE(again);
  auto keys = backend_->frontend_keys();
  EXPECT_FALSE(keys.contains("multi-queue-num-queues"));
  EXPECT_FALSE(keys.contains("ring-page-order"));
  EXPECT_FALSE(keys.contains("queue-0/ring-ref0"));
  EXPECT_TRUE(keys.contains("ring-ref"));
  again->detach();
}

TEST_F(BlkFrontSim, DetachTimesOutWhenBackendIgnoresClosing) {
  BackendConfig c;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  backend_->stop();  // the backend process hangs
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(front->detach(), ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(fe("state"), "6");
}

TEST_F(BlkFrontSim, BadResponseIdIsAProtocolError) {
  BackendConfig c;
  c.mode = BackendConfig::Mode::BadId;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  std::vector<std::byte> buf(4096);
  ASSERT_EQ(front->queue(0).submit_read(0, buf, 5), 0);
  ASSERT_EQ(front->queue(0).kick(), 0);
  EXPECT_EQ(front->queue(0).wait_for(5, 5000ms), EPROTO);
  EXPECT_EQ(front->queue(0).error(), EPROTO);
  EXPECT_EQ(front->queue(0).submit_read(0, buf, 6), EPROTO);
  front->detach();
}

TEST_F(BlkFrontSim, FeaturesNotOfferedAreRefusedLocally) {
  BackendConfig c;
  c.flush = c.barrier = c.discard = false;
  start_backend(c);
  auto front = attach();
  ASSERT_TRUE(front);
  EXPECT_EQ(front->flush(), EOPNOTSUPP);
  EXPECT_EQ(front->discard(0, 8), EOPNOTSUPP);
  auto data = pattern(4096, 1);
  EXPECT_EQ(front->queue(0).submit_barrier_write(0, data, 1), EOPNOTSUPP);
  front->detach();
}

TEST_F(BlkFrontSim, RawRingCarriesHandMadeRequests) {
  start_backend();
  Options o;
  o.protocol = Protocol::X86_64;
  o.max_queues = 1;
  auto front = attach(o);
  ASSERT_TRUE(front);
  Queue& q = front->queue(0);
  auto& ring = std::get<blkif::x86_64::FrontRing>(q.raw_ring());
  ASSERT_GT(q.pool().pages(), 0u);
  // A read into pool page 0 through its grant ref, and one with a bogus grant ref.
  blkif::x86_64::Request good{};
  good.rw.operation = blkif::kOpRead;
  good.rw.nr_segments = 1;
  good.rw.id = 1001;
  good.rw.sector_number = 0;
  good.rw.seg[0] = {.gref = q.pool().refs()[0], .first_sect = 0, .last_sect = 7, .pad = 0};
  blkif::x86_64::Request bad = good;
  bad.rw.id = 1002;
  bad.rw.seg[0].gref = 0xdead;
  ring.put_request(good);
  ring.put_request(bad);
  if (ring.push_requests_and_check_notify()) {
    ASSERT_EQ(q.notify(), 0);
  }
  std::vector<blkif::x86_64::Response> rsps;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (rsps.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    while (*ring.unconsumed_responses() > 0) rsps.push_back(ring.next_response());
    if (rsps.size() < 2) q.wait_event(100ms);
  }
  ASSERT_EQ(rsps.size(), 2u);
  EXPECT_EQ(rsps[0].id, 1001u);
  EXPECT_EQ(rsps[0].status, blkif::kRspOkay);
  EXPECT_EQ(rsps[1].id, 1002u);
  EXPECT_EQ(rsps[1].status, blkif::kRspError);
  EXPECT_NE(q.shared_ring(), nullptr);
  front->detach();
}

}  // namespace
}  // namespace pvback::blkfront
