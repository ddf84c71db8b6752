// ControlRing (domain 0) served on its own thread against a raw frontend (domain 1) on the
// simulated hypervisor: every message, every refusal, and what ends up in VifShared.
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "netback/ctrl_ring.hpp"
#include "ring/netif.hpp"
#include "tests/grant/sim_fixture.hpp"
#include "tests/support/eventually.hpp"

namespace pvback::test {
namespace {

using netif::CtrlRequest;
using netif::CtrlResponse;
using namespace netif;

constexpr unsigned kQueues = 4;

class ControlRingTest : public SimHypervisorTest {
 protected:
  void SetUp() override {
    SimHypervisorTest::SetUp();
    if (HasFatalFailure()) return;
    fe_platform = std::make_unique<grant::Platform>(platform(1));
    sharer = fe_platform->open_sharer();
    channels = fe_platform->open_event_channels();
    auto pages = sharer->share(0, 1, Access::ReadWrite);
    ASSERT_TRUE(pages);
    ring_page = std::move(*pages);
    auto f = CtrlRing::Front::initialise(ring_page.data(), 1);
    ASSERT_TRUE(f);
    front = *f;
    auto p = channels->alloc_unbound(0);
    ASSERT_TRUE(p);
    port = *p;
    shared = std::make_unique<netback::VifShared>(kQueues);
  }

  void TearDown() override {
    stop();
    ctrl.reset();
    SimHypervisorTest::TearDown();
  }

  // Creates the backend; `run` starts its thread.
  void start(bool run = true) {
    netback::ControlRingConfig config;
    config.name = "vif 1/0 ctrl";
    config.frontend_domid = 1;
    config.ring_ref = ring_page.refs()[0];
    config.event_channel = port;
    be_platform = std::make_unique<grant::Platform>(platform(0));
    auto c = netback::ControlRing::create(*be_platform, config, *shared, [this](int err, const std::string& why) {
      fatal_error = err;
      fatal_reason = why;
      fatal_calls.fetch_add(1);
    });
    ASSERT_TRUE(c) << std::strerror(c.error());
    ctrl = std::move(*c);
    ASSERT_EQ(ctrl->attach(), 0);
    if (run) runner = std::thread([this] {
      ctrl->run();
      run_returned = true;
    });
  }

  void stop() {
    if (ctrl) ctrl->stop();
    if (runner.joinable()) runner.join();
  }

  void put(std::uint16_t type, std::uint32_t d0 = 0, std::uint32_t d1 = 0, std::uint32_t d2 = 0) {
    CtrlRequest r{};
    r.id = next_id++;
    r.type = type;
    r.data[0] = d0;
    r.data[1] = d1;
    r.data[2] = d2;
    front.put_request(r);
  }
  void push() {
    if (front.push_requests_and_check_notify()) channels->notify(port);
  }

  std::vector<CtrlResponse> collect(std::size_t n, int timeout_ms = 20000) {
    std::vector<CtrlResponse> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n) {
      auto more = front.unconsumed_responses();
      if (!more) break;
      for (ring::RingIdx i = 0; i < *more; ++i) out.push_back(front.next_response());
      if (out.size() >= n) break;
      auto again = front.final_check_for_responses();
      if (!again) break;
      if (*again) continue;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_readable(channels->fd(), static_cast<int>(left.count()))) break;
      if (auto p = channels->pending()) channels->unmask(*p);
    }
    return out;
  }

  // One request, one response; checks the echoed id and type.
  CtrlResponse call(std::uint16_t type, std::uint32_t d0 = 0, std::uint32_t d1 = 0, std::uint32_t d2 = 0) {
    const std::uint16_t id = next_id;
    put(type, d0, d1, d2);
    push();
    auto r = collect(1);
    EXPECT_EQ(r.size(), 1u);
    if (r.empty()) return CtrlResponse{0, 0, 0xdead, 0};
    EXPECT_EQ(r[0].id, id);
    EXPECT_EQ(r[0].type, type);
    return r[0];
  }
  std::uint32_t status(std::uint16_t type, std::uint32_t d0 = 0, std::uint32_t d1 = 0, std::uint32_t d2 = 0) {
    return call(type, d0, d1, d2).status;
  }

