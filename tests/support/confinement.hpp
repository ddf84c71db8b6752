// The confinement of a data-plane process as /proc shows it (sandbox::describe, its namespaces,
// its root), checked against what sandbox::apply promises for the guest `domid`.
#pragma once
#include <sys/types.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "grant/types.hpp"
#include "sandbox/sandbox.hpp"

namespace pvback::test {

inline std::string namespace_of(pid_t pid, const char* which) {
  std::error_code ec;
  return std::filesystem::read_symlink(std::filesystem::path("/proc") / std::to_string(pid) / "ns" / which, ec)
      .string();
}

// A uid and gid of its own (base + the guest's domid), no capability in any set, no_new_privs,
// the seccomp filter (but in a sanitized build), mount and network namespaces other than the
// test's, and an empty root.
inline void expect_confined(pid_t pid, DomId domid) {
  auto c = sandbox::describe(pid);
  ASSERT_TRUE(c.has_value()) << c.error();
  const uid_t want = sandbox::kDataPlaneUidBase + domid;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(c->uid[i], want) << "uid " << i;
    EXPECT_EQ(c->gid[i], want) << "gid " << i;
  }
  EXPECT_EQ(c->cap_eff, 0u);
  EXPECT_EQ(c->cap_prm, 0u);
  EXPECT_EQ(c->cap_inh, 0u);
  EXPECT_EQ(c->cap_bnd, 0u);
  EXPECT_EQ(c->cap_amb, 0u);
  EXPECT_EQ(c->no_new_privs, 1);
  if (sandbox::kSeccompInThisBuild) {
    EXPECT_EQ(c->seccomp, 2);
  }
  EXPECT_NE(namespace_of(pid, "mnt"), namespace_of(::getpid(), "mnt"));
  EXPECT_NE(namespace_of(pid, "net"), namespace_of(::getpid(), "net"));
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::is_empty(std::filesystem::path("/proc") / std::to_string(pid) / "root", ec))
      << "its root shows files";
}

}  // namespace pvback::test
