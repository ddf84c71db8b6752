#include <gtest/gtest.h>

#include <cerrno>
#include <cstdlib>
#include <optional>
#include <string>

#include "xenbus/backend_device.hpp"
#include "xenbus/hotplug.hpp"
#include "xenbus/state.hpp"
#include "xenbus/xenstore.hpp"

namespace pvback::xenbus {
namespace {

TEST(ConnectionError, OnlyErrorsNoServerReplyCarries) {
  for (int e : {EBADF, EPIPE, ECONNRESET, ECONNABORTED, ENOTCONN, ESHUTDOWN})
    EXPECT_TRUE(is_connection_error(e)) << e;
  // What xenstored answers (xsd_errors), and libxenstore's own EAGAIN/EINVAL/E2BIG.
  for (int e : {0, ENOENT, EACCES, EPERM, EINVAL, EEXIST, EISDIR, ENOMEM, ENOSPC, EIO, ENOTEMPTY, ENOSYS, EROFS,
                EBUSY, EAGAIN, EISCONN, E2BIG})
    EXPECT_FALSE(is_connection_error(e)) << e;
}

TEST(ParseUint, AcceptsPlainDecimal) {
  EXPECT_EQ(parse_uint("0").value(), 0u);
  EXPECT_EQ(parse_uint("42").value(), 42u);
  EXPECT_EQ(parse_uint("007").value(), 7u);
  EXPECT_EQ(parse_uint("18446744073709551615").value(), UINT64_MAX);
}

TEST(ParseUint, RejectsAnythingElse) {
  for (const char* bad : {"", " 1", "1 ", "+1", "-1", "0x10", "1e3", "12a", "a", "1\n", "1.0"}) {
    auto parsed = parse_uint(bad);
    ASSERT_FALSE(parsed.has_value()) << '"' << bad << '"';
    EXPECT_EQ(parsed.error(), EINVAL) << '"' << bad << '"';
  }
  EXPECT_EQ(parse_uint(std::string("1\0", 2)).error(), EINVAL);
}

TEST(ParseUint, RangeErrors) {
  EXPECT_EQ(parse_uint("18446744073709551616").error(), ERANGE);
  EXPECT_EQ(parse_uint("99999999999999999999999999").error(), ERANGE);
  EXPECT_EQ(parse_uint("256", 255).error(), ERANGE);
  EXPECT_EQ(parse_uint("255", 255).value(), 255u);
}

TEST(ParseInt, SignedValues) {
  EXPECT_EQ(parse_int("-5").value(), -5);
  EXPECT_EQ(parse_int("5").value(), 5);
  EXPECT_EQ(parse_int("-9223372036854775808").value(), INT64_MIN);
  EXPECT_EQ(parse_int("9223372036854775807").value(), INT64_MAX);
  EXPECT_EQ(parse_int("9223372036854775808").error(), ERANGE);
  EXPECT_EQ(parse_int("-9223372036854775809").error(), ERANGE);
  EXPECT_EQ(parse_int("-").error(), EINVAL);
  EXPECT_EQ(parse_int("--1").error(), EINVAL);
  EXPECT_EQ(parse_int("+1").error(), EINVAL);
  EXPECT_EQ(parse_int("-3", -2, 10).error(), ERANGE);
  EXPECT_EQ(parse_int("11", -2, 10).error(), ERANGE);
}

TEST(ParseState, OnlyDigitsZeroToEight) {
  EXPECT_EQ(parse_state("4"), XenbusStateConnected);
  EXPECT_EQ(parse_state("0"), XenbusStateUnknown);
  EXPECT_EQ(parse_state("8"), XenbusStateReconfigured);
  for (const char* bad : {"", "9", "-1", "04", "4 ", "Connected", "99999999999999999999"})
    EXPECT_FALSE(parse_state(bad).has_value()) << '"' << bad << '"';
  EXPECT_EQ(state_name(XenbusStateInitWait), "InitWait");
}

TEST(BackendPath, ParsesWellFormedPath) {
  auto parsed = parse_backend_path("/local/domain/0/backend/vbd/5/768");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->backend_domid, 0);
  EXPECT_EQ(parsed->type, "vbd");
  EXPECT_EQ(parsed->frontend_domid, 5);
  EXPECT_EQ(parsed->devid, "768");
}

TEST(BackendPath, RejectsMalformedPaths) {
  for (const char* bad : {"", "/", "local/domain/0/backend/vbd/5/768", "/local/domain/0/backend/vbd/5",
                          "/local/domain/0/backend/vbd/5/768/", "/local/domain/0/backend/vbd/5/768/x",
                          "/local/domain/0/frontend/vbd/5/768", "/local/domain/x/backend/vbd/5/768",
                          "/local/domain/0/backend/vbd/-5/768", "/local/domain/0/backend/vbd/32752/768",
                          "/local/domain/0/backend/vbd/99999999999999999999999/768",
                          "/local/domain/0/backend/../5/768", "/local/domain/0/backend/vbd//768"}) {
    auto parsed = parse_backend_path(bad);
    ASSERT_FALSE(parsed.has_value()) << bad;
    EXPECT_EQ(parsed.error(), EINVAL) << bad;
  }
}

TEST(FrontendPath, MustBelongToTheFrontendDomain) {
  EXPECT_TRUE(valid_frontend_path("/local/domain/5/device/vbd/768", 5));
  EXPECT_TRUE(valid_frontend_path("/local/domain/5/device/vif/0", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/6/device/vbd/768", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/device", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/device/", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/data/vbd/768", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/device/../../0/backend", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/device/vbd/./768", 5));
  EXPECT_FALSE(valid_frontend_path("local/domain/5/device/vbd/768", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/05x/device/vbd/768", 5));
  EXPECT_FALSE(valid_frontend_path("/local/domain/5/device/vbd/7 68", 5));
  EXPECT_FALSE(valid_frontend_path("", 5));
}

TEST(XenStoreOpen, MissingSocketIsAnErrorAndRestoresEnvironment) {
  setenv("XENSTORED_PATH", "/nonexistent/previous", 1);
  auto xs = XenStore::open("/nonexistent/pvback-test/socket");
  ASSERT_FALSE(xs.has_value());
  EXPECT_NE(xs.error(), 0);
  ASSERT_NE(std::getenv("XENSTORED_PATH"), nullptr);
  EXPECT_STREQ(std::getenv("XENSTORED_PATH"), "/nonexistent/previous");
  unsetenv("XENSTORED_PATH");
}

TEST(XenStoreOpen, UnconnectedHandleReportsNotConnected) {
  XenStore xs;
  EXPECT_FALSE(static_cast<bool>(xs));
  EXPECT_EQ(xs.read("/a").error(), ENOTCONN);
  EXPECT_EQ(xs.write("/a", "1"), ENOTCONN);
  EXPECT_EQ(xs.fd(), -1);
  EXPECT_EQ(xs.read_watch().error(), ENOTCONN);
}

}  // namespace
}  // namespace pvback::xenbus

namespace pvback::xenbus {
namespace {

using Kind = HotplugVerdict::Kind;
using Opt = std::optional<std::string>;

TEST(HotplugVerdict, NoScriptNoWait) {
  EXPECT_EQ(hotplug_verdict(std::nullopt, std::nullopt, std::nullopt, std::nullopt).kind, Kind::NoScript);
  EXPECT_EQ(hotplug_verdict(Opt(""), std::nullopt, std::nullopt, std::nullopt).kind, Kind::NoScript);
  // A status without a script (a toolstack that writes one anyway) changes nothing.
  EXPECT_EQ(hotplug_verdict(std::nullopt, Opt("error"), std::nullopt, std::nullopt).kind, Kind::NoScript);
}

TEST(HotplugVerdict, ScriptPendingUntilItReports) {
  const Opt script("/etc/xen/scripts/block");
  EXPECT_EQ(hotplug_verdict(script, std::nullopt, std::nullopt, std::nullopt).kind, Kind::Pending);
  EXPECT_EQ(hotplug_verdict(script, Opt(""), std::nullopt, Opt("")).kind, Kind::Pending);
  EXPECT_EQ(hotplug_verdict(script, Opt("connected"), std::nullopt, std::nullopt).kind, Kind::Connected);
  EXPECT_EQ(hotplug_verdict(script, std::nullopt, std::nullopt, Opt("fe:1")).kind, Kind::Connected);
}

TEST(HotplugVerdict, AnyOtherStatusFailsWithItsReason) {
  const Opt script("/etc/xen/scripts/block");
  auto busy = hotplug_verdict(script, Opt("busy"), Opt("File /x is loopback-mounted through /dev/loop0"), Opt("7:0"));
  EXPECT_EQ(busy.kind, Kind::Failed) << "a status other than connected wins over physical-device";
  EXPECT_EQ(busy.detail, "File /x is loopback-mounted through /dev/loop0");
  auto error = hotplug_verdict(script, Opt("error"), std::nullopt, std::nullopt);
  EXPECT_EQ(error.kind, Kind::Failed);
  EXPECT_EQ(error.detail, "hotplug-status error");
  EXPECT_EQ(hotplug_verdict(script, Opt("Connected"), std::nullopt, std::nullopt).kind, Kind::Failed);
}

}  // namespace
}  // namespace pvback::xenbus
