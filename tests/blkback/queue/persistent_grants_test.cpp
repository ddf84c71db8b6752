// The persistent-grant cache's table and LRU against a reference model (no hypervisor needed:
// entries hold empty Mappings).
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

}  // namespace
}  // namespace pvback::blkback
