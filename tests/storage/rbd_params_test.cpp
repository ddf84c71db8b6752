// The RBD targets an xl disk line can give (QEMU's syntax, which libxl passes through), parsed
// without a cluster: what each names, and the refusals an operator sees.
#include <gtest/gtest.h>

#include "storage/rbd_engine.hpp"

namespace pvback::test {
namespace {

using storage::names_rbd;
using storage::parse_rbd_params;

TEST(RbdParams, TheFormsLibxlWritesAreRecognised) {
  EXPECT_TRUE(names_rbd("rbd:pool/image"));
  EXPECT_TRUE(names_rbd("aio:rbd:pool/image"));  // backendtype=qdisk, format=raw
  EXPECT_TRUE(names_rbd("raw:rbd:pool/image"));
  EXPECT_FALSE(names_rbd("/var/lib/rbd:pool/image"));
  EXPECT_FALSE(names_rbd("qcow2:rbd:pool/image"));
  EXPECT_FALSE(names_rbd("nbd://host/export"));
}

TEST(RbdParams, PoolNamespaceImageSnapshotAndOptions) {
  auto o = parse_rbd_params("aio:rbd:vms/tenant1/disk0@nightly:id=xen:conf=/etc/ceph/other.conf"
                            ":mon_host=10.0.0.1\\:6789:rbd_cache=false");
  ASSERT_TRUE(o.has_value()) << o.error();
  EXPECT_EQ(o->pool, "vms");
  EXPECT_EQ(o->name_space, "tenant1");
  EXPECT_EQ(o->image, "disk0");
  EXPECT_EQ(o->snapshot, "nightly");
  EXPECT_EQ(o->id, "xen");
  EXPECT_EQ(o->conf, "/etc/ceph/other.conf");
  ASSERT_EQ(o->settings.size(), 2u);
  EXPECT_EQ(o->settings[0].first, "mon_host");
  EXPECT_EQ(o->settings[0].second, "10.0.0.1:6789");  // "\:" is a colon inside a value
  EXPECT_EQ(o->settings[1].first, "rbd_cache");
  EXPECT_EQ(o->settings[1].second, "false");

  auto plain = parse_rbd_params("rbd:rbd/vm1");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->pool, "rbd");
  EXPECT_EQ(plain->image, "vm1");
  EXPECT_TRUE(plain->name_space.empty());
  EXPECT_TRUE(plain->snapshot.empty());
  EXPECT_EQ(plain->id, "admin");
  EXPECT_TRUE(plain->conf.empty());
}

TEST(RbdParams, MalformedTargetsAreRefusedWithTheReason) {
  const char* bad[] = {
      "rbd:",                 // nothing named
      "rbd:image",            // no pool
      "rbd:a/b/c/d",          // too many parts
      "rbd:/image",           // empty pool
      "rbd:pool/",            // empty image
      "rbd:pool/image@",      // empty snapshot
      "rbd:pool/image:id",    // option without a value
      "rbd:pool/image:=x",    // option without a key
      "rbd:pool/image:id=",   // empty value
      "rbd:pool/ima\\ge",     // '\' escapes only ':' and '\'
      "rbd:pool/image\\",     // trailing '\'
      "rbd:pool/im\nage",     // control character
  };
  for (const char* p : bad) {
    auto o = parse_rbd_params(p);
    EXPECT_FALSE(o.has_value()) << p;
    if (!o) {
      EXPECT_FALSE(o.error().empty()) << p;
    }
  }
}

}  // namespace
}  // namespace pvback::test
