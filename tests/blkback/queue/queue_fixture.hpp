// A Queue (domain 0) served on its own thread against a raw test frontend (domain 1) on the
// simulated hypervisor, with a temp file in /tmp as storage.
#pragma once
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "blkback/queue.hpp"
#include "storage/fault_engine.hpp"
#include "storage/file_engine.hpp"
#include "ring/blkif.hpp"
#include "tests/grant/sim_fixture.hpp"
#include "tests/support/eventually.hpp"
#include "tests/support/temp_file.hpp"

namespace pvback::test {

using blkback::Abi;
using blkback::DataPath;

// The two guest ABIs as types (namespaces cannot be template arguments).
struct X32 {
  using Request = blkif::x86_32::Request;
  using Response = blkif::x86_32::Response;
  using FrontRing = blkif::x86_32::FrontRing;
};
struct X64 {
  using Request = blkif::x86_64::Request;
  using Response = blkif::x86_64::Response;
  using FrontRing = blkif::x86_64::FrontRing;
};

// The frontend's end of one ring in ABI Ns (X32 or X64).
template <class Ns>
struct RawFrontend {
  using Request = typename Ns::Request;
  using Response = typename Ns::Response;

  RawFrontend(const grant::Platform& platform, unsigned order)
      : sharer(platform.open_sharer()), channels(platform.open_event_channels()) {
    auto pages = sharer->share(0, 1u << order, Access::ReadWrite);
    if (!pages) throw std::runtime_error("share ring");
    ring_pages = std::move(*pages);
    auto f = Ns::FrontRing::initialise(ring_pages.data(), ring_pages.pages());
    if (!f) throw std::runtime_error("init ring");
    front = *f;
    auto p = channels->alloc_unbound(0);
    if (!p) throw std::runtime_error("alloc_unbound");
    port = *p;
  }

  grant::SharedPages share(std::uint32_t count, Access access = Access::ReadWrite) {
    auto pages = sharer->share(0, count, access);
    if (!pages) throw std::runtime_error("share data");
    return std::move(*pages);
  }

  void put(const Request& r) { front.put_request(r); }
  void push() {
    if (front.push_requests_and_check_notify()) channels->notify(port);
  }

  // Collects `n` responses (fewer on timeout or a broken ring).
  std::vector<Response> collect(std::size_t n, int timeout_ms = 20000) {
    std::vector<Response> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n) {
      auto more = front.unconsumed_responses();
      if (!more) break;
      for (ring::RingIdx i = 0; i < *more; ++i) out.push_back(front.next_response());
      if (out.size() >= n) break;
      auto again = front.final_check_for_responses();
      if (!again) break;
      if (*again) continue;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !wait_readable(channels->fd(), static_cast<int>(left.count()))) break;
      if (auto p = channels->pending()) channels->unmask(*p);
    }
    return out;
  }

  std::unique_ptr<grant::GrantSharer> sharer;
  std::unique_ptr<grant::EventChannels> channels;
  grant::SharedPages ring_pages;
  typename Ns::FrontRing front;
  EvtchnPort port = 0;
};

template <class Ns>
typename Ns::Request rw_request(std::uint8_t op, std::uint64_t id, std::uint64_t sector,
                                const std::vector<blkif::Segment>& segs) {
  typename Ns::Request r{};
  r.rw.operation = op;
  r.rw.nr_segments = static_cast<std::uint8_t>(segs.size());
  r.rw.handle = 0;
  r.rw.id = id;
  r.rw.sector_number = sector;
  for (std::size_t i = 0; i < segs.size() && i < blkif::kMaxSegmentsPerRequest; ++i) r.rw.seg[i] = segs[i];
  return r;
}

