// The storage daemons' private directories: made with an owner file, and swept only once their
// owner process is gone.
#include "storage/daemon_dir.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include <gtest/gtest.h>

namespace pvback {
namespace {

namespace fs = std::filesystem;

struct TempParent {
  TempParent() {
    std::string p = "/tmp/pvback-sweep-XXXXXX";
    if (::mkdtemp(p.data()) != nullptr) path = p;
  }
  ~TempParent() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

// A pid that was alive a moment ago and is not any more (reaped).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

fs::path daemon_dir_owned_by(const fs::path& parent, const std::string& name, pid_t pid, std::uint64_t start) {
  const fs::path dir = parent / (std::string(storage::kDaemonDirPrefix) + name);
  fs::create_directory(dir);
  std::ofstream(dir / "owner") << pid << ' ' << start << '\n';
  std::ofstream(dir / "nbd.sock") << "";
  return dir;
}

TEST(DaemonDir, OnlyDirectoriesWhoseOwnerIsGoneAreSwept) {
  TempParent parent;
  ASSERT_FALSE(parent.path.empty());
  const auto my_start = storage::process_start_time(::getpid());
  ASSERT_TRUE(my_start.has_value());
  EXPECT_FALSE(storage::process_start_time(dead_pid()).has_value());

  auto mine = storage::make_daemon_dir(parent.path);
  ASSERT_TRUE(mine.has_value()) << std::strerror(mine.error());
  EXPECT_EQ(fs::status(*mine).permissions() & fs::perms::all, fs::perms::owner_all);
  const fs::path killed = daemon_dir_owned_by(parent.path, "killed", dead_pid(), 1);
  // This process's pid, but a start time it never had: the owner died and its pid was reused.
  const fs::path reused = daemon_dir_owned_by(parent.path, "reused", ::getpid(), *my_start + 1);
  const fs::path live = daemon_dir_owned_by(parent.path, "live", ::getpid(), *my_start);
  const fs::path no_owner = parent.path / (std::string(storage::kDaemonDirPrefix) + "noowner");
  fs::create_directory(no_owner);
  const fs::path not_ours = parent.path / "other-XXXXXX";
  fs::create_directory(not_ours);
  std::ofstream(not_ours / "owner") << dead_pid() << " 1\n";

  EXPECT_EQ(storage::sweep_stale_daemon_dirs(parent.path), 2u);
  EXPECT_FALSE(fs::exists(killed));
  EXPECT_FALSE(fs::exists(reused));
  EXPECT_TRUE(fs::exists(*mine));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(no_owner));
  EXPECT_TRUE(fs::exists(not_ours));
  EXPECT_EQ(storage::sweep_stale_daemon_dirs(parent.path), 0u);
}

}  // namespace
}  // namespace pvback
