// Logging to stderr in the form journald keeps: a "<N>" syslog-priority prefix per line
// (journald's SyslogLevelPrefix), then the component and, for device errors, domid/devid.
//
//   PVBACK_LOG(Error, "vbd 5/768: grant ref %u not mapped: %s", ref, strerror(err));
//
// RateLimit caps how often one call site may log (a buggy or malicious frontend must not be able
// to flood Dom0's journal), and reports how many lines it suppressed.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>

namespace pvback::log {

enum class Level : int { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void set_program(const char* name);   // prefix after the priority, e.g. "pvback-blk"
void set_min_level(Level level);      // default Info; PVBACK_LOG_LEVEL=debug|info|... overrides
bool enabled(Level level);
[[gnu::format(printf, 2, 3)]] void write(Level level, const char* fmt, ...);

// Allows `burst` lines per `interval`; the first line after a suppressed stretch says how many
// were dropped. Thread-safe, lock-free.
class RateLimit {
 public:
  explicit RateLimit(std::chrono::milliseconds interval = std::chrono::seconds(5), std::uint32_t burst = 10)
      : interval_ns_(std::chrono::nanoseconds(interval).count()), burst_(burst) {}
  // True if this line may be written; *suppressed receives how many lines were dropped before it.
  bool allow(std::uint64_t* suppressed);

 private:
  std::int64_t interval_ns_;
  std::uint32_t burst_;
  std::atomic<std::int64_t> window_start_{0};
  std::atomic<std::uint32_t> in_window_{0};
  std::atomic<std::uint64_t> suppressed_{0};
};

}  // namespace pvback::log

#define PVBACK_LOG(level, ...)                                                        \
  do {                                                                                \
    if (::pvback::log::enabled(::pvback::log::Level::level))                          \
      ::pvback::log::write(::pvback::log::Level::level, __VA_ARGS__);                 \
  } while (0)

// Rate-limited per call site.
#define PVBACK_LOG_RATELIMITED(level, fmt, ...)                                       \
  do {                                                                                \
    static ::pvback::log::RateLimit pvback_rl_;                                       \
    std::uint64_t pvback_dropped_ = 0;                                                \
    if (::pvback::log::enabled(::pvback::log::Level::level) && pvback_rl_.allow(&pvback_dropped_)) { \
      if (pvback_dropped_ != 0)                                                       \
        ::pvback::log::write(::pvback::log::Level::level, "(%llu similar messages suppressed)", \
                             static_cast<unsigned long long>(pvback_dropped_));       \
      ::pvback::log::write(::pvback::log::Level::level, fmt __VA_OPT__(,) __VA_ARGS__); \
    }                                                                                 \
  } while (0)