  // A page of the frontend's, granted read-only to the backend, holding `bytes`.
  grant::SharedPages page_with(const void* bytes, std::size_t len) {
    auto pages = sharer->share(0, 1, Access::ReadOnly);
    EXPECT_TRUE(pages);
    if (!pages) return {};
    std::memcpy(pages->data(), bytes, len);
    return std::move(*pages);
  }
  grant::SharedPages mapping_page(const std::vector<std::uint32_t>& entries) {
    return page_with(entries.data(), entries.size() * sizeof(std::uint32_t));
  }

  void enable_toeplitz() { ASSERT_EQ(status(kCtrlTypeSetHashAlgorithm, kHashAlgorithmToeplitz), kCtrlStatusSuccess); }

  std::unique_ptr<grant::Platform> fe_platform, be_platform;
  std::unique_ptr<grant::GrantSharer> sharer;
  std::unique_ptr<grant::EventChannels> channels;
  grant::SharedPages ring_page;
  CtrlRing::Front front;
  EvtchnPort port = 0;
  std::unique_ptr<netback::VifShared> shared;
  std::unique_ptr<netback::ControlRing> ctrl;
  std::thread runner;
  std::atomic<bool> run_returned{false};
  std::atomic<int> fatal_calls{0};
  int fatal_error = 0;
  std::string fatal_reason;
  std::uint16_t next_id = 100;
};

TEST_F(ControlRingTest, HashAlgorithm) {
  start();
  EXPECT_EQ(status(kCtrlTypeSetHashAlgorithm, 2), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashAlgorithm, 0xffffffff), kCtrlStatusInvalidParameter);
  EXPECT_EQ(shared->hash().algorithm, kHashAlgorithmNone);
  EXPECT_EQ(status(kCtrlTypeSetHashAlgorithm, kHashAlgorithmToeplitz), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().algorithm, kHashAlgorithmToeplitz);
  EXPECT_EQ(status(kCtrlTypeSetHashAlgorithm, kHashAlgorithmNone), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().algorithm, kHashAlgorithmNone);
  EXPECT_EQ(fatal_calls, 0);
}

TEST_F(ControlRingTest, HashFlagsNeedAnAlgorithm) {
  start();
  // netif.h: a valid algorithm must be selected before GET/SET_HASH_FLAGS succeed.
  auto r = call(kCtrlTypeGetHashFlags);
  EXPECT_EQ(r.status, kCtrlStatusNotSupported);
  EXPECT_EQ(r.data, 0u);
  EXPECT_EQ(status(kCtrlTypeSetHashFlags, kHashTypeIpv4), kCtrlStatusInvalidParameter);
  enable_toeplitz();
  r = call(kCtrlTypeGetHashFlags);
  EXPECT_EQ(r.status, kCtrlStatusSuccess);
  EXPECT_EQ(r.data, kHashTypeAll);
  const auto g = shared->generation();
  EXPECT_EQ(status(kCtrlTypeSetHashFlags, 1u << 4), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashFlags, kHashTypeAll | 0x80000000u), kCtrlStatusInvalidParameter);
  EXPECT_EQ(shared->generation(), g);  // refusals change nothing
  EXPECT_EQ(status(kCtrlTypeSetHashFlags, kHashTypeIpv4 | kHashTypeIpv6Tcp), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().flags, kHashTypeIpv4 | kHashTypeIpv6Tcp);
  EXPECT_GT(shared->generation(), g);
  EXPECT_EQ(status(kCtrlTypeSetHashFlags, 0), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().flags, 0u);
}