// Writes `segs` into freshly shared indirect pages (kept alive in `keep`) and builds the request.
template <class Ns>
typename Ns::Request indirect_request(RawFrontend<Ns>& fe, std::vector<grant::SharedPages>& keep, std::uint8_t op,
                                      std::uint64_t id, std::uint64_t sector, const std::vector<blkif::Segment>& segs) {
  const std::uint32_t pages =
      static_cast<std::uint32_t>((segs.size() + blkif::kSegmentsPerIndirectPage - 1) / blkif::kSegmentsPerIndirectPage);
  keep.push_back(fe.share(std::max(1u, pages), Access::ReadOnly));
  grant::SharedPages& ind = keep.back();
  if (!segs.empty()) std::memcpy(ind.data(), segs.data(), segs.size() * sizeof(blkif::Segment));
  typename Ns::Request r{};
  r.indirect.operation = blkif::kOpIndirect;
  r.indirect.indirect_op = op;
  r.indirect.nr_segments = static_cast<std::uint16_t>(segs.size());
  r.indirect.id = id;
  r.indirect.sector_number = sector;
  for (std::uint32_t p = 0; p < pages && p < blkif::kMaxIndirectPagesPerRequest; ++p)
    r.indirect.indirect_grefs[p] = ind.refs()[p];
  return r;
}

class QueueTest : public SimHypervisorTest {
 protected:
  struct Options {
    Abi abi = Abi::X86_64;
    unsigned order = 0;
    DataPath path = DataPath::Map;
    bool persistent = false;
    bool read_only = false;
    bool direct = true;
    std::uint64_t disk_bytes = 64ull << 20;
    std::function<void(blkback::QueueConfig&)> tweak;
    // Set: the file is served through a FaultEngine with this plan (`faults` points at it).
    std::optional<storage::FaultPlan> fault_plan;
  };

  // Starts storage + queue for a frontend already created; false on failure.
  template <class Ns>
  void start(RawFrontend<Ns>& fe, const Options& o) {
    file = std::make_unique<TempFile>(o.disk_bytes);
    storage::FileOptions so;
    so.path = file->path;
    so.read_only = o.read_only;
    so.allow_direct = o.direct;
    auto st = storage::FileEngine::open(so);
    ASSERT_TRUE(st) << std::strerror(st.error());
    engine = std::move(*st);
    faults = nullptr;
    if (o.fault_plan) {
      auto wrapped = std::make_unique<storage::FaultEngine>(std::move(engine), *o.fault_plan);
      faults = wrapped.get();
      engine = std::move(wrapped);
    }
    blkback::QueueConfig config;
    config.name = "vbd 1/51712 q0";
    config.frontend_domid = 1;
    config.abi = o.abi;
    config.ring_refs.assign(fe.ring_pages.refs().begin(), fe.ring_pages.refs().end());
    config.remote_port = fe.port;
    config.data_path = o.path;
    config.persistent_grants = o.persistent;
    config.discard_enabled = true;
    if (o.tweak) o.tweak(config);
    auto q = blkback::Queue::create(platform(0), *engine, config, stats, [this](int err, const std::string& why) {
      fatal_error = err;
      fatal_reason = why;
      fatal_calls.fetch_add(1);
    });
    ASSERT_TRUE(q) << std::strerror(q.error());
    queue = std::move(*q);
    runner = std::thread([this] {
      queue->run();
      run_returned = true;
    });
  }

  void stop_queue() {
    if (queue) {
      queue->stop();
      if (runner.joinable()) runner.join();
      queue.reset();
    }
  }

  void TearDown() override {
    stop_queue();
    engine.reset();
    file.reset();
    SimHypervisorTest::TearDown();
  }

  std::unique_ptr<TempFile> file;
  std::unique_ptr<storage::Engine> engine;
  storage::FaultEngine* faults = nullptr;  // engine, when it injects faults
  blkback::QueueStats stats;
  std::unique_ptr<blkback::Queue> queue;
  std::thread runner;
  std::atomic<bool> run_returned{false};
  std::atomic<int> fatal_calls{0};
  int fatal_error = 0;
  std::string fatal_reason;
};

inline void fill_random(std::byte* p, std::size_t n, std::mt19937_64& rng) {
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>(rng());
}

}  // namespace pvback::test
