// pvback-supervisor's pure policy: the command line, which directory entries name a device, and
// the restart backoff.
#include <gtest/gtest.h>

#include "supervisor/options.hpp"

namespace pvback::supervisor {
namespace {

using namespace std::chrono_literals;

TEST(SupervisorOptions, DefaultsServeBothTypes) {
  auto o = parse_options({});
  ASSERT_TRUE(o.has_value());
  EXPECT_TRUE(o->serve_vbd);
  EXPECT_TRUE(o->serve_vif);
  EXPECT_EQ(o->max_devices, 256u);
  EXPECT_TRUE(o->blk_binary.empty());
  EXPECT_EQ(o->restart_delay, 1000ms);
  EXPECT_EQ(o->max_restart_delay, 30000ms);
}

TEST(SupervisorOptions, RepeatedArgsKeepOrderAndSpaces) {
  auto o = parse_options({"--blk-arg", "--max-queues", "--blk-arg", "2", "--net-arg", "--dpdk-eal-args",
                          "--net-arg", "--no-huge -m 64", "--blk-binary", "/x/blk", "--only", "vif"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->blk_args, (std::vector<std::string>{"--max-queues", "2"}));
  EXPECT_EQ(o->net_args, (std::vector<std::string>{"--dpdk-eal-args", "--no-huge -m 64"}));
  EXPECT_EQ(o->blk_binary, "/x/blk");
  EXPECT_FALSE(o->serve_vbd);
  EXPECT_TRUE(o->serve_vif);
}

TEST(SupervisorOptions, VbdDirAndConfigChooseWhatIsServedAndTuned) {
  auto o = parse_options({});
  ASSERT_TRUE(o.has_value());
  EXPECT_EQ(o->vbd_dirs, std::vector<std::string>{"vbd"});
  EXPECT_EQ(o->config_file, "/etc/pvback/pvback.conf");
  o = parse_options({"--vbd-dir", "vbd3", "--config", "none"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->vbd_dirs, std::vector<std::string>{"vbd3"});
  EXPECT_EQ(o->config_file, "");
  o = parse_options({"--vbd-dir", "both", "--config", "/srv/p.conf"});
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->vbd_dirs, (std::vector<std::string>{"vbd", "vbd3"}));
  EXPECT_EQ(o->config_file, "/srv/p.conf");
  EXPECT_EQ(parse_options({"--vbd-dir", "tap"}).error(), "--vbd-dir needs vbd, vbd3 or both");
  EXPECT_FALSE(parse_options({"--config"}).has_value());
}

TEST(SupervisorOptions, BadInputIsAnError) {
  for (auto args : std::vector<std::vector<std::string>>{{"--only", "vbdx"},
                                                        {"--only"},
                                                        {"--blk-arg"},
                                                        {"--max-devices", "0"},
                                                        {"--max-devices", "-1"},
                                                        {"--max-devices", "99999999"},
                                                        {"--restart-delay-ms", "0"},
                                                        {"--blk-binary", ""},
                                                        {"--frobnicate"}}) {
    auto o = parse_options(args);
    EXPECT_FALSE(o.has_value()) << args[0];
  }
  EXPECT_EQ(parse_options({"--help"}).error(), "help");
}

// pvback-net gets the supervisor's cgroup as its data planes' parent as pvback-blk does; a
// backend's own --cgroup-parent is kept; a supervisor that could not leave its cgroup (v2) gives
// them none; one that had nothing to leave (v1, the root) leaves them at auto.
TEST(SupervisorOptions, BothBackendsGetTheCgroupParent) {
  auto o = parse_options({"--net-arg", "--tap-up"});
  ASSERT_TRUE(o.has_value());
  EXPECT_TRUE(needs_own_cgroup(*o));
  settle_cgroup_parents(*o, std::string("/pvback.service"));
  EXPECT_EQ(o->blk_args, (std::vector<std::string>{"--cgroup-parent", "/pvback.service"}));
  EXPECT_EQ(o->net_args, (std::vector<std::string>{"--cgroup-parent", "/pvback.service", "--tap-up"}));
  EXPECT_EQ(o->blk_cgroup_parent, "/pvback.service");
  EXPECT_EQ(o->net_cgroup_parent, "/pvback.service");

  o = parse_options({"--net-arg", "--cgroup-parent", "--net-arg", "/net.slice"});
  ASSERT_TRUE(o.has_value());
  EXPECT_TRUE(needs_own_cgroup(*o));
  settle_cgroup_parents(*o, std::string("/pvback.service"));
  EXPECT_EQ(o->net_args, (std::vector<std::string>{"--cgroup-parent", "/net.slice"}));
  EXPECT_EQ(o->net_cgroup_parent, "/net.slice");
  EXPECT_EQ(o->blk_cgroup_parent, "/pvback.service");

  o = parse_options({"--blk-arg", "--cgroup-parent", "--blk-arg", "auto", "--net-arg", "--cgroup-parent",
                     "--net-arg", "none"});
  ASSERT_TRUE(o.has_value());
  EXPECT_FALSE(needs_own_cgroup(*o));
  settle_cgroup_parents(*o, std::string());
  EXPECT_EQ(o->blk_cgroup_parent, "");
  EXPECT_EQ(o->net_cgroup_parent, "none");
  EXPECT_EQ(o->blk_args.size(), 2u);

  o = parse_options({});
  ASSERT_TRUE(o.has_value());
  settle_cgroup_parents(*o, std::unexpected(std::string("cannot move")));
  EXPECT_EQ(o->blk_args, (std::vector<std::string>{"--cgroup-parent", "none"}));
  EXPECT_EQ(o->net_args, (std::vector<std::string>{"--cgroup-parent", "none"}));
  EXPECT_EQ(o->net_cgroup_parent, "none");

  o = parse_options({});
  ASSERT_TRUE(o.has_value());
  settle_cgroup_parents(*o, std::string());
  EXPECT_TRUE(o->blk_args.empty());
  EXPECT_TRUE(o->net_args.empty());
  EXPECT_EQ(o->net_cgroup_parent, "");
}

TEST(SupervisorEntries, OnlyCanonicalNumbersNameDevices) {
  EXPECT_EQ(parse_domid_entry("1"), DomId{1});
  EXPECT_EQ(parse_domid_entry("0"), DomId{0});
  EXPECT_EQ(parse_domid_entry("32751"), DomId{0x7FEF});
  for (const char* bad : {"", "abc", "..", ".", "007", "-1", "+1", " 1", "1 ", "32752", "65535", "1/2",
                          "99999999999999999999"})
    EXPECT_FALSE(parse_domid_entry(bad).has_value()) << "'" << bad << "'";
  EXPECT_EQ(parse_devid_entry("51712"), 51712u);
  EXPECT_EQ(parse_devid_entry("4294967295"), 4294967295u);
  for (const char* bad : {"", "xvda", "..", "0x10", "4294967296", "051712", "1/2", "a\nb"})
    EXPECT_FALSE(parse_devid_entry(bad).has_value()) << "'" << bad << "'";
}

TEST(SupervisorEntries, PrintableEscapesAndTruncates) {
  EXPECT_EQ(printable("abc"), "abc");
  EXPECT_EQ(printable(std::string_view("a\nb\0c", 5)), "a\\x0ab\\x00c");
  EXPECT_EQ(printable(std::string(100, 'x')), std::string(64, 'x') + "...");
}

TEST(SupervisorBackoff, DoublesToTheCapAndResetsAfterAStableRun) {
  Options o;
  Backoff b(o);
  EXPECT_EQ(b.after_exit(10ms), 1000ms);
  EXPECT_EQ(b.after_exit(10ms), 2000ms);
  EXPECT_EQ(b.after_exit(10ms), 4000ms);
  EXPECT_EQ(b.after_exit(10ms), 8000ms);
  EXPECT_EQ(b.after_exit(10ms), 16000ms);
  EXPECT_EQ(b.after_exit(10ms), 30000ms);
  EXPECT_EQ(b.after_exit(59s), 30000ms);
  EXPECT_EQ(b.after_exit(60s), 1000ms);  // ran long enough: the failure is a new one
  EXPECT_EQ(b.after_exit(1s), 2000ms);
}

}  // namespace
}  // namespace pvback::supervisor