TEST_F(ControlRingTest, HashKey) {
  start();
  std::uint8_t key[40];
  for (int i = 0; i < 40; ++i) key[i] = static_cast<std::uint8_t>(0xa0 + i);
  auto page = page_with(key, sizeof(key));
  EXPECT_EQ(status(kCtrlTypeSetHashKey, page.refs()[0], 40), kCtrlStatusSuccess);
  auto h = shared->hash();
  EXPECT_EQ(h.key_len, 40u);
  EXPECT_EQ(0, std::memcmp(h.key.data(), key, 40));

  // A shorter key replaces the whole key: the rest is zero.
  std::uint8_t short_key[10];
  std::memset(short_key, 0x5c, sizeof(short_key));
  auto page2 = page_with(short_key, sizeof(short_key));
  EXPECT_EQ(status(kCtrlTypeSetHashKey, page2.refs()[0], 10), kCtrlStatusSuccess);
  h = shared->hash();
  EXPECT_EQ(h.key_len, 10u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(h.key[i], i < 10 ? 0x5c : 0) << i;

  // Refused: too long, bad grant refs. The key stays.
  const auto g = shared->generation();
  EXPECT_EQ(status(kCtrlTypeSetHashKey, page.refs()[0], 41), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashKey, page.refs()[0], 0xffffffff), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashKey, 0xffffffu, 40), kCtrlStatusInvalidParameter);
  const GrantRef gone = page.refs()[0];
  page.reset();  // access ended: the ref no longer grants anything
  EXPECT_EQ(status(kCtrlTypeSetHashKey, gone, 40), kCtrlStatusInvalidParameter);
  EXPECT_EQ(shared->generation(), g);
  h = shared->hash();
  EXPECT_EQ(h.key_len, 10u);
  EXPECT_EQ(h.key[0], 0x5c);

  // Length 0 clears the key; the grant is not even looked at.
  EXPECT_EQ(status(kCtrlTypeSetHashKey, 0xffffffu, 0), kCtrlStatusSuccess);
  h = shared->hash();
  EXPECT_EQ(h.key_len, 0u);
  for (auto b : h.key) EXPECT_EQ(b, 0);
}

TEST_F(ControlRingTest, HashMappingSize) {
  start();
  auto r = call(kCtrlTypeGetHashMappingSize);
  EXPECT_EQ(r.status, kCtrlStatusSuccess);
  EXPECT_EQ(r.data, kMaxHashMappingSize);
  EXPECT_EQ(status(kCtrlTypeSetHashMappingSize, kMaxHashMappingSize + 1), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMappingSize, 0xffffffff), kCtrlStatusInvalidParameter);
  EXPECT_EQ(shared->hash().mapping_size, 0u);
  EXPECT_EQ(status(kCtrlTypeSetHashMappingSize, kMaxHashMappingSize), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().mapping_size, kMaxHashMappingSize);

  // A new size invalidates the table: zero-filled.
  std::vector<std::uint32_t> all(kMaxHashMappingSize, 3);
  auto page = mapping_page(all);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, page.refs()[0], kMaxHashMappingSize, 0), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().mapping[127], 3u);
  EXPECT_EQ(status(kCtrlTypeSetHashMappingSize, 16), kCtrlStatusSuccess);
  auto h = shared->hash();
  EXPECT_EQ(h.mapping_size, 16u);
  for (auto m : h.mapping) EXPECT_EQ(m, 0u);
  EXPECT_EQ(status(kCtrlTypeSetHashMappingSize, 0), kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().mapping_size, 0u);
}

