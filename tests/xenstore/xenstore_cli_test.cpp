// The real xenstore-utils CLIs (xenstore-write, -read, -ls, ...) against XenStoreServer.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <string>

#include "tests/xenstore/xenstore_test_support.hpp"

namespace pvback::test {
namespace {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CommandResult run_command(const std::filesystem::path& socket, const std::string& command) {
  const std::string line = "XENSTORED_PATH='" + socket.string() + "' " + command + " 2>&1";
  CommandResult result;
  FILE* pipe = ::popen(line.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  std::size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, got);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class XenStoreCliTest : public ::testing::Test {
 protected:
  CommandResult dom0(const std::string& command) { return run_command(server_.dom0_socket(), command); }

  ServerThread server_;
};

TEST_F(XenStoreCliTest, WriteReadListExistsRm) {
  ASSERT_EQ(dom0("xenstore-write /cli/a 1 /cli/b/c 'two words'").exit_code, 0);
  auto read = dom0("xenstore-read /cli/a /cli/b/c");
  EXPECT_EQ(read.exit_code, 0);
  EXPECT_EQ(read.output, "1\ntwo words\n");

  auto list = dom0("xenstore-list /cli");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_EQ(list.output, "a\nb\n");

  auto ls = dom0("xenstore-ls /cli");
  EXPECT_EQ(ls.exit_code, 0);
  EXPECT_NE(ls.output.find("a = \"1\""), std::string::npos) << ls.output;
  EXPECT_NE(ls.output.find(" c = \"two words\""), std::string::npos) << ls.output;

  EXPECT_EQ(dom0("xenstore-exists /cli/b/c").exit_code, 0);
  EXPECT_NE(dom0("xenstore-exists /cli/none").exit_code, 0);
  EXPECT_NE(dom0("xenstore-read /cli/none").exit_code, 0);

  ASSERT_EQ(dom0("xenstore-rm /cli/b").exit_code, 0);
  EXPECT_NE(dom0("xenstore-exists /cli/b/c").exit_code, 0);
  EXPECT_EQ(dom0("xenstore-list /cli").output, "a\n");
}

TEST_F(XenStoreCliTest, ChmodAndListPermissions) {
  ASSERT_EQ(dom0("xenstore-write /perm/x v").exit_code, 0);
  ASSERT_EQ(dom0("xenstore-chmod /perm/x n3 r5 b6").exit_code, 0);
  XsHandle h = open_xs(server_.dom0_socket());
  ASSERT_TRUE(h);
  unsigned num = 0;
  xs_permissions* perms = xs_get_permissions(h.get(), XBT_NULL, "/perm/x", &num);
  ASSERT_NE(perms, nullptr);
  ASSERT_EQ(num, 3u);
  EXPECT_EQ(perms[0].id, 3u);
  EXPECT_EQ(perms[1].id, 5u);
  EXPECT_EQ(perms[1].perms & (XS_PERM_READ | XS_PERM_WRITE), XS_PERM_READ);
  EXPECT_EQ(perms[2].perms & (XS_PERM_READ | XS_PERM_WRITE), XS_PERM_READ | XS_PERM_WRITE);
  free(perms);
  auto ls = dom0("xenstore-ls -p /perm");
  EXPECT_NE(ls.output.find("n3,r5,b6"), std::string::npos) << ls.output;
}

TEST_F(XenStoreCliTest, WatchPrintsRegistrationAndChange) {
  const std::string line = "XENSTORED_PATH='" + server_.dom0_socket().string() + "' xenstore-watch -n 2 /cliwatch";
  FILE* watcher = ::popen(line.c_str(), "r");
  ASSERT_NE(watcher, nullptr);
  char buffer[256];
  // The first line (the registration event) means the watch is in place.
  ASSERT_NE(fgets(buffer, sizeof(buffer), watcher), nullptr);
  EXPECT_STREQ(buffer, "/cliwatch\n");
  ASSERT_EQ(dom0("xenstore-write /cliwatch/child 1").exit_code, 0);
  ASSERT_NE(fgets(buffer, sizeof(buffer), watcher), nullptr);
  EXPECT_STREQ(buffer, "/cliwatch/child\n");
  const int status = ::pclose(watcher);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(XenStoreCliTest, GuestCliIsDeniedOutsideItsPermissions) {
  ASSERT_EQ(dom0("xenstore-write /local/domain/9/name guest9").exit_code, 0);
  ASSERT_EQ(dom0("xenstore-chmod /local/domain/9 n9").exit_code, 0);
  XsHandle h = open_xs(server_.dom0_socket());
  ASSERT_TRUE(h);
  ASSERT_TRUE(xs_introduce_domain(h.get(), 9, 1, 1));
  const auto guest_socket = server_.guest_socket(9);

  auto own = run_command(guest_socket, "xenstore-write data/x 1");
  EXPECT_EQ(own.exit_code, 0) << own.output;
  EXPECT_EQ(run_command(guest_socket, "xenstore-read /local/domain/9/data/x").output, "1\n");

  auto denied = run_command(guest_socket, "xenstore-write /tool/x 1");
  EXPECT_NE(denied.exit_code, 0);
  EXPECT_NE(denied.output.find("could not write"), std::string::npos) << denied.output;
  auto unreadable = run_command(guest_socket, "xenstore-read /local/domain/0");
  EXPECT_NE(unreadable.exit_code, 0);
  EXPECT_NE(dom0("xenstore-exists /tool/x").exit_code, 0);
}

}  // namespace
}  // namespace pvback::test
