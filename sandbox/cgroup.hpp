// Memory, task and CPU limits for one data-plane process: a leaf control group of its own.
//
// Each controller is used where this host mounts it: cgroup v2 where the unified hierarchy offers
// it (Debian 12's default), else its cgroup v1 hierarchy (a hybrid host; this build machine).
//
//   memory  v2 memory.max        v1 memory.limit_in_bytes       the data plane's own allocations
//                                                                (bounce pages, io_uring, queues);
//                                                                a guest's granted pages are not
//                                                                charged to it
//   pids    v2/v1 pids.max                                       threads count: io_uring's io-wq
//                                                                workers are tasks of the process
//   cpu     v2 cpu.max "Q P"     v1 cpu.cfs_quota_us / period    100 = one CPU
//
// A leaf is "<parent>/<name>", where the parent is a path inside each hierarchy ("/pvback.slice")
// or, left empty, the cgroup this process is in. cgroup v2 keeps processes only in leaves once a
// cgroup's subtree has controllers ("no internal processes"), so under v2 the parent must hold no
// process itself: a systemd unit with Delegate=yes whose daemon moved itself into a sub-cgroup,
// or a slice. Enabling the controllers there (cgroup.subtree_control) is create()'s job.
//
// The leaf outlives the data plane's restarts and adoption by a successor control part: create()
// reuses a leaf that exists (setting the limits again) and remove() deletes it once empty.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

namespace pvback::sandbox {

struct ResourceLimits {
  std::optional<std::uint64_t> memory_bytes;  // hard limit; the kernel reclaims, then OOM-kills
  std::optional<std::uint64_t> tasks;         // threads and processes
  std::optional<unsigned> cpu_percent;        // of one CPU, per 100 ms period
  bool any() const { return memory_bytes || tasks || cpu_percent; }
};

class Cgroup {
 public:
  Cgroup() = default;
  Cgroup(Cgroup&& o) noexcept;
  Cgroup& operator=(Cgroup&& o) noexcept;
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;
  ~Cgroup();  // remove()s, quietly

  // Creates (or reuses) the leaf `name` under `parent` for every controller `limits` sets and
  // writes the limits. On failure: what failed, with the path and the cause; nothing is left.
  [[nodiscard]] static std::expected<Cgroup, std::string> create(const std::string& parent, const std::string& name,
                                                                 const ResourceLimits& limits);

  // Moves `pid` (0: the caller) into the leaf. errno value, 0 on success.
  [[nodiscard]] int attach(pid_t pid) const;
  // Deletes the leaf's directories; they must be empty (every process in them gone), which is
  // waited for up to `patience` (a process that just exited may take a moment to leave). errno
  // value of the first that could not be removed (EBUSY: a process still in it), 0 on success.
  int remove(std::chrono::milliseconds patience = std::chrono::milliseconds(0));

  bool valid() const { return !dirs_.empty(); }
  // The leaf's directories, one per hierarchy used ("/sys/fs/cgroup/pvback/vbd-1-768").
  const std::vector<std::string>& dirs() const { return dirs_; }
  std::string describe() const;  // "cgroup v2 /sys/fs/cgroup/x/vbd-1-768 (memory.max=..., ...)"

 private:
  friend int remove_leaf(const std::string& parent, const std::string& name, std::chrono::milliseconds patience);
  std::vector<std::string> dirs_;
  std::string settings_;
};

// Deletes the leaf `name` under `parent` ("" = this process's own cgroup) that Cgroup::create
// made with the same arguments, in every hierarchy it could have used, once empty (waiting up to
// `patience`): for a leaf whose Cgroup object died with its process (a control part SIGKILLed).
// 0 when nothing is left (or there was nothing), else the errno value.
int remove_leaf(const std::string& parent, const std::string& name,
                std::chrono::milliseconds patience = std::chrono::milliseconds(1000));

// cgroup v2 keeps processes only in leaves once a cgroup's children have controllers. A daemon
// started in a cgroup of its own (a systemd unit with Delegate=yes) therefore first moves itself
// into a leaf `leaf` of that cgroup, so that its data planes' groups can be that cgroup's other
// children: returns the cgroup it left, the parent to give Cgroup::create. Returns "" when nothing
// had to move: no controller this file uses is on cgroup v2 (a v1 or hybrid host, where a
// process's own cgroup can have limited children), or this process is in the root cgroup. A
// process already in a leaf of that name returns its parent (a re-executed daemon).
[[nodiscard]] std::expected<std::string, std::string> enter_own_leaf(const std::string& leaf);

// The memory/pids/cpu limits of the cgroups `pid` is in, as the kernel reports them (for tests and
// statistics): "max" is unset.
struct AppliedLimits {
  std::optional<std::uint64_t> memory_bytes;
  std::optional<std::uint64_t> tasks;
  std::optional<unsigned> cpu_percent;
};
[[nodiscard]] std::expected<AppliedLimits, std::string> applied_limits(pid_t pid);

// "512M" / "2G" / "1048576": bytes; nullopt if malformed or zero.
std::optional<std::uint64_t> parse_size(const std::string& text);

}  // namespace pvback::sandbox