TEST_F(ControlRingTest, HashMapping) {
  start();
  ASSERT_EQ(status(kCtrlTypeSetHashMappingSize, 8), kCtrlStatusSuccess);
  // data[1] = entries, data[2] = offset in entries (netif.h); the sub-table starts at the
  // beginning of the grant.
  auto full = mapping_page({0, 1, 2, 3, 3, 2, 1, 0});
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, full.refs()[0], 8, 0), kCtrlStatusSuccess);
  auto h = shared->hash();
  EXPECT_EQ(std::vector<std::uint32_t>(h.mapping.begin(), h.mapping.begin() + 8),
            (std::vector<std::uint32_t>{0, 1, 2, 3, 3, 2, 1, 0}));

  // A sub-table leaves the rest of the table alone.
  auto sub = mapping_page({2, 2, 2});
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, sub.refs()[0], 3, 4), kCtrlStatusSuccess);
  h = shared->hash();
  EXPECT_EQ(std::vector<std::uint32_t>(h.mapping.begin(), h.mapping.begin() + 8),
            (std::vector<std::uint32_t>{0, 1, 2, 3, 2, 2, 2, 0}));

  const auto g = shared->generation();
  const GrantRef ref = sub.refs()[0];
  // Out of the table (size 8), including sums that would wrap a 32-bit offset + size.
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 3, 6), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 9, 0), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 1, 8), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 1, 0xffffffff), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 0xffffffff, 1), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 0xffffffff, 0xffffffff), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, ref, 2, 0xfffffffe), kCtrlStatusInvalidParameter);
  // An entry naming a queue the vif does not have: nothing is applied, not even the good entries
  // before it (XSA-270).
  auto bad = mapping_page({1, 1, kQueues, 1});
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, bad.refs()[0], 4, 0), kCtrlStatusInvalidParameter);
  auto huge = mapping_page({0xffffffff});
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, huge.refs()[0], 1, 7), kCtrlStatusInvalidParameter);
  // Bad grant refs.
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, 0xffffffu, 2, 0), kCtrlStatusInvalidParameter);
  const GrantRef gone = full.refs()[0];
  full.reset();
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, gone, 2, 0), kCtrlStatusInvalidParameter);
  EXPECT_EQ(shared->generation(), g);
  h = shared->hash();
  EXPECT_EQ(h.mapping_size, 8u);
  EXPECT_EQ(std::vector<std::uint32_t>(h.mapping.begin(), h.mapping.begin() + 8),
            (std::vector<std::uint32_t>{0, 1, 2, 3, 2, 2, 2, 0}));

  // Empty sub-tables within the table are fine and change nothing.
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, 0xffffffu, 0, 8), kCtrlStatusSuccess);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, 0xffffffu, 0, 9), kCtrlStatusInvalidParameter);
}

TEST_F(ControlRingTest, MappingWithoutATableIsRefused) {
  start();
  auto page = mapping_page({0});
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, page.refs()[0], 1, 0), kCtrlStatusInvalidParameter);
  EXPECT_EQ(status(kCtrlTypeSetHashMapping, page.refs()[0], 0, 0), kCtrlStatusSuccess);
}

TEST_F(ControlRingTest, UnsupportedAndUnknownTypes) {
  start();
  for (std::uint16_t type : {kCtrlTypeInvalid, kCtrlTypeGetGrefMappingSize, kCtrlTypeAddGrefMapping,
                             kCtrlTypeDelGrefMapping, std::uint16_t{11}, std::uint16_t{0xffff}}) {
    auto r = call(type, 1, 2, 3);
    EXPECT_EQ(r.status, kCtrlStatusNotSupported) << type;
    EXPECT_EQ(r.data, 0u) << type;
  }
  EXPECT_EQ(fatal_calls, 0);
}

TEST_F(ControlRingTest, ABatchIsAnsweredInOrder) {
  start();
  const std::uint16_t first = next_id;
  std::uint8_t key[4] = {1, 2, 3, 4};
  auto key_page = page_with(key, 4);
  put(kCtrlTypeSetHashAlgorithm, kHashAlgorithmToeplitz);
  put(kCtrlTypeSetHashFlags, kHashTypeAll);
  put(kCtrlTypeSetHashKey, key_page.refs()[0], 4);
  put(kCtrlTypeSetHashMappingSize, 4);
  for (int i = 0; i < 100; ++i) put(kCtrlTypeGetHashMappingSize);
  push();
  auto r = collect(104);
  ASSERT_EQ(r.size(), 104u);
  for (std::size_t i = 0; i < r.size(); ++i) {
    EXPECT_EQ(r[i].id, static_cast<std::uint16_t>(first + i));
    EXPECT_EQ(r[i].status, kCtrlStatusSuccess) << i;
  }
  auto h = shared->hash();
  EXPECT_EQ(h.algorithm, kHashAlgorithmToeplitz);
  EXPECT_EQ(h.flags, kHashTypeAll);
  EXPECT_EQ(h.key_len, 4u);
  EXPECT_EQ(h.key[3], 4);
  EXPECT_EQ(h.mapping_size, 4u);
}

