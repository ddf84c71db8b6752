// Grant mapping and copying on the simulated hypervisor: permissions enforced as on Xen.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "tests/grant/sim_fixture.hpp"

namespace pvback::test {
namespace {

using grant::CopySegment;

class SimGrantTest : public SimHypervisorTest {
 protected:
  void SetUp() override {
    SimHypervisorTest::SetUp();
    if (HasFatalFailure()) return;
    guest_ = platform(1).open_sharer();
    backend_ = platform(0).open_mapper();
    spy_ = std::make_unique<GrantTableSpy>(run_dir_, 1);
  }
  void TearDown() override {
    spy_.reset();
    backend_.reset();
    guest_.reset();
    SimHypervisorTest::TearDown();
  }

  CopySegment copy_from(GrantRef ref, DomId domid, void* to, std::uint16_t offset, std::uint16_t len) {
    CopySegment seg{};
    seg.source.foreign.ref = ref;
    seg.source.foreign.domid = domid;
    seg.source.foreign.offset = offset;
    seg.dest.virt = to;
    seg.len = len;
    seg.flags = GNTCOPY_source_gref;
    seg.status = 1;
    return seg;
  }
  CopySegment copy_to(GrantRef ref, DomId domid, const void* from, std::uint16_t offset, std::uint16_t len) {
    CopySegment seg{};
    seg.source.virt = const_cast<void*>(from);
    seg.dest.foreign.ref = ref;
    seg.dest.foreign.domid = domid;
    seg.dest.foreign.offset = offset;
    seg.len = len;
    seg.flags = GNTCOPY_dest_gref;
    seg.status = 1;
    return seg;
  }

