// Without /dev/xen the real-Xen implementations must fail to open with a clear error.
#include <sys/stat.h>

#include <string>
#include <system_error>

#include <gtest/gtest.h>

#include "grant/implementations.hpp"
#include "grant/platform.hpp"

namespace pvback::test {
namespace {

bool have_xen() {
  struct stat st{};
  return ::stat("/dev/xen", &st) == 0;
}

template <class Open>
std::string open_error(Open open) {
  try {
    auto handle = open();
    return "opened";
  } catch (const std::system_error& e) {
    return e.what();
  }
}

TEST(XenOpen, FailsWithAClearErrorWithoutXen) {
  if (have_xen()) GTEST_SKIP() << "/dev/xen exists: this test is for machines without Xen";
  EXPECT_NE(open_error(grant::open_xen_mapper).find("/dev/xen/gntdev"), std::string::npos);
  EXPECT_NE(open_error(grant::open_xen_sharer).find("/dev/xen/gntalloc"), std::string::npos);
  EXPECT_NE(open_error(grant::open_xen_event_channels).find("/dev/xen/evtchn"), std::string::npos);
  grant::Platform xen(grant::PlatformConfig{});
  EXPECT_NE(open_error([&] { return xen.open_mapper(); }).find("xengnttab_open"), std::string::npos);
}

}  // namespace
}  // namespace pvback::test
