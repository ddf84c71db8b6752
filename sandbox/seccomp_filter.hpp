// The seccomp filter of sandbox::apply() (seccomp_filter.cpp lists what it allows and why).
#pragma once
#include <sys/types.h>

#include <expected>
#include <string>

#include "sandbox/sandbox.hpp"

namespace pvback::sandbox::detail {

// Loads the filter on every thread of the process (TSYNC). `self` is the process's pid: tgkill
// (abort()) may signal this process only. `policy.profile` adds the storage's calls (Block) or not
// (Net); `policy.probe_processes` allows kill(pid, 0). Needs no_new_privs set (or CAP_SYS_ADMIN).
[[nodiscard]] std::expected<void, std::string> install_seccomp_filter(pid_t self, const Policy& policy);

}  // namespace pvback::sandbox::detail
