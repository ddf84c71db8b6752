// A verifying workload on every queue of a userspace blkfront while the test disturbs the backend
// (SIGKILLs of whichever process it chooses, at random moments): writes, reads that check what the
// last acknowledged write of each block left, flushes and discards, several in flight on each
// queue, so that completions come back out of order and a kill finds requests in every state.
// The blkfront is the judge of "exactly once": an answer to an id it is not waiting for puts its
// queue in EPROTO ("bad id"), a completion for a tag never submitted or already completed fails
// here, and a lost request never completes (the progress check). Shared by VbdRandomKillTest
// (pvback-blk on its own) and HostRandomKillTest (the host daemon, pvback-supervisor).
//
// It also keeps when each queue's completions were reaped, so that a test can report the pause a
// guest saw at each disturbance (the longest gap between consecutive completions of a queue that
// the queues keep `depth` deep), for bench/blk_kill_pause.sh. Timings are reported, never asserted.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "blkfront/blkfront.hpp"
#include "tests/support/fill_pattern.hpp"
#include "tests/support/stop_and_join.hpp"

namespace pvback::test {

class VerifyingWorkload {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    std::uint64_t blocks = 1024;  // 4 KiB blocks under test, from the start of the disk
    std::size_t depth = 8;        // requests kept in flight per queue
    std::uint64_t seed = 20261206;
    std::chrono::seconds stall_limit{30};  // no answer for this long: a request was lost
  };
  // One disturbance, round `k` (from 0): kill something and wait until the device serves again.
  // Runs on a thread of its own while the workload goes on. False ends the disturbances early
  // (the caller's count of them then fails the test, or the progress check does).
  using Disturb = std::function<bool(int k)>;

  // PVBACK_KILL_ROUNDS, or `fallback`.
  static int rounds_from_env(int fallback) {
    const char* env = std::getenv("PVBACK_KILL_ROUNDS");
    return env != nullptr ? std::atoi(env) : fallback;
  }

  VerifyingWorkload(blkfront::BlkFront& front, Options options)
      : front_(front), o_(options), version_(o_.blocks, 0), busy_(o_.blocks, false), rng_(o_.seed),
        reaped_(front.num_queues()) {}

