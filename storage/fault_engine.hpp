// An engine that wraps another and misbehaves on purpose, for deterministic tests of everything
// above the seam: each operation waits a latency drawn from a seeded generator (so completions
// come back out of order), chosen ranges fail with a chosen errno, chosen transfers come back
// short, and stall() holds every new operation until resume(). The data itself is the inner
// engine's: nothing here invents contents.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <vector>

#include "base/unique_fd.hpp"
#include "storage/engine.hpp"

namespace pvback::storage {

constexpr std::uint32_t op_bit(Op op) { return 1u << static_cast<unsigned>(op); }
constexpr std::uint32_t kAllOps = 0x3f;

struct FaultRule {
  std::uint32_t ops = kAllOps;           // which operations (op_bit mask)
  std::uint64_t offset = 0;              // byte range; an operation overlapping it matches
  std::uint64_t length = UINT64_MAX;
  std::uint32_t every = 1;               // the 1st, (1+every)th, ... matching operation
  std::chrono::microseconds delay{0};    // waits this much longer before it starts
  int error = 0;                         // fail with this errno without running it; or
  std::uint32_t short_bytes = 0;         // a Read/Write reports at most this many bytes (the
                                         // caller must continue with the rest)
};

struct FaultPlan {
  std::chrono::microseconds min_latency{0};
  std::chrono::microseconds max_latency{0};  // uniform in [min, max] per operation
  std::uint64_t seed = 1;
  std::vector<FaultRule> rules;              // the first rule that matches applies
};

class FaultEngine final : public Engine {
 public:
  FaultEngine(std::unique_ptr<Engine> inner, FaultPlan plan);

  const Capabilities& capabilities() const override { return inner_->capabilities(); }
  std::uint64_t sectors() const override { return inner_->sectors(); }
  bool refresh_size() override { return inner_->refresh_size(); }
  std::string describe() const override { return "fault-injecting " + inner_->describe(); }
  const char* kind() const override { return inner_->kind(); }
  std::expected<std::unique_ptr<Channel>, int> open_channel(Loop& loop) override;
  const Engine& inner() const { return *inner_; }
  Engine& inner() { return *inner_; }

  // Thread-safe. While stalled, operations submitted are held; resume() starts them.
  void stall();
  void resume();

  // What was injected so far (all channels).
  std::uint64_t delayed() const { return delayed_.load(); }
  std::uint64_t failed() const { return failed_.load(); }
  std::uint64_t shortened() const { return shortened_.load(); }
  std::uint64_t held() const { return held_.load(); }

 private:
  friend class FaultChannel;
  std::unique_ptr<Engine> inner_;
  FaultPlan plan_;
  std::atomic<bool> stalled_{false};
  std::mutex channels_mutex_;
  std::vector<int> resume_fds_;  // one eventfd per channel
  std::atomic<std::uint64_t> delayed_{0}, failed_{0}, shortened_{0}, held_{0};
  std::atomic<std::uint32_t> channels_opened_{0};
};

}  // namespace pvback::storage