TEST_F(ControlRingTest, RequestsQueuedBeforeTheBackendStartsAreServed) {
  put(kCtrlTypeSetHashAlgorithm, kHashAlgorithmToeplitz);
  front.push_requests();  // nobody bound yet: no notification
  start();
  auto r = collect(1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, kCtrlStatusSuccess);
  EXPECT_EQ(shared->hash().algorithm, kHashAlgorithmToeplitz);
}

TEST_F(ControlRingTest, ResponsesWrapTheRing) {
  start();
  enable_toeplitz();
  for (int i = 0; i < 3 * static_cast<int>(kCtrlRingSize); ++i) {
    auto r = call(kCtrlTypeGetHashFlags);
    ASSERT_EQ(r.status, kCtrlStatusSuccess) << i;
  }
}

TEST_F(ControlRingTest, ProducerOverflowIsFatal) {
  start();
  enable_toeplitz();
  // The frontend claims more requests than the ring holds.
  auto* req_prod = reinterpret_cast<std::uint32_t*>(ring_page.data());
  __atomic_store_n(req_prod, front.req_prod_pvt() + kCtrlRingSize + 1, __ATOMIC_RELEASE);
  channels->notify(port);
  ASSERT_TRUE(eventually([&] { return fatal_calls.load() == 1; }));
  EXPECT_EQ(fatal_error, ring::kErrProducerOverflow);
  EXPECT_NE(fatal_reason.find("overflow"), std::string::npos);
  ASSERT_TRUE(eventually([&] { return run_returned.load(); }));
  EXPECT_EQ(fatal_calls, 1);
  EXPECT_EQ(shared->hash().algorithm, kHashAlgorithmToeplitz);
}

TEST_F(ControlRingTest, ProducerIndexMovingBackwardsIsFatal) {
  start();
  enable_toeplitz();
  auto* req_prod = reinterpret_cast<std::uint32_t*>(ring_page.data());
  __atomic_store_n(req_prod, front.req_prod_pvt() - 1, __ATOMIC_RELEASE);
  channels->notify(port);
  ASSERT_TRUE(eventually([&] { return fatal_calls.load() == 1; }));
  ASSERT_TRUE(eventually([&] { return run_returned.load(); }));
}

TEST_F(ControlRingTest, CreateRefusesBadRefsAndAttachABrokenRing) {
  {
    netback::ControlRingConfig config;
    config.name = "vif 1/0 ctrl";
    config.frontend_domid = 1;
    config.ring_ref = 0xffffffu;
    config.event_channel = port;
    auto be = platform(0);
    auto c = netback::ControlRing::create(be, config, *shared, nullptr);
    EXPECT_FALSE(c);
  }
  {
    auto* req_prod = reinterpret_cast<std::uint32_t*>(ring_page.data());
    __atomic_store_n(req_prod, kCtrlRingSize + 1, __ATOMIC_RELEASE);
    netback::ControlRingConfig config;
    config.name = "vif 1/0 ctrl";
    config.frontend_domid = 1;
    config.ring_ref = ring_page.refs()[0];
    config.event_channel = port;
    auto be = platform(0);
    auto c = netback::ControlRing::create(be, config, *shared, nullptr);
    ASSERT_TRUE(c) << "create() reads nothing of the ring";
    EXPECT_EQ((*c)->attach(), ring::kErrProducerOverflow);
  }
}

TEST_F(ControlRingTest, StopBeforeAndWhileRunning) {
  start(false);
  ctrl->stop();
  ctrl->run();  // returns at once
  ctrl.reset();
  start();
  EXPECT_EQ(status(kCtrlTypeGetHashMappingSize), kCtrlStatusSuccess);
  stop();
  EXPECT_TRUE(run_returned);
}

}  // namespace
}  // namespace pvback::test
