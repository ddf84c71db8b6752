// Looking at a data plane's control group from a test: the directories its statistics document
// lists ("data_plane": {..., "cgroup": [...]}), the processes in one, whether they are gone, and the
// limits the kernel applies to a process (sandbox::applied_limits; link pvback_sandbox).
#pragma once
#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "sandbox/cgroup.hpp"

namespace pvback::test {

// The directories a statistics document lists as the data plane's control group (none: empty).
inline std::vector<std::string> cgroup_dirs_in(const std::string& stats_text) {
  std::vector<std::string> dirs;
  const std::string key = "\"cgroup\": [";
  const auto list = stats_text.find(key);
  if (list == std::string::npos) return dirs;
  const auto end = stats_text.find(']', list);
  for (auto at = stats_text.find('"', list + key.size()); at < end; at = stats_text.find('"', at + 1)) {
    const auto close = stats_text.find('"', at + 1);
    dirs.push_back(stats_text.substr(at + 1, close - at - 1));
    at = close;
  }
  return dirs;
}

// The pids in a control-group directory.
inline std::vector<pid_t> procs_of(const std::string& dir) {
  std::ifstream in(dir + "/cgroup.procs");
  std::vector<pid_t> pids;
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

inline bool all_gone(const std::vector<std::string>& dirs) {
  return std::ranges::none_of(dirs, [](const std::string& d) { return std::filesystem::exists(d); });
}

// The kernel holds `pid` to these limits (nullopt: none set).
inline void expect_limits(pid_t pid, std::optional<std::uint64_t> memory_bytes, std::optional<std::uint64_t> tasks,
                          std::optional<unsigned> cpu_percent) {
  auto limits = sandbox::applied_limits(pid);
  ASSERT_TRUE(limits.has_value()) << limits.error();
  EXPECT_EQ(limits->memory_bytes, memory_bytes) << "pid " << pid;
  EXPECT_EQ(limits->tasks, tasks) << "pid " << pid;
  EXPECT_EQ(limits->cpu_percent, cpu_percent) << "pid " << pid;
}

}  // namespace pvback::test
