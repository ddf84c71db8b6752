// Forks a child that confines itself with sandbox::apply() and then tries something; the parent
// (the gtest process, never confined) judges the outcome from the wait status.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "sandbox/sandbox.hpp"

namespace pvback::sandbox::test {

// Exit codes a child chooses. A seccomp kill shows as SIGSYS instead.
enum Exit : int {
  kPassed = 0,          // what the child tried went as the test expected
  kApplyFailed = 100,   // sandbox::apply() returned an error (printed on stderr)
  kCallSucceeded = 101, // a call that had to fail did not
  kCallFailed = 102,    // a call that had to work did not (errno printed on stderr)
  kWrongErrno = 103,    // a call failed, with another errno than expected
  kWrongResult = 104,   // a call worked, with a wrong result
};

// The policy of a data plane serving domain 7, the seccomp filter on or off.
inline Policy domain_policy(bool seccomp = true) {
  Policy p;
  p.uid = data_plane_uid(kDataPlaneUidBase, 7);
  p.gid = data_plane_uid(kDataPlaneUidBase, 7);
  p.seccomp = seccomp;
  return p;
}

// In the child: apply `policy` or leave with kApplyFailed.
inline Report apply_or_exit(const Policy& policy) {
  auto r = apply(policy);
  if (!r) {
    std::fprintf(stderr, "child: %s\n", r.error().c_str());
    std::_Exit(kApplyFailed);
  }
  return *r;
}

// In the child: a call that must fail with `expected_errno`: the exit code that says how it went.
inline int expect_failure(long rc, int expected_errno, const char* what) {
  if (rc >= 0) return kCallSucceeded;
  if (errno != expected_errno) {
    std::fprintf(stderr, "child: %s: errno %d, expected %d\n", what, errno, expected_errno);
    return kWrongErrno;
  }
  return kPassed;
}

inline int call_failed(const char* what) {
  std::fprintf(stderr, "child: %s: errno %d\n", what, errno);
  return kCallFailed;
}

// Runs `body` in a forked child (which leaves with _exit: no gtest or atexit code runs there) and
// returns its wait status.
template <class Body>
int run_in_child(Body body) {
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) ::_exit(body());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

inline std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

inline bool killed_by_seccomp(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS; }
inline bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

}  // namespace pvback::sandbox::test

// Skips a seccomp-specific test where the build cannot have the filter (sandbox.hpp says why).
#define SKIP_WITHOUT_SECCOMP()                                                                   \
  if (!::pvback::sandbox::kSeccompInThisBuild)                                                  \
  GTEST_SKIP() << "AddressSanitizer build: sandbox::apply() installs no seccomp filter (the " \
                  "sanitizer runtime needs system calls the data path does not make)"

#define SKIP_UNLESS_ROOT() \
  if (::geteuid() != 0) GTEST_SKIP() << "the namespace, id and capability steps need root"
