// XSA-332's class: a guest can notify its event channel in a tight loop and keep a backend thread
// busy. A wake-up that finds no new work is spurious. After kGrace of them in a row (a
// well-behaved frontend, which notifies only with new work, makes at most one now and then) the
// event channel is left masked for a while before it is unmasked again: 1 ms more per further
// spurious wake-up, up to kMaxMaskMs. A storming guest then costs about 1000 / kMaxMaskMs
// wake-ups a second; any wake-up that finds work ends it. The policy of every pvback queue (blk
// and net); each applies it with its own loop's timer.
#pragma once
#include <algorithm>
#include <cstdint>

namespace pvback::grant {

class SpuriousWakeups {
 public:
  static constexpr std::uint32_t kGrace = 16;
  static constexpr std::uint32_t kMaxMaskMs = 100;

  void work_found() { streak_ = 0; }
  // A wake-up found nothing. True once past the grace: count it as spurious.
  bool nothing_found() { return ++streak_ > kGrace; }
  // How long to leave the channel masked after this wake-up; 0: unmask it at once.
  std::uint32_t mask_ms() const { return streak_ < kGrace ? 0 : std::min(streak_ - kGrace + 1, kMaxMaskMs); }
  // The first wake-up that is masked (the one to log).
  bool masking_starts() const { return streak_ == kGrace; }
  std::uint32_t streak() const { return streak_; }

 private:
  std::uint32_t streak_ = 0;
};

}  // namespace pvback::grant
