// The vif's record (netback/vif_record.hpp): whose it is, what a successor resumes, the guest's
// state across a writer killed mid-save, and the file the control part keeps it in.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "netback/vif_record.hpp"

namespace pvback::netback {
namespace {

VifRecordKey two_queues() {
  VifRecordKey k;
  k.frontend_domid = 3;
  k.queues = {{8, 9, 20, 21}, {10, 11, 22, 23}};
  k.ctrl = true;
  k.ctrl_ref = 12;
  k.ctrl_port = 24;
  return k;
}

class VifRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fd = open_record("", 2);
    ASSERT_TRUE(fd.has_value());
    fd_ = std::move(*fd);
  }
  std::unique_ptr<VifRecord> map() {
    auto r = VifRecord::map(fd_.get(), 2);
    EXPECT_TRUE(r.has_value());
    return r ? std::move(*r) : nullptr;
  }
  UniqueFd fd_;
};

TEST_F(VifRecordTest, ALiveRecordOfTheSameConnectionIsResumedAndAnyOtherStartsAfresh) {
  std::string why;
  auto r = map();
  EXPECT_FALSE(r->begin(two_queues(), true, why)) << "an empty file resumed";
  EXPECT_NE(why.find("format"), std::string::npos) << why;
  r->tx_journal(1)->state = kJournalCommitted;
  GuestSetState g;
  g.hash.flags = 5;
  r->save(g);
  // A successor (another mapping of the same file) of the same connection resumes it whole.
  auto successor = map();
  EXPECT_TRUE(successor->begin(two_queues(), true, why)) << why;
  EXPECT_EQ(successor->tx_journal(1)->state, kJournalCommitted);
  ASSERT_TRUE(successor->guest_state().has_value());
  EXPECT_EQ(successor->guest_state()->hash.flags, 5u);
  // Each difference is another connection: nothing of the record is kept.
  auto differs = [&](auto change, const char* what) {
    VifRecordKey k = two_queues();
    change(k);
    auto other = map();
    std::string why2;
    EXPECT_FALSE(other->begin(k, true, why2)) << what;
    EXPECT_NE(why2.find("another connection"), std::string::npos) << what << ": " << why2;
    EXPECT_EQ(other->tx_journal(1)->state, kJournalIdle) << what;
    EXPECT_FALSE(other->guest_state().has_value()) << what;
    // (Back to the original for the next case.)
    EXPECT_FALSE(other->begin(two_queues(), false, why2));
    other->tx_journal(1)->state = kJournalCommitted;
    other->save(g);
  };
  differs([](VifRecordKey& k) { k.frontend_domid = 4; }, "domain");
  differs([](VifRecordKey& k) { k.queues[1].rx_ref = 99; }, "rx ring");
  differs([](VifRecordKey& k) { k.queues[0].tx_port = 99; }, "tx channel");
  differs([](VifRecordKey& k) { k.ctrl = false; }, "no control ring");
  differs([](VifRecordKey& k) { k.ctrl_ref = 99; }, "control ring");
  differs([](VifRecordKey& k) { k.queues.pop_back(); }, "one queue");
  // Not asked to resume: afresh.
  auto fresh = map();
  EXPECT_FALSE(fresh->begin(two_queues(), false, why));
  EXPECT_EQ(fresh->tx_journal(1)->state, kJournalIdle);
  EXPECT_FALSE(fresh->guest_state().has_value());
}

TEST_F(VifRecordTest, TheGuestStateOfTheLastWholeSaveSurvivesAWriterKilledMidSave) {
  std::string why;
  auto r = map();
  r->begin(two_queues(), false, why);
  GuestSetState a, b;
  a.hash.flags = 1;
  a.multicast_count = 1;
  b.hash.flags = 2;
  b.multicast_count = 2;
  r->save(a);
  r->save(b);
  ASSERT_EQ(r->guest_state()->hash.flags, 2u);
  // A third save killed half-way writes into the copy that is not current: scribble over it.
  auto* base = static_cast<std::byte*>(::mmap(nullptr, VifRecord::bytes_for(2), PROT_READ | PROT_WRITE, MAP_SHARED,
                                              fd_.get(), 0));
  ASSERT_NE(base, MAP_FAILED);
  // The two copies follow the header, 64-byte aligned: the older one (a) is the one written next.
  bool scribbled = false;
  for (std::size_t off = 64; off + sizeof(GuestSetState) < VifRecord::bytes_for(2) && !scribbled; off += 64) {
    GuestSetState probe;
    std::memcpy(&probe, base + off, sizeof probe);
    if (probe.hash.flags == 1 && probe.multicast_count == 1) {
      std::memset(base + off, 0x5A, sizeof probe);
      scribbled = true;
    }
  }
  ::munmap(base, VifRecord::bytes_for(2));
  ASSERT_TRUE(scribbled) << "the second save overwrote the first: no copy stays whole while one is written";
  EXPECT_EQ(r->guest_state()->hash.flags, 2u);
  EXPECT_EQ(r->guest_state()->multicast_count, 2u);
}

TEST_F(VifRecordTest, JournalsAreDistinctPerRing) {
  std::string why;
  auto r = map();
  r->begin(two_queues(), false, why);
  EXPECT_NE(r->tx_journal(0), r->rx_journal(0));
  EXPECT_NE(r->rx_journal(0), r->tx_journal(1));
  EXPECT_NE(r->ctrl_journal(), r->tx_journal(0));
  EXPECT_EQ(r->tx_journal(2), nullptr);
  EXPECT_EQ(r->rx_journal(2), nullptr);
  auto* end = reinterpret_cast<std::byte*>(r->rx_journal(1) + 1);
  EXPECT_LE(end - reinterpret_cast<std::byte*>(r->ctrl_journal()),
            static_cast<std::ptrdiff_t>(VifRecord::bytes_for(2)));
}

TEST(VifRecord, RefusesWhatDoesNotFit) {
  auto small = open_record("", 1);
  ASSERT_TRUE(small.has_value());
  EXPECT_EQ(VifRecord::map(small->get(), 2).error(), EINVAL) << "a file sized for fewer queues";
  EXPECT_EQ(VifRecord::map(small->get(), 0).error(), EINVAL);
  EXPECT_EQ(VifRecord::map(small->get(), kRecordMaxQueues + 1).error(), EINVAL);
}

TEST(VifRecord, TheFileIsPrivateKeptAtItsSizeAndNeverFollowedThroughASymlink) {
  char dir_template[] = "/tmp/pvback-vif-record-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  const std::filesystem::path dir = dir_template;
  const std::string path = (dir / "vif-3-0").string();
  {
    auto fd = open_record(path, 2);
    ASSERT_TRUE(fd.has_value());
    struct stat st {};
    ASSERT_EQ(::fstat(fd->get(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(static_cast<std::size_t>(st.st_size), VifRecord::bytes_for(2));
    auto r = VifRecord::map(fd->get(), 2);
    std::string why;
    (*r)->begin(two_queues(), false, why);
  }
  {
    // Opened again for the same queues: its contents stay (a predecessor's record).
    auto fd = open_record(path, 2);
    auto r = VifRecord::map(fd->get(), 2);
    std::string why;
    EXPECT_TRUE((*r)->begin(two_queues(), true, why)) << why;
  }
  std::filesystem::create_symlink(path, dir / "link");
  EXPECT_EQ(open_record((dir / "link").string(), 2).error(), ELOOP);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace pvback::netback
