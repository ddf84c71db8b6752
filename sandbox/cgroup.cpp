#include "sandbox/cgroup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace pvback::sandbox {
namespace {

enum class Controller { Memory, Pids, Cpu };
constexpr std::array kControllers{Controller::Memory, Controller::Pids, Controller::Cpu};

const char* controller_name(Controller c) {
  switch (c) {
    case Controller::Memory: return "memory";
    case Controller::Pids: return "pids";
    case Controller::Cpu: return "cpu";
  }
  return "?";
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

// One cgroup hierarchy as this process sees it.
struct Hierarchy {
  bool v2 = false;
  std::string mount_point;  // "/sys/fs/cgroup/memory"
  std::string mount_root;   // the hierarchy's path mounted there ("/" unless a subtree is bind-mounted)
  std::vector<std::string> controllers;  // v1: from the mount options; v2: from cgroup.controllers
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// mountinfo: "id parent maj:min root mount-point options [optional...] - fstype source super-options"
std::vector<Hierarchy> mounted_hierarchies() {
  std::vector<Hierarchy> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto fields = split(line, ' ');
    const auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || std::distance(dash, fields.end()) < 4) continue;
    const std::string& fstype = *(dash + 1);
    Hierarchy h;
    h.mount_root = fields[3];
    h.mount_point = fields[4];
    if (fstype == "cgroup2") {
      h.v2 = true;
      h.controllers = split(read_text(h.mount_point + "/cgroup.controllers"), ' ');
    } else if (fstype == "cgroup") {
      h.controllers = split(*(dash + 3), ',');
    } else {
      continue;
    }
    out.push_back(std::move(h));
  }
  return out;
}

bool offers(const Hierarchy& h, Controller c) {
  return std::ranges::find(h.controllers, controller_name(c)) != h.controllers.end();
}

// The hierarchy serving `c`: v2 where the unified hierarchy offers it, else its v1 mount.
const Hierarchy* hierarchy_for(const std::vector<Hierarchy>& all, Controller c) {
  for (const auto& h : all)
    if (h.v2 && offers(h, c)) return &h;
  for (const auto& h : all)
    if (!h.v2 && offers(h, c)) return &h;
  return nullptr;
}

// The path of `pid`'s cgroup in `h`, from /proc/PID/cgroup ("4:memory:/x" or "0::/x"), made
// relative to what is mounted at h.mount_point.
std::optional<std::string> cgroup_of(pid_t pid, const Hierarchy& h) {
  std::ifstream in(pid == 0 ? std::string("/proc/self/cgroup") : "/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':');
    const auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    const bool match = h.v2 ? line.compare(0, first, "0") == 0 && controllers.empty()
                            : std::ranges::any_of(split(controllers, ','), [&](const std::string& name) {
                                return std::ranges::find(h.controllers, name) != h.controllers.end();
                              });
    if (!match) continue;
    if (h.mount_root != "/" && path.starts_with(h.mount_root)) path.erase(0, h.mount_root.size());
    if (path.empty()) return std::string(1, '/');
    return path;
  }
  return std::nullopt;
}

std::string join(const std::string& a, const std::string& b) {
  if (b.empty() || b == "/") return a;
  if (a.ends_with('/') || b.starts_with('/')) return a + b;
  return a + "/" + b;
}

int write_file(const std::string& path, const std::string& value) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const ssize_t n = ::write(fd, value.data(), value.size());
  const int err = n < 0 ? errno : (static_cast<std::size_t>(n) == value.size() ? 0 : EIO);
  ::close(fd);
  return err;
}

std::string failure(const std::string& what, const std::string& path, int err) {
  return what + " " + path + ": " + std::strerror(err);
}

// cgroup v2 keeps a controller's files in a child only once the parent delegates it.
std::expected<void, std::string> enable_in_subtree(const std::string& parent_dir, Controller c) {
  const auto enabled = split(read_text(parent_dir + "/cgroup.subtree_control"), ' ');
  if (std::ranges::find(enabled, controller_name(c)) != enabled.end()) return {};
  const std::string file = parent_dir + "/cgroup.subtree_control";
  const int err = write_file(file, std::string("+") + controller_name(c));
  if (err == 0) return {};
  if (err == EBUSY)
    return std::unexpected(failure(std::string("cannot enable ") + controller_name(c) + " in", file, err) +
                           " (cgroup v2 limits only leaves: this parent holds processes; give a parent that "
                           "holds none, e.g. a sub-cgroup of a unit with Delegate=yes)");
  return std::unexpected(failure(std::string("cannot enable ") + controller_name(c) + " in", file, err));
}

