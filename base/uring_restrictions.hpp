// Restricting an io_uring to the operations its owner submits, then enabling it. The ring must be
// created with IORING_SETUP_R_DISABLED (the kernel takes restrictions only before a ring is enabled).
// io_uring's operations never pass a seccomp filter: every ring a sandboxed data plane holds is
// restricted so (storage/loop.cpp, netback/tap_writer.cpp), and the kernel refuses the rest (EACCES).
#pragma once
#include <liburing.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <span>

namespace pvback {

// 0 or an errno value. Straight to the system call: Debian 12's liburing 2.3 declares
// io_uring_register_restrictions and io_uring_enable_rings but its shared library does not export
// them.
[[nodiscard]] inline int restrict_and_enable_ring(io_uring& ring, std::span<io_uring_restriction> restrictions) {
  if (::syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_RESTRICTIONS, restrictions.data(),
                static_cast<unsigned>(restrictions.size())) != 0)
    return errno;
  if (::syscall(__NR_io_uring_register, ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) != 0) return errno;
  return 0;
}

}  // namespace pvback
