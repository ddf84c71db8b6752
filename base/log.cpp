#include "base/log.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace pvback::log {
namespace {

std::atomic<const char*> g_program{"pvback"};

Level level_from_env() {
  const char* v = std::getenv("PVBACK_LOG_LEVEL");
  if (v == nullptr) return Level::Info;
  if (std::strcmp(v, "debug") == 0) return Level::Debug;
  if (std::strcmp(v, "notice") == 0) return Level::Notice;
  if (std::strcmp(v, "warning") == 0) return Level::Warning;
  if (std::strcmp(v, "error") == 0) return Level::Error;
  return Level::Info;
}

std::atomic<int> g_min_level{static_cast<int>(level_from_env())};

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

void set_program(const char* name) { g_program.store(name); }
void set_min_level(Level level) { g_min_level.store(static_cast<int>(level)); }
bool enabled(Level level) { return static_cast<int>(level) <= g_min_level.load(std::memory_order_relaxed); }

void write(Level level, const char* fmt, ...) {
  // One write(2) per line so lines from several threads never interleave.
  char line[1024];
  int n = std::snprintf(line, sizeof line, "<%d>%s: ", static_cast<int>(level), g_program.load());
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(line + n, sizeof line - static_cast<size_t>(n) - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : static_cast<size_t>(m));
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  std::fwrite(line, 1, len, stderr);
}

bool RateLimit::allow(std::uint64_t* suppressed) {
  std::int64_t now = now_ns();
  std::int64_t start = window_start_.load(std::memory_order_relaxed);
  if (now - start >= interval_ns_ && window_start_.compare_exchange_strong(start, now)) {
    in_window_.store(0, std::memory_order_relaxed);
  }
  if (in_window_.fetch_add(1, std::memory_order_relaxed) < burst_) {
    *suppressed = suppressed_.exchange(0, std::memory_order_relaxed);
    return true;
  }
  suppressed_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

}  // namespace pvback::log