bool valid_leaf_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos && name != "." && name != "..";
}

// The directory of `parent` in `h` ("" = this process's own cgroup there), or nullopt if this
// process's cgroup there cannot be found.
std::optional<std::string> parent_dir(const Hierarchy& h, const std::string& parent) {
  if (!parent.empty()) return join(h.mount_point, parent);
  auto own = cgroup_of(0, h);
  if (!own) return std::nullopt;
  return join(h.mount_point, *own);
}

struct Setting {
  std::string file;
  std::string value;
};

std::vector<Setting> settings_for(Controller c, bool v2, const ResourceLimits& limits) {
  switch (c) {
    case Controller::Memory:
      return {{v2 ? "memory.max" : "memory.limit_in_bytes", std::to_string(*limits.memory_bytes)}};
    case Controller::Pids:
      return {{"pids.max", std::to_string(*limits.tasks)}};
    case Controller::Cpu: {
      const std::uint64_t quota = std::uint64_t{*limits.cpu_percent} * 1000;  // of a 100 ms period
      if (v2) return {{"cpu.max", std::to_string(quota) + " 100000"}};
      return {{"cpu.cfs_period_us", "100000"}, {"cpu.cfs_quota_us", std::to_string(quota)}};
    }
  }
  return {};
}

bool wanted(Controller c, const ResourceLimits& limits) {
  switch (c) {
    case Controller::Memory: return limits.memory_bytes.has_value();
    case Controller::Pids: return limits.tasks.has_value();
    case Controller::Cpu: return limits.cpu_percent.has_value();
  }
  return false;
}

std::optional<std::uint64_t> parse_u64(const std::string& s) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

Cgroup::Cgroup(Cgroup&& o) noexcept : dirs_(std::exchange(o.dirs_, {})), settings_(std::move(o.settings_)) {}

Cgroup& Cgroup::operator=(Cgroup&& o) noexcept {
  if (this != &o) {
    remove();
    dirs_ = std::exchange(o.dirs_, {});
    settings_ = std::move(o.settings_);
  }
  return *this;
}

Cgroup::~Cgroup() { remove(); }

std::expected<Cgroup, std::string> Cgroup::create(const std::string& parent, const std::string& name,
                                                  const ResourceLimits& limits) {
  if (!valid_leaf_name(name)) return std::unexpected("invalid cgroup name \"" + name + "\"");
  if (!parent.empty() && (!parent.starts_with('/') || parent.find("..") != std::string::npos))
    return std::unexpected("the cgroup parent must be an absolute path within the hierarchy, not \"" + parent + "\"");
  const auto all = mounted_hierarchies();
  Cgroup group;
  std::vector<std::string> made;  // the directories this call created, removed again on failure
  auto undo = [&](std::string why) {
    for (auto it = made.rbegin(); it != made.rend(); ++it) ::rmdir(it->c_str());
    group.dirs_.clear();
    return std::unexpected(std::move(why));
  };
  for (const Controller c : kControllers) {
    if (!wanted(c, limits)) continue;
    const Hierarchy* h = hierarchy_for(all, c);
    if (h == nullptr) return undo(std::string("no cgroup hierarchy on this host offers the ") + controller_name(c) +
                                  " controller");
    const auto above = parent_dir(*h, parent);
    if (!above) return undo(std::string("cannot find this process's ") + controller_name(c) + " cgroup");
    const std::string dir = join(*above, name);
    if (h->v2)
      if (auto r = enable_in_subtree(*above, c); !r) return undo(r.error());
    if (std::ranges::find(group.dirs_, dir) == group.dirs_.end()) {
      if (::mkdir(dir.c_str(), 0755) == 0) {
        made.push_back(dir);
      } else if (errno != EEXIST) {
        return undo(failure("cannot create cgroup", dir, errno));
      }
      group.dirs_.push_back(dir);
    }
    for (const auto& s : settings_for(c, h->v2, limits)) {
      if (int err = write_file(dir + "/" + s.file, s.value))
        return undo(failure("cannot set " + s.file + "=" + s.value + " in", dir, err));
      group.settings_ += (group.settings_.empty() ? "" : ", ") + s.file + "=" + s.value;
    }
  }
  return group;
}

