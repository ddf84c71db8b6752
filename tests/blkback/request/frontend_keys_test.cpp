// The pure reader of a blkfront's XenStore keys: what it accepts and how it refuses.
#include <map>

#include <gtest/gtest.h>

#include "blkback/frontend_keys.hpp"
#include "ring/blkif.hpp"

namespace pvback::blkback {
namespace {

struct Dir {
  std::map<std::string, std::string> keys;
  FrontendKeyReader reader() const {
    return [this](const std::string& k) -> std::expected<std::string, int> {
      auto it = keys.find(k);
      if (it == keys.end()) return std::unexpected(ENOENT);
      return it->second;
    };
  }
};

FrontendLimits limits(unsigned queues = 4, unsigned order = 4, bool persistent = true) {
  return FrontendLimits{queues, order, persistent};
}

TEST(FrontendKeys, ASinglePageSingleQueueFrontendWithLegacyKeys) {
  Dir d{{{"ring-ref", "8"}, {"event-channel", "15"}, {"feature-persistent", "1"}}};
  auto r = read_frontend(d.reader(), limits());
  ASSERT_TRUE(r) << r.error().why;
  EXPECT_EQ(r->abi, Abi::Native);
  EXPECT_EQ(r->queues, 1u);
  EXPECT_EQ(r->ring_page_order, 0u);
  EXPECT_TRUE(r->persistent_grants);
  ASSERT_EQ(r->rings.size(), 1u);
  EXPECT_EQ(r->rings[0].event_channel, 15u);
  EXPECT_EQ(r->rings[0].refs, std::vector<GrantRef>{8});
}

TEST(FrontendKeys, MultiQueueMultiPageRingsAndTheAbi) {
  Dir d{{{"protocol", std::string(blkif::kProtocolX86_32)}, {"multi-queue-num-queues", "2"}, {"ring-page-order", "1"},
         {"queue-0/event-channel", "3"}, {"queue-0/ring-ref0", "10"}, {"queue-0/ring-ref1", "11"},
         {"queue-1/event-channel", "4"}, {"queue-1/ring-ref0", "20"}, {"queue-1/ring-ref1", "21"}}};
  auto r = read_frontend(d.reader(), limits(2, 1, false));
  ASSERT_TRUE(r) << r.error().why;
  EXPECT_EQ(r->abi, Abi::X86_32);
  EXPECT_FALSE(r->persistent_grants);
  ASSERT_EQ(r->rings.size(), 2u);
  EXPECT_EQ(r->rings[1].event_channel, 4u);
  EXPECT_EQ(r->rings[1].refs, (std::vector<GrantRef>{20, 21}));
}

TEST(FrontendKeys, PersistentGrantsNeedBothEndsAndExactlyOne) {
  for (const char* v : {"0", "2", "01x", ""}) {
    Dir d{{{"ring-ref", "8"}, {"event-channel", "15"}, {"feature-persistent", v}}};
    auto r = read_frontend(d.reader(), limits());
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->persistent_grants) << v;
  }
  Dir d{{{"ring-ref", "8"}, {"event-channel", "15"}, {"feature-persistent", "1"}}};
  EXPECT_FALSE(read_frontend(d.reader(), limits(4, 4, false))->persistent_grants);
}

TEST(FrontendKeys, EveryBadValueIsRefusedNamingItsKey) {
  const std::map<std::string, std::string> good{{"ring-ref", "8"}, {"event-channel", "15"}};
  struct Case {
    std::string key, value;
    int error;
    std::string says;
  };
  const Case cases[] = {
      {"protocol", "x86_16-abi", EINVAL, "unknown protocol"},
      {"multi-queue-num-queues", "0", EINVAL, "0 queues"},
      {"multi-queue-num-queues", "5", EINVAL, "5 queues (1..4"},
      {"multi-queue-num-queues", "-1", EINVAL, "multi-queue-num-queues: invalid"},
      {"multi-queue-num-queues", "99999999999", EINVAL, "multi-queue-num-queues: invalid"},
      {"ring-page-order", "5", EINVAL, "ring-page-order 5 (max 4)"},
      {"ring-page-order", " 1", EINVAL, "ring-page-order: invalid"},
      {"event-channel", "4294967296", EINVAL, "event-channel: invalid"},
      {"event-channel", "", EINVAL, "event-channel: invalid"},
      {"ring-ref", "0x10", EINVAL, "ring-ref: invalid"},
  };
  for (const Case& c : cases) {
    Dir d{good};
    d.keys[c.key] = c.value;
    auto r = read_frontend(d.reader(), limits());
    ASSERT_FALSE(r) << c.key << "=" << c.value;
    EXPECT_EQ(r.error().error, c.error) << c.key;
    EXPECT_NE(r.error().why.find(c.says), std::string::npos) << r.error().why;
  }
}

TEST(FrontendKeys, MissingRingKeysAreRefusedAsMissing) {
  Dir no_evtchn{{{"ring-ref", "8"}}};
  auto a = read_frontend(no_evtchn.reader(), limits());
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().error, ENOENT);
  EXPECT_EQ(a.error().why, "event-channel: missing");
  // Order 2 needs ring-ref0..3; the legacy key does not stand in for them.
  Dir short_ring{{{"ring-page-order", "2"}, {"event-channel", "1"}, {"ring-ref", "8"}, {"ring-ref0", "9"},
                  {"ring-ref1", "10"}, {"ring-ref2", "11"}}};
  auto b = read_frontend(short_ring.reader(), limits());
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().why, "ring-ref3: missing");
  // Two queues read queue-N/, never the top-level keys.
  Dir flat{{{"multi-queue-num-queues", "2"}, {"event-channel", "1"}, {"ring-ref", "8"}}};
  auto c = read_frontend(flat.reader(), limits());
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().why, "queue-0/event-channel: missing");
}

TEST(FrontendKeys, AReadErrorOtherThanAbsenceIsPassedOn) {
  FrontendKeyReader failing = [](const std::string& k) -> std::expected<std::string, int> {
    if (k == "multi-queue-num-queues") return std::unexpected(EACCES);
    return std::unexpected(ENOENT);
  };
  auto r = read_frontend(failing, limits());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().error, EACCES);
}

}  // namespace
}  // namespace pvback::blkback
