#include "storage/daemon_dir.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "base/log.hpp"

namespace pvback::storage {
namespace {

constexpr const char* kOwnerFile = "owner";

struct Owner {
  pid_t pid = 0;
  std::uint64_t start_time = 0;
};

std::optional<Owner> read_owner(const std::filesystem::path& dir) {
  std::ifstream in(dir / kOwnerFile);
  long long pid = 0;
  std::uint64_t start = 0;
  if (!(in >> pid >> start) || pid <= 0) return std::nullopt;
  return Owner{static_cast<pid_t>(pid), start};
}

bool owner_alive(const Owner& owner) {
  if (::kill(owner.pid, 0) != 0 && errno == ESRCH) return false;
  // Alive (or not ours to signal): the same process only if it started when the owner did.
  // (Start time 0: not known when the directory was made; the pid alone decides.)
  const auto start = process_start_time(owner.pid);
  return !start || owner.start_time == 0 || *start == owner.start_time;
}

}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(fields >> field)) return std::nullopt;
  return std::strtoull(field.c_str(), nullptr, 10);
}

std::expected<std::filesystem::path, int> make_daemon_dir(const std::filesystem::path& parent) {
  std::string dir = (parent / (std::string(kDaemonDirPrefix) + "XXXXXX")).string();
  if (::mkdtemp(dir.data()) == nullptr) return std::unexpected(errno);
  const auto start = process_start_time(::getpid());
  const std::filesystem::path tmp = std::filesystem::path(dir) / "owner.tmp";
  {
    std::ofstream out(tmp);
    out << ::getpid() << ' ' << start.value_or(0) << '\n';
    if (!out.flush()) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
      return std::unexpected(EIO);
    }
  }
  // Renamed into place: a sweeper sees a whole owner file or none.
  if (::rename(tmp.c_str(), (std::filesystem::path(dir) / kOwnerFile).c_str()) != 0) {
    const int e = errno;
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return std::unexpected(e);
  }
  return std::filesystem::path(dir);
}

unsigned sweep_stale_daemon_dirs(const std::filesystem::path& parent) {
  unsigned removed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    const std::filesystem::path& dir = entry.path();
    if (!dir.filename().string().starts_with(kDaemonDirPrefix)) continue;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) continue;
    const auto owner = read_owner(dir);
    if (!owner || owner_alive(*owner)) continue;
    std::error_code rm;
    std::filesystem::remove_all(dir, rm);
    if (rm) {
      PVBACK_LOG(Warning, "%s: cannot remove a stale storage-daemon directory: %s", dir.c_str(), rm.message().c_str());
      continue;
    }
    PVBACK_LOG(Notice, "%s: removed, its owner (pid %d) is gone", dir.c_str(), static_cast<int>(owner->pid));
    ++removed;
  }
  return removed;
}

}  // namespace pvback::storage