int Cgroup::attach(pid_t pid) const {
  const std::string value = std::to_string(pid);
  for (const auto& dir : dirs_)
    if (int err = write_file(dir + "/cgroup.procs", value)) return err;
  return 0;
}

int Cgroup::remove(std::chrono::milliseconds patience) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    int first = 0;
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
      if (::rmdir(it->c_str()) != 0 && errno != ENOENT && first == 0) first = errno;
    if (first == 0) dirs_.clear();
    if (first != EBUSY || std::chrono::steady_clock::now() >= deadline) return first;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int remove_leaf(const std::string& parent, const std::string& name, std::chrono::milliseconds patience) {
  if (!valid_leaf_name(name)) return EINVAL;
  const auto all = mounted_hierarchies();
  Cgroup group;
  for (const Controller c : kControllers) {
    const Hierarchy* h = hierarchy_for(all, c);
    if (h == nullptr) continue;
    const auto above = parent_dir(*h, parent);
    if (!above) continue;
    const std::string dir = join(*above, name);
    if (std::ranges::find(group.dirs_, dir) == group.dirs_.end()) group.dirs_.push_back(dir);
  }
  return group.remove(patience);
}

std::string Cgroup::describe() const {
  std::string out;
  for (const auto& dir : dirs_) out += (out.empty() ? "" : " ") + dir;
  return out + " (" + settings_ + ")";
}

std::expected<std::string, std::string> enter_own_leaf(const std::string& leaf) {
  if (!valid_leaf_name(leaf))
    return std::unexpected("invalid cgroup name \"" + leaf + "\"");
  const auto all = mounted_hierarchies();
  const Hierarchy* v2 = nullptr;
  for (const Controller c : kControllers)
    if (const Hierarchy* h = hierarchy_for(all, c); h != nullptr && h->v2) v2 = h;
  if (v2 == nullptr) return std::string();
  auto own = cgroup_of(0, *v2);
  if (!own) return std::unexpected(std::string("cannot find this process's cgroup v2"));
  if (*own == "/") return std::string();
  const auto slash = own->rfind('/');
  if (own->substr(slash + 1) == leaf) return slash == 0 ? std::string("/") : own->substr(0, slash);
  const std::string dir = join(join(v2->mount_point, *own), leaf);
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return std::unexpected(failure("cannot create cgroup", dir, errno));
  if (int err = write_file(dir + "/cgroup.procs", "0"))
    return std::unexpected(failure("cannot move this process into", dir, err));
  return *own;
}

std::expected<AppliedLimits, std::string> applied_limits(pid_t pid) {
  const auto all = mounted_hierarchies();
  AppliedLimits out;
  for (const Controller c : kControllers) {
    const Hierarchy* h = hierarchy_for(all, c);
    if (h == nullptr) continue;
    auto path = cgroup_of(pid, *h);
    if (!path) return std::unexpected("no " + std::string(controller_name(c)) + " cgroup for pid " + std::to_string(pid));
    const std::string dir = join(h->mount_point, *path);
    switch (c) {
      case Controller::Memory: {
        const auto v = parse_u64(read_text(dir + (h->v2 ? "/memory.max" : "/memory.limit_in_bytes")));
        // v1 reports "no limit" as a huge page-aligned number.
        if (v && *v < (std::uint64_t{1} << 62)) out.memory_bytes = *v;
        break;
      }
      case Controller::Pids:
        out.tasks = parse_u64(read_text(dir + "/pids.max"));
        break;
      case Controller::Cpu: {
        std::string quota;
        if (h->v2) {
          quota = split(read_text(dir + "/cpu.max"), ' ').front();
        } else {
          quota = read_text(dir + "/cpu.cfs_quota_us");
        }
        if (auto q = parse_u64(quota)) out.cpu_percent = static_cast<unsigned>(*q / 1000);
        break;
      }
    }
  }
  return out;
}

std::optional<std::uint64_t> parse_size(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::uint64_t unit = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'K': case 'k': unit = 1ull << 10; break;
    case 'M': case 'm': unit = 1ull << 20; break;
    case 'G': case 'g': unit = 1ull << 30; break;
    default: break;
  }
  if (unit != 1) digits.pop_back();
  auto v = parse_u64(digits);
  if (!v || *v == 0 || *v > (~std::uint64_t{0}) / unit) return std::nullopt;
  return *v * unit;
}

}  // namespace pvback::sandbox