  // `rounds` disturbances 20 to 140 ms apart while this thread keeps every queue busy; returns
  // once they have ended and every request has been answered. Failures are gtest's (fatal ones
  // return early: the caller checks HasFatalFailure()).
  void run(int rounds, const Disturb& disturb) {
    discard_ = front_.negotiated().discard;
    std::atomic<bool> done{false};
    std::thread disturber;
    StopAndJoin join_on_exit(done, disturber);  // a failed assertion returns from here
    disturber = std::thread([&] {
      std::mt19937 krng(7);
      for (int k = 0; k < rounds && !done.load(); ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20 + krng() % 120));
        const auto from = Clock::now();
        if (!disturb(k)) break;
        windows_.push_back({from, Clock::now()});
        disturbed_.fetch_add(1);
      }
      done.store(true);
    });
    auto last_progress = Clock::now();
    while (!done.load() || !pending_.empty()) {
      for (unsigned qi = 0; qi < front_.num_queues(); ++qi) {
        if (!done.load()) submit_some(qi);
        if (::testing::Test::HasFatalFailure()) return;
        ASSERT_EQ(front_.queue(qi).kick(), 0);
        const auto before = completed_;
        front_.queue(qi).wait(std::chrono::milliseconds(2));
        reap(qi);
        if (::testing::Test::HasFatalFailure()) return;
        ASSERT_EQ(front_.queue(qi).error(), 0) << "queue " << qi << " saw a bad answer";
        if (completed_ != before) last_progress = Clock::now();
      }
      ASSERT_LT(Clock::now() - last_progress, o_.stall_limit)
          << pending_.size() << " request(s) never answered after " << disturbed_.load() << " disturbance(s)";
    }
    done.store(true);
    disturber.join();
  }

  // The whole area once more, as the last acknowledged operations left it.
  void verify_disk() {
    std::vector<std::byte> all(o_.blocks * 4096);
    ASSERT_EQ(front_.read(0, all), 0);
    for (std::uint64_t b = 0; b < o_.blocks; ++b) {
      const auto want = expected_block(b);
      ASSERT_TRUE(std::equal(want.begin(), want.end(), all.begin() + static_cast<std::ptrdiff_t>(b * 4096)))
          << "block " << b;
    }
  }

  // Disturbances that returned true.
  int disturbances() const { return static_cast<int>(windows_.size()); }
  std::uint64_t completed() const { return completed_; }

  // Per disturbance: the longest gap between consecutive completions of a queue that overlaps it
  // (from just before the kill to the return of its Disturb, when the device served again), in ms.
  std::vector<double> pauses_ms() const {
    std::vector<double> out;
    for (const auto& w : windows_) out.push_back(longest_gap_ms([&](Clock::time_point a, Clock::time_point b) {
      return b > w.from && a < w.to;
    }));
    return out;
  }
  // The longest gap that overlaps no disturbance: what the workload sees anyway.
  double longest_gap_elsewhere_ms() const {
    return longest_gap_ms([&](Clock::time_point a, Clock::time_point b) {
      return std::ranges::none_of(windows_, [&](const Window& w) { return b > w.from && a < w.to; });
    });
  }
  // With PVBACK_REPORT_PAUSE set (bench/blk_kill_pause.sh): a line "pause: N ms ... (what)" per
  // disturbance and the longest gap elsewhere.
  void report_pauses(const std::string& what) const {
    if (std::getenv("PVBACK_REPORT_PAUSE") == nullptr) return;
    const auto pauses = pauses_ms();
    for (std::size_t k = 0; k < pauses.size(); ++k)
      std::printf("pause: %.1f ms longest gap between completions across SIGKILL %zu (%s)\n", pauses[k], k + 1,
                  what.c_str());
    std::printf("elsewhere: %.1f ms longest gap between completions away from the kills (%s)\n",
                longest_gap_elsewhere_ms(), what.c_str());
  }

 private:
  enum class Op { Write, Read, Flush, Discard };
  struct Pending {
    Op op;
    std::uint64_t block = 0, count = 0, new_version = 0;
    std::vector<std::byte> buf;
  };
  struct Window {
    Clock::time_point from, to;
  };

  void submit_some(unsigned qi) {
    auto& q = front_.queue(qi);
    while (q.in_flight() < o_.depth) {
      Pending p;
      const unsigned pick = static_cast<unsigned>(rng_() % 100);
      p.op = pick < 45 ? Op::Write : pick < 85 ? Op::Read : pick < 93 || !discard_ ? Op::Flush : Op::Discard;
      if (p.op != Op::Flush) {
        p.count = 1 + rng_() % 4;
        p.block = rng_() % (o_.blocks - p.count);
        bool free = true;
        for (std::uint64_t b = p.block; b < p.block + p.count; ++b) free = free && !busy_[b];
        if (!free) return;
        p.buf.resize(p.count * 4096);
      }
      const std::uint64_t tag = next_tag_++;
      const std::uint64_t sector = p.block * 8;
      int rc = 0;
      switch (p.op) {
        case Op::Write:
          p.new_version = next_version_++;
          for (std::uint64_t i = 0; i < p.count; ++i)
            fill_pattern(std::span(p.buf).subspan(i * 4096, 4096), (p.block + i) * 8, p.new_version);
          rc = q.submit_write(sector, p.buf, tag);
          break;
        case Op::Read:
          rc = q.submit_read(sector, p.buf, tag);
          break;
        case Op::Flush:
          rc = q.submit_flush(tag);
          break;
        case Op::Discard:
          rc = q.submit_discard(sector, p.count * 8, false, tag);
          break;
      }
      if (rc == EAGAIN) return;
      ASSERT_EQ(rc, 0);
      for (std::uint64_t b = p.block; b < p.block + p.count; ++b) busy_[b] = true;
      pending_.emplace(tag, std::move(p));
    }
  }

  // What block `block` holds after the last acknowledged operation on it (0: zeros).
  std::vector<std::byte> expected_block(std::uint64_t block) const {
    std::vector<std::byte> want(4096);
    if (version_[block] != 0) fill_pattern(want, block * 8, version_[block]);
    return want;
  }

  void reap(unsigned qi) {
    blkfront::Completion c[32];
    const std::size_t n = front_.queue(qi).poll(c);
    if (n > 0) reaped_[qi].push_back(Clock::now());
    for (std::size_t i = 0; i < n; ++i) {
      auto it = pending_.find(c[i].tag);
      ASSERT_NE(it, pending_.end()) << "completion for a tag never submitted or already completed";
      ASSERT_EQ(c[i].error, 0) << "tag " << c[i].tag;
      Pending& p = it->second;
      for (std::uint64_t b = p.block; b < p.block + p.count; ++b) {
        busy_[b] = false;
        if (p.op == Op::Write) version_[b] = p.new_version;
        if (p.op == Op::Discard) version_[b] = 0;
        if (p.op == Op::Read) {
          const auto want = expected_block(b);
          ASSERT_TRUE(std::equal(want.begin(), want.end(),
                                 p.buf.begin() + static_cast<std::ptrdiff_t>((b - p.block) * 4096)))
              << "block " << b << " read back other data than its last acknowledged write";
        }
      }
      pending_.erase(it);
      ++completed_;
    }
  }

  // The longest gap between consecutive reaps of one queue among those `counts`, in ms.
  template <typename Pred>
  double longest_gap_ms(Pred counts) const {
    Clock::duration longest{};
    for (const auto& times : reaped_)
      for (std::size_t i = 1; i < times.size(); ++i)
        if (counts(times[i - 1], times[i])) longest = std::max(longest, times[i] - times[i - 1]);
    return std::chrono::duration<double, std::milli>(longest).count();
  }

  blkfront::BlkFront& front_;
  Options o_;
  bool discard_ = false;
  // The disk as the guest knows it: the version of the last acknowledged write of each block
  // (0: zeros). A block with a request in flight is busy: nothing else touches it meanwhile.
  std::vector<std::uint64_t> version_;
  std::vector<bool> busy_;
  std::map<std::uint64_t, Pending> pending_;  // by tag
  std::mt19937_64 rng_;
  std::uint64_t next_tag_ = 1, next_version_ = 1, completed_ = 0;
  std::vector<std::vector<Clock::time_point>> reaped_;  // per queue: when completions were reaped
  std::vector<Window> windows_;  // written by the disturbing thread, read once it has ended
  std::atomic<int> disturbed_{0};  // windows_.size(), for the main thread meanwhile
};

}  // namespace pvback::test
