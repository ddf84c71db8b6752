// A daemon (pvback-blk, pvback-net, pvback-supervisor) as a child process on a simulated host, as
// it runs in production: sim platform environment; backends write their statistics every 50 ms.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/eventually.hpp"

extern char** environ;

namespace pvback::test {

class BackendProcess {
 public:
  // `binary`: the daemon; `exit_timeout`: how long wait_exit() waits by default.
  BackendProcess(std::string binary, std::chrono::milliseconds exit_timeout)
      : binary_(std::move(binary)), exit_timeout_(exit_timeout) {}
  BackendProcess(const BackendProcess&) = delete;
  BackendProcess& operator=(const BackendProcess&) = delete;
  ~BackendProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // `stderr_file`, if given, receives the daemon's log instead of the test's stderr.
  void start(const std::filesystem::path& run_dir, const std::string& backend_path, std::vector<std::string> extra,
             const std::string& stats_file, const std::filesystem::path& stderr_file = {}) {
    std::vector<std::string> args = {"--backend-path", backend_path, "--stats-file", stats_file,
                                     "--stats-interval-ms", "50"};
    args.insert(args.end(), extra.begin(), extra.end());
    spawn(run_dir, std::move(args), stderr_file);
  }

  // "NAME=VALUE" added to the environment of every later spawn (e.g. NOTIFY_SOCKET).
  void add_environment(std::string name_value) { extra_env_.push_back(std::move(name_value)); }

  // Runs the binary with `args` in the simulated host's environment (PVBACK_* replaced), its
  // stderr appended to `stderr_file` when one is given.
  void spawn(const std::filesystem::path& run_dir, std::vector<std::string> args,
             const std::filesystem::path& stderr_file = {}) {
    args.insert(args.begin(), binary_);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string s = *e;
      if (s.starts_with("PVBACK_")) continue;
      env_strings.push_back(s);
    }
    env_strings.push_back("PVBACK_PLATFORM=sim");
    env_strings.push_back("PVBACK_SIM_DIR=" + run_dir.string());
    env_strings.push_back("PVBACK_DOMID=0");
    env_strings.insert(env_strings.end(), extra_env_.begin(), extra_env_.end());
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    if (!stderr_file.empty())
      posix_spawn_file_actions_addopen(&actions, 2, stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int rc = ::posix_spawn(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0);
  }

  // Waits for the process to exit; its exit status (as from waitpid), or nullopt on timeout.
  std::optional<int> wait_exit() { return wait_exit(exit_timeout_); }
  std::optional<int> wait_exit(std::chrono::milliseconds timeout) {
    std::optional<int> result;
    eventually(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            result = status;
            pid_ = -1;
            return true;
          }
          return false;
        },
        timeout);
    return result;
  }
  // True while the process has not exited (reaps it if it has, so a zombie is not "running").
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  void terminate() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
  }
  pid_t pid() const { return pid_; }

 private:
  std::string binary_;
  std::chrono::milliseconds exit_timeout_;
  std::vector<std::string> extra_env_;
  pid_t pid_ = -1;
};

}  // namespace pvback::test
