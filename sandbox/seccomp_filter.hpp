// The seccomp filter of sandbox::apply() (seccomp_filter.cpp lists what it allows and why).
#pragma once
#include <sys/types.h>

#include <expected>
#include <string>

#include "sandbox/sandbox.hpp"

namespace pvback::sandbox::detail {

// Loads the filter on every thread of the process (TSYNC). `self` is the process's pid: tgkill
// (abort()) may signal this process only. `profile` adds the storage's calls (Block) or not (Net).
// `existence_probes`: kill(pid, 0) is allowed (signal 0 only). Needs no_new_privs set (or
// CAP_SYS_ADMIN).
[[nodiscard]] std::expected<void, std::string> install_seccomp_filter(pid_t self, Profile profile,
                                                                      bool existence_probes);

}  // namespace pvback::sandbox::detail