  std::unique_ptr<grant::GrantSharer> guest_;
  std::unique_ptr<grant::GrantMapper> backend_;
  std::unique_ptr<GrantTableSpy> spy_;
};

TEST_F(SimGrantTest, SharedPagesAreVisibleThroughMappingBothWays) {
  auto shared = guest_->share(0, 3, Access::ReadWrite);
  ASSERT_TRUE(shared.has_value()) << std::strerror(shared.error());
  ASSERT_EQ(shared->pages(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(spy_->flags(shared->refs()[i]), GTF_permit_access);
    EXPECT_EQ(spy_->domid(shared->refs()[i]), 0);
    std::memset(shared->page(i), 'a' + i, kXenPageSize);
  }
  auto mapping = backend_->map(1, shared->refs(), Access::ReadWrite);
  ASSERT_TRUE(mapping.has_value()) << std::strerror(mapping.error());
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(static_cast<char>(mapping->page(i)[0]), 'a' + i);
    EXPECT_EQ(static_cast<char>(mapping->page(i)[kXenPageSize - 1]), 'a' + i);
  }
  mapping->page(1)[17] = std::byte{'Z'};
  EXPECT_EQ(static_cast<char>(shared->page(1)[17]), 'Z');
}

TEST_F(SimGrantTest, InUseFlagsAndPinsWhileMappedClearedAfter) {
  auto rw = guest_->share(0, 1, Access::ReadWrite);
  auto ro = guest_->share(0, 1, Access::ReadOnly);
  ASSERT_TRUE(rw && ro);
  const GrantRef rw_ref = rw->refs()[0];
  const GrantRef ro_ref = ro->refs()[0];
  EXPECT_EQ(spy_->flags(ro_ref), GTF_permit_access | GTF_readonly);
  {
    auto map_rw = backend_->map(1, rw->refs(), Access::ReadWrite);
    auto map_ro = backend_->map(1, ro->refs(), Access::ReadOnly);
    auto map_rw_again = backend_->map(1, rw->refs(), Access::ReadOnly);
    ASSERT_TRUE(map_rw && map_ro && map_rw_again);
    EXPECT_EQ(spy_->flags(rw_ref) & (GTF_reading | GTF_writing), GTF_reading | GTF_writing);
    EXPECT_EQ(spy_->flags(ro_ref) & (GTF_reading | GTF_writing), GTF_reading);
    EXPECT_NE(spy_->pins(rw_ref), 0u);
    map_rw->reset();
    // A read-only mapping remains: still reading, no longer writing.
    EXPECT_EQ(spy_->flags(rw_ref) & (GTF_reading | GTF_writing), GTF_reading);
  }
  EXPECT_EQ(spy_->flags(rw_ref), GTF_permit_access);
  EXPECT_EQ(spy_->flags(ro_ref), GTF_permit_access | GTF_readonly);
  EXPECT_EQ(spy_->pins(rw_ref), 0u);
  EXPECT_EQ(spy_->pins(ro_ref), 0u);
  // Ending access after the last unmap clears the entry.
  rw->reset();
  EXPECT_EQ(spy_->flags(rw_ref), 0);
}

TEST_F(SimGrantTest, MapRefusesPermissionViolations) {
  auto to_dom2 = guest_->share(2, 1, Access::ReadWrite);
  auto readonly = guest_->share(0, 1, Access::ReadOnly);
  ASSERT_TRUE(to_dom2 && readonly);

  auto wrong_domain = backend_->map(1, to_dom2->refs(), Access::ReadOnly);
  ASSERT_FALSE(wrong_domain);
  EXPECT_EQ(wrong_domain.error(), EPERM);

  auto write_readonly = backend_->map(1, readonly->refs(), Access::ReadWrite);
  ASSERT_FALSE(write_readonly);
  EXPECT_EQ(write_readonly.error(), EPERM);
  EXPECT_TRUE(backend_->map(1, readonly->refs(), Access::ReadOnly).has_value());

  const GrantRef out_of_range[] = {sim_protocol::kGrantEntries};
  auto bad_ref = backend_->map(1, out_of_range, Access::ReadOnly);
  ASSERT_FALSE(bad_ref);
  EXPECT_EQ(bad_ref.error(), EINVAL);

  const GrantRef never_granted[] = {3};  // a reserved ref no sharer hands out
  auto not_granted = backend_->map(1, never_granted, Access::ReadOnly);
  ASSERT_FALSE(not_granted);
  EXPECT_EQ(not_granted.error(), EPERM);

  // A malicious guest grants a frame beyond its memory.
  spy_->write_entry(5, GTF_permit_access, 0, 0x0FFFFFFF);
  const GrantRef bad_frame[] = {5};
  auto frame_out_of_range = backend_->map(1, bad_frame, Access::ReadOnly);
  ASSERT_FALSE(frame_out_of_range);
  EXPECT_EQ(frame_out_of_range.error(), EINVAL);
  EXPECT_EQ(spy_->flags(5), GTF_permit_access) << "a refused map must not leave in-use flags";
  EXPECT_EQ(spy_->pins(5), 0u);

  auto no_such_domain = backend_->map(77, readonly->refs(), Access::ReadOnly);
  ASSERT_FALSE(no_such_domain);
  EXPECT_EQ(no_such_domain.error(), ESRCH);

  // Acting as the wrong domain: domain 2 mapping a grant meant for domain 0.
  auto other_backend = platform(2).open_mapper();
  auto as_dom2 = other_backend->map(1, readonly->refs(), Access::ReadOnly);
  ASSERT_FALSE(as_dom2);
  EXPECT_EQ(as_dom2.error(), EPERM);
}

TEST_F(SimGrantTest, PartialBatchFailureLeavesNothingMapped) {
  auto good = guest_->share(0, 3, Access::ReadWrite);
  ASSERT_TRUE(good);
  std::vector<GrantRef> refs(good->refs().begin(), good->refs().end());
  refs.insert(refs.begin() + 2, 6);  // not granted, in the middle of the batch
  auto mapping = backend_->map(1, refs, Access::ReadWrite);
  ASSERT_FALSE(mapping);
  EXPECT_EQ(mapping.error(), EPERM);
  for (GrantRef ref : good->refs()) {
    EXPECT_EQ(spy_->flags(ref), GTF_permit_access) << "ref " << ref;
    EXPECT_EQ(spy_->pins(ref), 0u) << "ref " << ref;
  }
  // Since nothing stayed mapped, the guest can end access to every page.
  std::vector<GrantRef> good_refs(good->refs().begin(), good->refs().end());
  good->reset();
  for (GrantRef ref : good_refs) EXPECT_EQ(spy_->flags(ref), 0) << "ref " << ref;
}

TEST_F(SimGrantTest, ByteAfterMappedPagesFaults) {
  auto shared = guest_->share(0, 2, Access::ReadWrite);
  ASSERT_TRUE(shared);
  auto mapping = backend_->map(1, shared->refs(), Access::ReadWrite);
  ASSERT_TRUE(mapping);
  std::memset(shared->data(), 7, 2 * kXenPageSize);
  volatile std::byte* last = mapping->page(1) + kXenPageSize - 1;
  volatile std::byte* beyond = mapping->page(2);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGSEGV, SIG_DFL);  // die of the fault rather than a sanitizer report
    if (*last != std::byte{7}) ::_exit(3);
    std::byte value = *beyond;
    ::_exit(static_cast<int>(value) == 0 ? 4 : 5);  // reaching this line means no fault
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

TEST_F(SimGrantTest, ReadOnlyMappingIsNotWritable) {
  auto shared = guest_->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared);
  auto mapping = backend_->map(1, shared->refs(), Access::ReadOnly);
  ASSERT_TRUE(mapping);
  volatile std::byte* first = mapping->page(0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGSEGV, SIG_DFL);
    *first = std::byte{1};
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

TEST_F(SimGrantTest, CopyMovesDataBothWays) {
  auto shared = guest_->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared);
  std::memcpy(shared->page(0) + 100, "hello, backend", 14);
  char in[14] = {};
  const char out[] = "response";
  CopySegment segs[] = {copy_from(shared->refs()[0], 1, in, 100, 14), copy_to(shared->refs()[0], 1, out, 4000, 8)};
  ASSERT_EQ(backend_->copy(segs), 0);
  EXPECT_EQ(segs[0].status, GNTST_okay);
  EXPECT_EQ(segs[1].status, GNTST_okay);
  EXPECT_EQ(std::memcmp(in, "hello, backend", 14), 0);
  EXPECT_EQ(std::memcmp(shared->page(0) + 4000, "response", 8), 0);
  EXPECT_EQ(spy_->flags(shared->refs()[0]), GTF_permit_access) << "copy pins only while copying";
  EXPECT_EQ(spy_->pins(shared->refs()[0]), 0u);
}

TEST_F(SimGrantTest, CopyRefusesPermissionViolationsPerSegment) {
  auto rw = guest_->share(0, 1, Access::ReadWrite);
  auto ro = guest_->share(0, 1, Access::ReadOnly);
  auto to_dom2 = guest_->share(2, 1, Access::ReadWrite);
  ASSERT_TRUE(rw && ro && to_dom2);
  std::memset(ro->page(0), 0x5A, kXenPageSize);
  spy_->write_entry(5, GTF_permit_access, 0, 0x0FFFFFFF);
  char buf[64] = {};
  char sentinel[64];
  std::memset(sentinel, 0x11, sizeof(sentinel));

  CopySegment segs[] = {
      copy_to(ro->refs()[0], 1, sentinel, 0, 64),                  // write through read-only grant
      copy_from(to_dom2->refs()[0], 1, buf, 0, 64),                // granted to another domain
      copy_from(sim_protocol::kGrantEntries, 1, buf, 0, 64),       // ref out of range
      copy_from(7, 1, buf, 0, 64),                                 // never granted
      copy_from(rw->refs()[0], 1, buf, 4090, 64),                  // crosses the page end
      copy_from(rw->refs()[0], 77, buf, 0, 64),                    // no such domain
      copy_from(5, 1, buf, 0, 64),                                 // frame out of range
      copy_from(ro->refs()[0], 1, buf, 0, 64),                     // allowed: reading read-only grant
  };
  ASSERT_EQ(backend_->copy(segs), 0);
  EXPECT_EQ(segs[0].status, GNTST_permission_denied);
  EXPECT_EQ(segs[1].status, GNTST_permission_denied);
  EXPECT_EQ(segs[2].status, GNTST_bad_gntref);
  EXPECT_EQ(segs[3].status, GNTST_permission_denied);
  EXPECT_EQ(segs[4].status, GNTST_bad_copy_arg);
  EXPECT_EQ(segs[5].status, GNTST_bad_domain);
  EXPECT_EQ(segs[6].status, GNTST_bad_page);
  EXPECT_EQ(segs[7].status, GNTST_okay);
  EXPECT_EQ(static_cast<unsigned char>(buf[0]), 0x5A);
  EXPECT_EQ(static_cast<unsigned char>(ro->page(0)[0]), 0x5A) << "read-only page was written";
  for (GrantRef ref : {rw->refs()[0], ro->refs()[0], to_dom2->refs()[0], GrantRef{5}}) EXPECT_EQ(spy_->pins(ref), 0u);
}

TEST_F(SimGrantTest, UnshareWhileMappedKeepsPageAndEntry) {
  auto shared = guest_->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared);
  const GrantRef ref = shared->refs()[0];
  const std::uint32_t frame = spy_->frame(ref);
  auto mapping = backend_->map(1, shared->refs(), Access::ReadWrite);
  ASSERT_TRUE(mapping);
  shared->reset();  // the guest tries to end access while the backend still has it mapped
  EXPECT_EQ(spy_->flags(ref) & GTF_permit_access, GTF_permit_access) << "in-use entry must not be cleared";
  mapping->page(0)[0] = std::byte{9};  // still valid memory
  // The leaked frame and ref are not handed out again.
  auto next = guest_->share(0, 64, Access::ReadWrite);
  ASSERT_TRUE(next);
  for (std::uint32_t i = 0; i < next->pages(); ++i) {
    EXPECT_NE(next->refs()[i], ref);
    EXPECT_NE(spy_->frame(next->refs()[i]), frame);
  }
}

