// The persistent-grant cache's table and LRU against a reference model (no hypervisor needed:
// entries hold empty Mappings).
#include <algorithm>
#include <map>
#include <random>

#include <gtest/gtest.h>

#include "blkback/persistent_grants.hpp"

namespace pvback::blkback {
namespace {

TEST(PersistentGrants, RandomInsertExpireMatchesModel) {
  PersistentGrants cache(64);
  std::map<GrantRef, std::int64_t> model;  // gref -> last use
  std::mt19937 rng(7);
  std::int64_t now = 0;
  for (int step = 0; step < 20000; ++step) {
    ++now;
    const GrantRef gref = rng() % 200 + (rng() % 2) * 0x10000;  // collisions in the hash
    const std::int32_t e = cache.find(gref);
    ASSERT_EQ(e != PersistentGrants::kNone, model.contains(gref)) << step;
    if (e != PersistentGrants::kNone) {
      ASSERT_EQ(cache.at(e).gref, gref);
      cache.touch(e, now);
      model[gref] = now;
    } else if (!cache.full()) {
      cache.insert(gref, grant::Mapping{}, now);
      model[gref] = now;
    }
    if (step % 97 == 0) {
      const std::int64_t cutoff = now - 40;
      cache.expire(cutoff);
      std::erase_if(model, [&](const auto& kv) { return kv.second < cutoff; });
    }
    ASSERT_EQ(cache.size(), model.size());
  }
  for (const auto& [gref, last] : model) ASSERT_NE(cache.find(gref), PersistentGrants::kNone);
  cache.clear();
  EXPECT_EQ(cache.size(), 0u);
  for (const auto& [gref, last] : model) EXPECT_EQ(cache.find(gref), PersistentGrants::kNone);
}

TEST(PersistentGrants, EntriesInUseAreNotExpired) {
  PersistentGrants cache(4);
  const std::int32_t a = cache.insert(1, grant::Mapping{}, 0);
  cache.insert(2, grant::Mapping{}, 0);
  cache.at(a).users = 1;
  EXPECT_EQ(cache.expire(10), 1u);
  EXPECT_NE(cache.find(1), PersistentGrants::kNone);
  EXPECT_EQ(cache.find(2), PersistentGrants::kNone);
  cache.at(a).users = 0;
  EXPECT_EQ(cache.expire(10), 1u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(PersistentGrants, ZeroCapacityIsAlwaysFull) {
  PersistentGrants cache(0);
  EXPECT_TRUE(cache.full());
  EXPECT_EQ(cache.find(5), PersistentGrants::kNone);
}

// The operator's max_persistent_grants at run time: shrinking unmaps the least recently used
// entries not in use (those in use at the next expire once idle), growing makes room (and a
// bigger table, every entry still found), against the model through many changes.
TEST(PersistentGrants, TheBoundChangesAtRunTime) {
  PersistentGrants cache(8);
  for (GrantRef g = 1; g <= 8; ++g) cache.insert(g, grant::Mapping{}, g);  // 1 is the least recent
  cache.at(cache.find(2)).users = 1;
  EXPECT_EQ(cache.set_capacity(5), 3u);  // 1, 3, 4 go; 2 is in use
  EXPECT_EQ(cache.size(), 5u);
  for (GrantRef g : {1u, 3u, 4u}) EXPECT_EQ(cache.find(g), PersistentGrants::kNone) << g;
  EXPECT_NE(cache.find(2), PersistentGrants::kNone);
  EXPECT_TRUE(cache.full());
  EXPECT_EQ(cache.set_capacity(0), 4u);  // 5 to 8 go; 2 stays while in use
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_NE(cache.find(2), PersistentGrants::kNone);
  cache.at(cache.find(2)).users = 0;
  EXPECT_EQ(cache.expire(0), 1u);  // nothing is old: the excess goes all the same
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.find(2), PersistentGrants::kNone);

  // Grown past what the table was made for, and through random use.
  std::map<GrantRef, std::int64_t> model;
  std::mt19937 rng(11);
  std::int64_t now = 100;
  std::uint32_t capacity = 0;
  for (int step = 0; step < 20000; ++step) {
    ++now;
    if (step % 1000 == 0) {
      capacity = rng() % 300;
      cache.set_capacity(capacity);
      // The model drops its least recently used beyond the bound (none is in use here).
      while (model.size() > capacity) {
        auto oldest = std::ranges::min_element(model, {}, [](const auto& kv) { return kv.second; });
        model.erase(oldest);
      }
    }
    const GrantRef gref = rng() % 400 + (rng() % 2) * 0x10000;
    const std::int32_t e = cache.find(gref);
    ASSERT_EQ(e != PersistentGrants::kNone, model.contains(gref)) << step;
    if (e != PersistentGrants::kNone) {
      cache.touch(e, now);
      model[gref] = now;
    } else if (!cache.full()) {
      cache.insert(gref, grant::Mapping{}, now);
      model[gref] = now;
    }
    ASSERT_EQ(cache.size(), model.size()) << step;
    ASSERT_LE(cache.size(), capacity) << step;
  }
  for (const auto& [gref, last] : model) ASSERT_NE(cache.find(gref), PersistentGrants::kNone);
}

}  // namespace
}  // namespace pvback::blkback
