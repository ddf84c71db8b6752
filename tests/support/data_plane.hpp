// Looking at a backend's data-plane process from a test: its pid (from the statistics file or as
// a child of its control part), whether it is gone, its comm.
#pragma once
#include <sys/types.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace pvback::test {

// The children of `pid` (a control part's data planes).
inline std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> pids;
  const auto task_dir = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(task_dir, ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t child; in >> child;) pids.push_back(child);
  }
  return pids;
}

// Exited (a zombie of whoever reaps orphans counts as gone: its files are released).
inline bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string p, comm, state;
  return !(stat >> p >> comm >> state) || state == "Z" || state == "X";
}

inline std::string comm_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  in >> name;
  return name;
}

// The data plane's pid as a statistics file's text says (-1: none there yet).
inline pid_t data_plane_pid_in(const std::string& stats_text) {
  const std::string key = "\"data_plane\": {\"pid\": ";
  const auto at = stats_text.find(key);
  return at == std::string::npos ? -1 : static_cast<pid_t>(std::atoi(stats_text.c_str() + at + key.size()));
}

}  // namespace pvback::test