TEST_F(SimGrantTest, SharedPagesAreZeroedAndContiguous) {
  auto first = guest_->share(0, 4, Access::ReadWrite);
  ASSERT_TRUE(first);
  std::memset(first->data(), 0xFF, 4 * kXenPageSize);
  first.value().reset();
  auto second = guest_->share(0, 4, Access::ReadWrite);
  ASSERT_TRUE(second);
  for (std::uint32_t i = 0; i < 4; ++i) {
    EXPECT_EQ(spy_->frame(second->refs()[i]), spy_->frame(second->refs()[0]) + i);
    for (std::size_t b = 0; b < kXenPageSize; b += 512) ASSERT_EQ(second->page(i)[b], std::byte{0});
  }
}

TEST_F(SimGrantTest, DomainDestroyKeepsExistingMappingsAndRefusesNewOnes) {
  auto shared = guest_->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared);
  std::memset(shared->data(), 0x33, kXenPageSize);
  auto mapping = backend_->map(1, shared->refs(), Access::ReadOnly);
  ASSERT_TRUE(mapping);
  ASSERT_EQ(destroy_domain(1), 0);
  EXPECT_EQ(destroyed(), std::vector<DomId>{1});
  EXPECT_EQ(mapping->page(0)[0], std::byte{0x33}) << "mappings of a zombie domain stay valid";
  auto again = backend_->map(1, shared->refs(), Access::ReadOnly);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), ESRCH);
  EXPECT_EQ(destroy_domain(1), ESRCH);
  EXPECT_EQ(destroy_domain(0), EPERM);
}

