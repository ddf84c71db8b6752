// The private directory of a storage daemon pvback-blk starts ($TMPDIR/pvback-qsd-XXXXXX: the
// daemon's NBD socket), and the sweep of those whose owner is gone. pvback-blk removes its own
// directory when it stops the daemon; a SIGKILLed pvback-blk cannot, so the next one to start a
// daemon removes the directories whose owner process no longer exists.
//
// Whose a directory is: an "owner" file written before anything else goes in, holding the owner's
// pid and its start time (field 22 of /proc/PID/stat, in clock ticks since boot), so that a pid
// reused by another process since does not keep a stale directory, nor does a directory of a live
// owner ever go. A directory without an owner file (being created at this instant, or left by an
// older pvback) is left alone.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <string>

namespace pvback::storage {

inline constexpr const char* kDaemonDirPrefix = "pvback-qsd-";

// When `pid` started (clock ticks since boot), or nullopt if there is no such process.
std::optional<std::uint64_t> process_start_time(pid_t pid);

// A new private directory in `parent` (mode 0700) with this process's owner file. errno value on
// failure.
std::expected<std::filesystem::path, int> make_daemon_dir(const std::filesystem::path& parent);

// Removes the daemon directories in `parent` whose owner file names a process that is gone (no
// such pid, or one that started at another time), and only those owned by this user. Returns how
// many it removed.
unsigned sweep_stale_daemon_dirs(const std::filesystem::path& parent);

}  // namespace pvback::storage
