// The tunables' tables (base/tunables.hpp) and the two backends' (blkback/tunables.cpp,
// netback/tunables.cpp): names, aliases, ranges, booleans, the kernel's names pvback refuses.
#include <gtest/gtest.h>

#include "base/tunables.hpp"
#include "blkback/tunables.hpp"
#include "netback/tunables.hpp"

namespace pvback {
namespace {

TEST(Tunables, AVbdTakesTheKernelsNamesAndSaysWhenEachTakesEffect) {
  blkback::BackendOptions o;
  auto c = set_tunable(blkback::vbd_tunables(), "vbd", o, "max_persistent_grants", "512");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->old_value, 1056u);
  EXPECT_EQ(c->value, 512u);
  EXPECT_EQ(c->when, TakesEffect::Now);
  EXPECT_EQ(o.max_persistent_grants, 512u);

  c = set_tunable(blkback::vbd_tunables(), "vbd", o, "persistent-grant-unused-seconds", "5");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(o.persistent_idle_expiry, std::chrono::seconds(5));

  // The alias is reported by the table's name.
  c = set_tunable(blkback::vbd_tunables(), "vbd", o, "max_indirect_segments", "32");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_EQ(c->name, "indirect_threshold");
  EXPECT_EQ(c->when, TakesEffect::NextConnect);
  EXPECT_EQ(o.max_indirect_segments, 32u);

  c = set_tunable(blkback::vbd_tunables(), "vbd", o, "feature_persistent", "off");
  ASSERT_TRUE(c.has_value()) << c.error();
  EXPECT_FALSE(o.persistent_grants);

  const auto values = tunable_values(blkback::vbd_tunables(), o);
  ASSERT_FALSE(values.empty());
  for (const auto& v : values) EXPECT_NE(v.when, TakesEffect::Never) << v.name;
}

TEST(Tunables, BadNamesAndValuesAreRefusedWithWhatIsAccepted) {
  blkback::BackendOptions o;
  const auto before = o.max_ring_page_order;
  auto c = set_tunable(blkback::vbd_tunables(), "vbd", o, "max_ring_page_order", "7");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error(), "max_ring_page_order is a number from 0 to 6, not '7'");
  const auto queues = o.max_queues;
  for (const char* bad : {"", "-1", "1x", " 2", "99999999999999999999999"})
    EXPECT_FALSE(set_tunable(blkback::vbd_tunables(), "vbd", o, "max_queues", bad).has_value()) << bad;
  EXPECT_EQ(o.max_ring_page_order, before);
  EXPECT_EQ(o.max_queues, queues);

  c = set_tunable(blkback::vbd_tunables(), "vbd", o, "max_queue", "1");
  ASSERT_FALSE(c.has_value());
  EXPECT_TRUE(c.error().starts_with("a vbd has no tunable 'max_queue' (it has max_persistent_grants, ")) << c.error();
  EXPECT_EQ(c.error().find("max_buffer_pages"), std::string::npos) << "a refused kernel name is not offered";

  // A kernel name pvback has nothing to apply to: refused, saying why.
  c = set_tunable(blkback::vbd_tunables(), "vbd", o, "max_buffer_pages", "1024");
  ASSERT_FALSE(c.has_value());
  EXPECT_TRUE(c.error().starts_with("max_buffer_pages does not apply to pvback: ")) << c.error();

  EXPECT_FALSE(set_tunable(blkback::vbd_tunables(), "vbd", o, "feature_persistent", "2").has_value());
}

TEST(Tunables, AVifTakesNetbacksNames) {
  netback::VifOptions o;
  for (auto [name, value] : {std::pair{"max_queues", "2"}, {"separate_tx_rx_irq", "0"},
                             {"provides_xdp_headroom", "no"}, {"fatal_skb_slots", "30"},
                             {"rx_stall_timeout_msecs", "1500"}}) {
    auto c = set_tunable(netback::vif_tunables(), "vif", o, name, value);
    ASSERT_TRUE(c.has_value()) << name << ": " << c.error();
    EXPECT_EQ(c->when, TakesEffect::NextConnect) << name;
  }
  EXPECT_EQ(o.max_queues, 2u);
  EXPECT_FALSE(o.split_event_channels);
  EXPECT_FALSE(o.xdp_headroom);
  EXPECT_EQ(o.fatal_slots, 30u);
  EXPECT_EQ(o.rx_stall_timeout, std::chrono::milliseconds(1500));
  EXPECT_FALSE(set_tunable(netback::vif_tunables(), "vif", o, "hash_cache_size", "64").has_value());
  // Below the TX ring's 256 slots, which the queue refuses (netif::kTxRingSize).
  EXPECT_FALSE(set_tunable(netback::vif_tunables(), "vif", o, "fatal_skb_slots", "256").has_value());
  EXPECT_FALSE(set_tunable(netback::vif_tunables(), "vif", o, "max_persistent_grants", "64").has_value());
}

TEST(Tunables, TheCommandLinesSetOption) {
  blkback::BackendOptions o;
  EXPECT_EQ(set_tunable_option(blkback::vbd_tunables(), "vbd", o, "max_queues=3"), "");
  EXPECT_EQ(o.max_queues, 3u);
  EXPECT_EQ(set_tunable_option(blkback::vbd_tunables(), "vbd", o, "max_queues"),
            "--set takes NAME=VALUE, not 'max_queues'");
  EXPECT_TRUE(set_tunable_option(blkback::vbd_tunables(), "vbd", o, "max_queues=300").starts_with("--set: "));
}

}  // namespace
}  // namespace pvback