// A mapping process killed while it held an entry's pin lock (it takes it around every pin and
// unpin, where Xen's hypercall cannot be interrupted) left every later map or copy of that entry
// spinning for ever: seen as a backend stuck in a grant copy after a SIGKILL in the kill tests.
// A waiter now takes the lock over once its holder is gone, and only then.
TEST_F(SimGrantTest, APinLockHeldByAProcessThatDiedIsTakenOverAndALiveHoldersIsNot) {
  auto shared = guest_->share(0, 1, Access::ReadWrite);
  ASSERT_TRUE(shared.has_value());
  const GrantRef ref = shared->refs()[0];
  const pid_t holder = ::fork();
  ASSERT_GE(holder, 0);
  if (holder == 0) {
    ::pause();
    ::_exit(0);
  }
  spy_->hold_pin_lock(ref, static_cast<std::uint32_t>(holder));
  std::atomic<bool> mapped{false};
  std::thread mapper([&] {
    auto mapping = backend_->map(1, shared->refs(), Access::ReadWrite);
    EXPECT_TRUE(mapping.has_value());
    mapped.store(true);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_FALSE(mapped.load()) << "the lock of a live holder was broken";
  ::kill(holder, SIGKILL);
  ::waitpid(holder, nullptr, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!mapped.load() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(mapped.load()) << "the lock of a dead holder was never taken over";
  if (!mapped.load()) spy_->release_pin_lock(ref);  // let the thread end, whatever happened
  mapper.join();
  EXPECT_EQ(spy_->pin_lock_holder(ref), 0u);
  EXPECT_EQ(spy_->flags(ref), GTF_permit_access) << "the mapping is gone: no in-use flag may stay";
}

}  // namespace
}  // namespace pvback::test
